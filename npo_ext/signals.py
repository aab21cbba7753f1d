"""Estimators of NPO's signal quality Q, variance cost V, and effective learning signal S = Q / V.

The paper defines Q as "among prompts on which the current policy fails, the fraction for which the source can
produce a verified-correct trajectory", and V as the variance cost of learning from the source's trajectories
under the current policy; its exact V formula is not public. Choices made here (see README, "Signals"):

* **Q.** A prompt *fails* when the current policy's group accuracy is ``<= fail_max_acc`` (default 0: all n wrong).
  "Given k samples" uses the unbiased pass@k estimator over the guide's m >= k samples, so Q does not depend on
  how many extra samples happened to be drawn.
* **V (default).** The per-token second moment of the importance weight w = π_cur/π_guide under guide sampling,
  computed over the full next-token distributions: Σ_v π_cur(v)² / π_guide(v) = 1 + χ²(π_cur || π_guide), averaged
  over guide tokens. It is the Rao-Blackwellised form of the sampled E[w²] (same expectation, no sampling noise).
* **Measure V on unfiltered guide samples.** Restricting to verified-correct samples keeps tokens the future policy
  up-weighted (w < 1) and biases V low; on a controllable toy this hid the interior optimum of S(Δ).
* **Top-k.** With only the top-k of each distribution (e.g. vLLM logprobs), the sum is exact on the k ids and the
  rest is lumped: tail_cur² / tail_guide. By Cauchy-Schwarz this is a lower bound of the true tail, exact when the
  two tails are proportional, and the estimate tends to the full value as k grows.
* The literal sampled-token variants (E[w²] and Var[w] of the sampled tokens' ratios) are kept as options.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

TAIL_EPS = 1e-6  # float32 log-probs summed over the top k are accurate to about this


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased probability that at least one of k samples (drawn from the m observed) is correct."""
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"need 0 <= num_correct <= num_samples, got {num_correct}/{num_samples}")
    if k < 1 or k > num_samples:
        raise ValueError(f"k must be in [1, num_samples={num_samples}], got {k}")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def estimate_q(
    policy_acc: np.ndarray,
    guide_samples: np.ndarray,
    guide_correct: np.ndarray,
    k: int | None = None,
    fail_max_acc: float = 0.0,
) -> float:
    """Q over prompts the current policy fails: mean pass@k of the guide there (NaN if no prompt fails).

    Arrays are per prompt. ``k=None`` uses each prompt's own sample count (any verified-correct sample counts).
    """
    policy_acc = np.asarray(policy_acc, dtype=np.float64)
    guide_samples = np.asarray(guide_samples, dtype=np.int64)
    guide_correct = np.asarray(guide_correct, dtype=np.int64)
    failing = np.flatnonzero(policy_acc <= fail_max_acc)
    if failing.size == 0:
        return float("nan")
    return float(
        np.mean([pass_at_k(int(guide_samples[i]), int(guide_correct[i]), k or int(guide_samples[i])) for i in failing])
    )


def pass_at_1_q(policy_acc: Sequence[float], guide_correct: Sequence[int]) -> float:
    """Q of a source that holds one trajectory per prompt (a teacher trace, a stored success): the fraction of the
    prompts the current policy fails on which that trajectory is correct."""
    return estimate_q(policy_acc, np.ones(len(guide_correct), dtype=int), np.asarray(guide_correct, dtype=int), k=1)


def _masked_token_mean(values: torch.Tensor, mask: torch.Tensor | None) -> float:
    if mask is None:
        return float(values.mean())
    mask = mask.to(values.dtype)
    return float((values * mask).sum() / mask.sum().clamp_min(1))


def chi2_second_moment(
    cur_logprobs: torch.Tensor, guide_logprobs: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """Default V: mean over tokens of Σ_v π_cur(v)² / π_guide(v), from full log-prob distributions ``(..., V)``."""
    per_token = torch.logsumexp(2.0 * cur_logprobs.double() - guide_logprobs.double(), dim=-1).exp()
    return _masked_token_mean(per_token, mask)


def chi2_second_moment_topk(
    cur_logprobs_k: torch.Tensor, guide_logprobs_k: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """Top-k V: both policies' log-probs on the same k token ids ``(..., k)``, tail lumped (a lower bound)."""
    cur = cur_logprobs_k.double()
    guide = guide_logprobs_k.double()
    head = torch.exp(2.0 * cur - guide).sum(-1)
    cur_tail = (1.0 - cur.exp().sum(-1)).clamp_min(0.0)
    guide_tail = 1.0 - guide.exp().sum(-1)
    # A tail within float32 rounding of the summed head is empty: lumping rounding noise would divide by ~0.
    lumped = torch.where(guide_tail > TAIL_EPS, cur_tail.square() / guide_tail.clamp_min(TAIL_EPS), 0.0)
    per_token = head + lumped
    return _masked_token_mean(per_token, mask)


def sampled_ratio_second_moment(
    cur_token_logprobs: torch.Tensor, guide_token_logprobs: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """Literal variant: mean over sampled tokens of w² = (π_cur(y_t) / π_guide(y_t))²."""
    w_sq = torch.exp(2.0 * (cur_token_logprobs.double() - guide_token_logprobs.double()))
    return _masked_token_mean(w_sq, mask)


def sampled_ratio_variance(
    cur_token_logprobs: torch.Tensor, guide_token_logprobs: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """Literal variant: per-sequence variance of the sampled-token ratio w, averaged over sequences ``(N, T)``."""
    w = torch.exp(cur_token_logprobs.double() - guide_token_logprobs.double())
    mask = torch.ones_like(w) if mask is None else mask.double()
    count = mask.sum(-1).clamp_min(1)
    mean = (w * mask).sum(-1) / count
    var = (((w - mean.unsqueeze(-1)) ** 2) * mask).sum(-1) / count
    return float(var.mean())


def effective_signal(q: float, v: float) -> float:
    """S = Q / V; NaN when either is undefined, and V must be positive."""
    if math.isnan(q) or math.isnan(v):
        return float("nan")
    if v <= 0:
        raise ValueError(f"variance cost must be positive, got {v}")
    return q / v


VARIANCE_ESTIMATORS: dict[str, Callable[..., float]] = {
    "full_chi2": chi2_second_moment,
    "topk_chi2": chi2_second_moment_topk,
    "sampled_w2": sampled_ratio_second_moment,
    "sampled_w_var": sampled_ratio_variance,
}
