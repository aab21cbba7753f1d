"""Q / V / S estimators checked against distributions whose answers are known in closed form."""

import math

import numpy as np
import pytest
import torch

from npo_ext.signals import (
    VARIANCE_ESTIMATORS,
    Chi2TopK,
    TopKScores,
    chi2_second_moment,
    chi2_topk_terms,
    effective_signal,
    estimate_q,
    pass_at_1_q,
    pass_at_k,
    sampled_ratio_second_moment,
    sampled_ratio_variance,
    v_from_rows,
)


def test_pass_at_k_closed_forms():
    assert pass_at_k(8, 0, 4) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 1, 1) == pytest.approx(1 / 8)
    assert pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 2)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_q_counts_only_failed_prompts():
    policy_acc = np.array([0.0, 0.0, 0.5, 1.0])
    guide_samples = np.array([8, 8, 8, 8])
    guide_correct = np.array([1, 0, 8, 8])  # the solved-by-policy prompts must not raise Q
    assert estimate_q(policy_acc, guide_samples, guide_correct) == pytest.approx(0.5)
    # widening "fails" to acc <= 0.5 brings in a prompt the guide always solves
    assert estimate_q(policy_acc, guide_samples, guide_correct, fail_max_acc=0.5) == pytest.approx(2 / 3)
    assert math.isnan(estimate_q(np.array([1.0]), np.array([8]), np.array([3])))


def test_q_matches_binomial_solve_rate():
    # A guide that solves each failed prompt with per-sample probability p: Q(k) -> 1 - (1 - p)^k.
    rng = np.random.default_rng(0)
    p, m, k, prompts = 0.2, 16, 4, 4000
    correct = rng.binomial(m, p, size=prompts)
    q = estimate_q(np.zeros(prompts), np.full(prompts, m), correct, k=k)
    assert q == pytest.approx(1 - (1 - p) ** k, abs=0.02)


