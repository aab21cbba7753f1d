"""Chunked top-k, tail mass and tail draws: what the guide stores and the current policy is scored on, and V."""

from __future__ import annotations

import pytest
import torch

from npo_ext.signals import TopKScores, chi2_second_moment, chi2_second_moment_topk, chi2_topk_terms
from npo_ext.topk import guide_topk, log_probs_at


def test_chunked_results_equal_the_whole_tensor_computation() -> None:
    logits = torch.randn(37, 50, generator=torch.Generator().manual_seed(0))
    kept = guide_topk(logits, k=5, draws=3, chunk=8)
    full = torch.log_softmax(logits, -1)
    top = full.topk(5, -1)
    assert torch.equal(kept.ids, top.indices) and torch.allclose(kept.log_probs, top.values)
    rest = full.scatter(-1, top.indices, float("-inf"))
    assert torch.allclose(kept.tail, torch.logsumexp(rest, -1))
    assert not (kept.draw_ids.unsqueeze(-1) == kept.ids.unsqueeze(-2)).any(), "draws come from outside the top k"
    assert torch.allclose(kept.draw_log_probs, full.gather(-1, kept.draw_ids))
    values, tail = log_probs_at(logits * 0.5, kept.ids, exclude=2, chunk=8)
    half = torch.log_softmax(logits * 0.5, -1)
    assert torch.allclose(values, half.gather(-1, kept.ids))
    assert torch.allclose(tail, torch.logsumexp(half.scatter(-1, kept.ids[:, :2], float("-inf")), -1))


def test_the_tail_mass_has_no_cancellation_for_a_peaked_guide() -> None:
    """One minus the summed float32 top-k probabilities is 0 here; the logsumexp over the rest is exact."""
    logits = torch.zeros(1, 1000)
    logits[0, 7] = 40.0
    kept = guide_topk(logits, k=4, draws=2)
    expected = torch.log(torch.tensor(996.0)) - 40.0  # 996 ids of weight e^0 against e^40 (the rest is negligible)
    assert float(1 - kept.log_probs.exp().sum()) == 0.0
    assert kept.tail.item() == pytest.approx(expected.item(), rel=1e-5)


def test_tail_draws_follow_the_guides_tail_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.12, 0.06, 0.02]]))
    kept = guide_topk(logits.expand(4000, -1), k=2, draws=5, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(kept.draw_ids.flatten(), minlength=5).float() / kept.draw_ids.numel()
    assert torch.allclose(frequencies, torch.tensor([0, 0, 0.6, 0.3, 0.1]), atol=0.01)


def scores(cur_logits, guide_logits, k, draws, seed=0):
    kept = guide_topk(guide_logits, k, draws, generator=torch.Generator().manual_seed(seed))
    values, tail = log_probs_at(cur_logits, torch.cat([kept.ids, kept.draw_ids], -1), exclude=k)
    return (
        TopKScores(values[:, :k], values[:, k:], tail),
        TopKScores(kept.log_probs, kept.draw_log_probs, kept.tail),
    )


def test_v_is_exact_under_the_sampler_itself_and_never_below_one() -> None:
    logits = 3 * torch.randn(64, 40, generator=torch.Generator().manual_seed(2))
    assert chi2_second_moment_topk(*scores(logits, logits, 4, 4)) == pytest.approx(1.0, abs=1e-6)
    far = 10 * torch.randn(64, 40, generator=torch.Generator().manual_seed(3))
    estimate, bound = chi2_topk_terms(*scores(far, logits, 4, 1))
    assert (bound >= 1.0).all()
    assert chi2_second_moment_topk(*scores(far, logits, 4, 1)) >= float(bound.mean())


def test_v_is_unbiased_for_the_full_value_and_its_bound_is_below_it() -> None:
    """Two nearby policies over a 40-token vocabulary: the lower bound (tail lumped) sits below the full V; the
    estimate with tail draws averages to it over many draws, at k = 4 where the bound is far off."""
    gen = torch.Generator().manual_seed(1)
    guide_logits = 2.0 * torch.randn(64, 40, generator=gen)
    cur_logits = guide_logits + 0.6 * torch.randn(64, 40, generator=gen)
    exact = chi2_second_moment(torch.log_softmax(cur_logits, -1), torch.log_softmax(guide_logits, -1))
    runs = [chi2_topk_terms(*scores(cur_logits, guide_logits, 4, 8, seed)) for seed in range(200)]
    bound = float(runs[0][1].mean())
    mean_estimate = sum(float(estimate.mean()) for estimate, _ in runs) / len(runs)
    assert bound < 0.97 * exact, "the lumped tail alone is biased low here"
    assert mean_estimate == pytest.approx(exact, rel=0.01)
    full_support = chi2_topk_terms(*scores(cur_logits, guide_logits, 39, 1))
    assert float(full_support[0].mean()) == pytest.approx(exact, rel=1e-5), "one id left: the tail is that id"
