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
* **V from top-k and tail draws (what the trainer runs).** With only part of each distribution at hand (the guide's
  is computed when it samples, the current policy's after the rollback), the sum is split at the guide's top-k ids
  K: exact on K; the rest, T = Σ_{v∉K} π_cur²/π_guide, is the lumped value L = tail_cur² / tail_guide (exact tail
  masses, a Cauchy-Schwarz lower bound of T, exact when the tails are proportional) plus an unbiased correction from
  m ids drawn from the guide's tail: tail_guide · mean_j (w_j² − r²), w_j = π_cur/π_guide at draw j, r = tail_cur /
  tail_guide. The estimate is unbiased for the full V; its exact lower bound (head + L, always >= 1) caps it from
  below, which can only move it towards the true value. Measured against the full-vocabulary V on close, far,
  sharpened and peaked guides: README "Signals" (``benchmarks/v_estimator_accuracy.py``).
* The literal sampled-token variants (E[w²] and Var[w] of the sampled tokens' ratios) are kept as options.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased probability that at least one of k samples (drawn from the m observed) is correct."""
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"need 0 <= num_correct <= num_samples, got {num_correct}/{num_samples}")
    if k < 1 or k > num_samples:
        raise ValueError(f"k must be in [1, num_samples={num_samples}], got {k}")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def failing_prompts(policy_acc: Sequence[float], fail_max_acc: float = 0.0) -> np.ndarray:
    """Indices of the prompts the current policy fails: the one definition Q is measured over."""
    return np.flatnonzero(np.asarray(policy_acc, dtype=np.float64) <= fail_max_acc)


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
    guide_samples = np.asarray(guide_samples, dtype=np.int64)
    guide_correct = np.asarray(guide_correct, dtype=np.int64)
    failing = failing_prompts(policy_acc, fail_max_acc)
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


@dataclass(frozen=True)
class TopKScores:
    """One policy's log-probs at the positions of guide samples: on the guide's top-k ids ``(..., k)``, on the ids
    drawn from the guide's tail ``(..., m)``, and its log-mass outside the guide's top-k ids ``(...)``."""

    topk: torch.Tensor
    draws: torch.Tensor
    tail: torch.Tensor


def chi2_topk_terms(cur: TopKScores, guide: TopKScores) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: an unbiased estimate of Σ_v π_cur(v)² / π_guide(v), and its exact lower bound (>= 1)."""
    head = torch.exp(2.0 * cur.topk.double() - guide.topk.double()).sum(-1)
    log_ratio = cur.tail.double() - guide.tail.double()
    bound = (head + torch.exp(2.0 * log_ratio + guide.tail.double())).clamp_min(1.0)
    w_sq = torch.exp(2.0 * (cur.draws.double() - guide.draws.double()))
    correction = guide.tail.double().exp() * (w_sq - torch.exp(2.0 * log_ratio).unsqueeze(-1)).mean(-1)
    return bound + correction, bound


class Chi2TopK:
    """Token-weighted V over several batches of guide samples: ``max(mean estimate, mean lower bound)``. The sums are
    kept per response (one row per sequence), so V of any subset of responses, a bootstrap over prompts, is exact."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []

    def add(self, cur: TopKScores, guide: TopKScores, mask: torch.Tensor) -> None:
        estimate, bound = chi2_topk_terms(cur, guide)
        mask = mask.double()
        terms = torch.stack([estimate * mask, bound * mask, mask], -1)  # (..., T, 3)
        self._rows.append(terms.reshape(-1, mask.shape[-1], 3).sum(1).cpu().numpy())

    @property
    def rows(self) -> np.ndarray:
        """Per response: its summed estimate, summed lower bound and token count, ``(responses, 3)``."""
        return np.concatenate(self._rows) if self._rows else np.zeros((0, 3))

    @property
    def value(self) -> float:
        """V; NaN without any token."""
        return v_from_rows(self.rows)


def v_from_rows(rows: np.ndarray) -> float:
    """V of a set of responses from their per-response sums (:attr:`Chi2TopK.rows`); NaN without any token."""
    estimate, bound, tokens = np.asarray(rows, dtype=np.float64).reshape(-1, 3).sum(0)
    return float(max(estimate, bound) / tokens) if tokens else float("nan")


def chi2_second_moment_topk(cur: TopKScores, guide: TopKScores, mask: torch.Tensor | None = None) -> float:
    """Top-k V of one batch (see the module docstring)."""
    total = Chi2TopK()
    total.add(cur, guide, torch.ones(cur.tail.shape) if mask is None else mask)
    return total.value


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