def two_distributions(vocab=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    cur = torch.log_softmax(torch.randn(vocab, generator=g), -1)
    guide = torch.log_softmax(torch.randn(vocab, generator=g), -1)
    return cur, guide


def test_full_chi2_equals_closed_form_and_is_one_for_identical_policies():
    cur, guide = two_distributions()
    expected = float((cur.exp() ** 2 / guide.exp()).sum())
    assert chi2_second_moment(cur, guide) == pytest.approx(expected, rel=1e-6)
    assert chi2_second_moment(cur, cur) == pytest.approx(1.0, rel=1e-6)
    assert expected > 1.0  # 1 + chi^2 >= 1


def test_full_chi2_masked_token_mean():
    cur, guide = two_distributions()
    far = torch.log_softmax(torch.tensor([9.0, 0, 0, 0, 0, 0]), -1)
    cur_seq = torch.stack([cur, far])  # (T=2, V)
    guide_seq = torch.stack([guide, guide])
    only_first = chi2_second_moment(cur_seq, guide_seq, mask=torch.tensor([1, 0]))
    assert only_first == pytest.approx(chi2_second_moment(cur, guide))


def test_sampled_second_moment_is_unbiased_for_full_chi2_under_guide_sampling():
    cur, guide = two_distributions()
    tokens = torch.multinomial(guide.exp(), 200_000, replacement=True, generator=torch.Generator().manual_seed(1))
    sampled = sampled_ratio_second_moment(cur[tokens], guide[tokens])
    assert sampled == pytest.approx(chi2_second_moment(cur, guide), rel=0.03)


class SymbolTask:
    """Appendix T's toy in closed form: a prompt is 3 symbols, the answer maps each through a secret permutation.

    The policy is one table of next-token logits per symbol, shared by every prompt and position, warm-started on 4
    of the 10 symbols. It is trained by exact gradient ascent on expected accuracy, so a run is deterministic and
    θ_{T+Δ} is simply the table after Δ more steps.
    """

    SYMBOLS, LENGTH, PROMPTS = 10, 3, 1000

    def __init__(self, lr=20.0, steps=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.answer = torch.randperm(self.SYMBOLS, generator=g)
        self.prompts = torch.randint(0, self.SYMBOLS, (self.PROMPTS, self.LENGTH), generator=g)
        logits = torch.zeros(self.SYMBOLS, self.SYMBOLS)
        known = torch.arange(4)
        logits[known, self.answer[known]] = 4.0
        logits.requires_grad_(True)
        optimizer = torch.optim.SGD([logits], lr=lr)
        self.policies = [logits.detach().clone()]
        for _ in range(steps):
            optimizer.zero_grad()
            (-self.accuracy(logits).mean()).backward()
            optimizer.step()
            self.policies.append(logits.detach().clone())

    def accuracy(self, logits):
        """Per prompt: probability that a sampled answer is exactly right."""
        log_probs = torch.log_softmax(logits, -1)
        return log_probs[self.prompts, self.answer[self.prompts]].sum(-1).exp()

    def token_log_probs(self, step):
        """(prompts, positions, vocab): each position's next-token distribution."""
        return torch.log_softmax(self.policies[step], -1)[self.prompts]


def test_verified_correct_samples_bias_the_sampled_v_low():
    """Appendix T: correctness filtering keeps the tokens the future policy learned to prefer (w < 1 there)."""
    task = SymbolTask()
    cur, guide = task.token_log_probs(0), task.token_log_probs(8)
    g = torch.Generator().manual_seed(1)
    samples = torch.multinomial(guide.exp().reshape(-1, task.SYMBOLS), 40, replacement=True, generator=g)
    samples = samples.reshape(task.PROMPTS, task.LENGTH, 40).permute(0, 2, 1)  # (prompt, sample, position)

    def at_samples(log_probs):
        return torch.gather(log_probs.unsqueeze(1).expand(-1, 40, -1, -1), -1, samples.unsqueeze(-1)).squeeze(-1)

    correct = (samples == task.answer[task.prompts].unsqueeze(1)).all(-1)  # the verifier, per sample
    unfiltered = sampled_ratio_second_moment(at_samples(cur), at_samples(guide))
    filtered = sampled_ratio_second_moment(at_samples(cur)[correct], at_samples(guide)[correct])
    full = chi2_second_moment(cur, guide)
    assert 0.2 < correct.float().mean() < 0.8, "a mix of right and wrong guide samples"
    assert unfiltered == pytest.approx(full, rel=0.05), "unfiltered samples estimate 1 + chi^2 without bias"
    assert filtered < 1.0 < full, "the filtered estimate even falls below the value of identical policies"


def lumped_bound(cur, guide, ids):
    """The lower bound of the top-k V for one position: exact on ``ids``, the rest lumped (no tail draws)."""
    rest = torch.ones_like(cur, dtype=torch.bool)
    rest[ids] = False
    no_draws = torch.zeros(0)
    terms = chi2_topk_terms(
        TopKScores(cur[ids], no_draws, torch.logsumexp(cur[rest], -1)),
        TopKScores(guide[ids], no_draws, torch.logsumexp(guide[rest], -1)),
    )
    return float(terms[1])


def test_the_lumped_tail_is_a_lower_bound_that_tightens_with_k():
    cur, guide = two_distributions(vocab=50, seed=3)
    full = chi2_second_moment(cur, guide)
    order = torch.argsort(guide, descending=True)
    previous = 0.0
    for k in (1, 5, 20, 49):
        estimate = lumped_bound(cur, guide, order[:k])
        assert 1.0 <= estimate <= full + 1e-9
        assert estimate >= previous - 1e-9  # more support never loosens the bound here
        previous = estimate
    assert lumped_bound(cur, guide, order[:49]) == pytest.approx(full, rel=1e-6), "a one-id tail is exact"


def test_topk_lumped_tail_is_exact_when_tails_are_proportional():
    cur = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.1]))
    guide = torch.log(torch.tensor([0.4, 0.4, 0.1, 0.1]))  # tails (last two ids) proportional
    assert lumped_bound(cur, guide, torch.tensor([0, 1])) == pytest.approx(chi2_second_moment(cur, guide), rel=1e-6)


def test_sampled_ratio_variance_per_sequence():
    cur = torch.log(torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.2, 0.2]]))
    guide = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.2, 0.2, 0.2]]))
    # sequence 1: w = [1, 2, <masked>] -> var 0.25; sequence 2: w = 1 everywhere -> 0
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert sampled_ratio_variance(cur, guide, mask) == pytest.approx(0.125)


def test_effective_signal_and_registry():
    assert effective_signal(0.6, 1.5) == pytest.approx(0.4)
    assert math.isnan(effective_signal(float("nan"), 1.0))
    with pytest.raises(ValueError):
        effective_signal(0.5, 0.0)
    assert set(VARIANCE_ESTIMATORS) == {"full_chi2", "topk_chi2", "sampled_w2", "sampled_w_var"}


def test_s_has_an_interior_optimum_in_delta_on_a_training_run():
    """Q and V measured as the trainer measures them, on guides Δ steps ahead of T=0 in a real (toy) run."""
    task = SymbolTask()
    rng = np.random.default_rng(0)
    n = 8
    policy_acc = rng.binomial(n, task.accuracy(task.policies[0]).numpy()) / n
    deltas = list(range(0, 41, 2))
    q, v = [], []
    for delta in deltas:
        guide_correct = rng.binomial(n, task.accuracy(task.policies[delta]).numpy())
        q.append(estimate_q(policy_acc, np.full(task.PROMPTS, n), guide_correct))
        v.append(chi2_second_moment(task.token_log_probs(0), task.token_log_probs(delta)))
    s = [effective_signal(qi, vi) for qi, vi in zip(q, v, strict=True)]
    best = int(np.argmax(s))
    assert 0 < best < len(deltas) - 1, f"S(Δ) = {np.round(s, 3)}"
    assert q[-1] >= q[best] and v[-1] > 10 * v[best], "past the optimum the guide is stronger but too far"
    assert s[best] > 2 * s[0], "looking ahead beats using the current policy as its own guide"


def test_pass_at_1_q_counts_one_trajectory_per_prompt_on_the_failed_prompts_only():
    # prompts 0 and 2 fail; the source's trajectory is correct on 0 and 1: Q = 1/2 (prompt 1 is not failed)
    assert pass_at_1_q([0.0, 0.5, 0.0], [1, 1, 0]) == 0.5
    assert math.isnan(pass_at_1_q([0.5, 1.0], [1, 1])), "no failed prompt: Q is undefined"


def random_scores(rows: int, tokens: int, k: int, draws: int, seed: int) -> TopKScores:
    g = torch.Generator().manual_seed(seed)
    return TopKScores(
        -torch.rand(rows, tokens, k, generator=g) - 1.0,
        -torch.rand(rows, tokens, draws, generator=g) - 3.0,
        -torch.rand(rows, tokens, generator=g) - 0.5,
    )


def test_v_of_any_subset_of_responses_is_read_exactly_from_the_per_response_sums():
    cur, guide = random_scores(6, 5, 3, 2, seed=0), random_scores(6, 5, 3, 2, seed=1)
    mask = (torch.arange(5) < torch.tensor([5, 3, 4, 1, 5, 2]).unsqueeze(-1)).float()  # responses of 1 to 5 tokens
    whole = Chi2TopK()
    whole.add(cur, guide, mask)
    assert whole.rows.shape == (6, 3) and whole.rows[:, 2].tolist() == [5, 3, 4, 1, 5, 2]
    subset = [0, 3, 3, 5]  # a bootstrap draw: responses repeated and left out
    alone = Chi2TopK()
    pick = torch.tensor(subset)
    alone.add(
        TopKScores(cur.topk[pick], cur.draws[pick], cur.tail[pick]),
        TopKScores(guide.topk[pick], guide.draws[pick], guide.tail[pick]),
        mask[pick],
    )
    assert v_from_rows(whole.rows[subset]) == pytest.approx(alone.value)
    assert whole.value == pytest.approx(v_from_rows(whole.rows)) and whole.value >= 1.0
    assert math.isnan(Chi2TopK().value)
