"""Chunked top-k log-probs: what the guide stores and the current policy is scored on, and V from them."""

from __future__ import annotations

import torch

from npo_ext.signals import chi2_second_moment, chi2_second_moment_topk
from npo_ext.topk import log_probs_at, topk_log_probs


def test_chunked_results_equal_the_whole_tensor_computation() -> None:
    logits = torch.randn(37, 50, generator=torch.Generator().manual_seed(0))
    ids, values = topk_log_probs(logits, k=5, chunk=8)
    full = torch.log_softmax(logits, -1)
    assert torch.equal(ids, full.topk(5, -1).indices) and torch.allclose(values, full.topk(5, -1).values)
    assert torch.allclose(log_probs_at(logits * 0.5, ids, chunk=8), torch.log_softmax(logits * 0.5, -1).gather(-1, ids))


def test_v_from_stored_topk_matches_the_full_value_within_its_bound() -> None:
    """Two nearby policies over a 40-token vocabulary: the top-k V is a lower bound of the full V, the gap shrinks
    as k grows, and it is exact when k covers the vocabulary."""
    gen = torch.Generator().manual_seed(1)
    guide_logits = 2.0 * torch.randn(64, 40, generator=gen)
    cur_logits = guide_logits + 0.4 * torch.randn(64, 40, generator=gen)
    exact = chi2_second_moment(torch.log_softmax(cur_logits, -1), torch.log_softmax(guide_logits, -1))
    estimates = {}
    for k in (4, 8, 16, 40):
        ids, guide_k = topk_log_probs(guide_logits, k)
        estimates[k] = chi2_second_moment_topk(log_probs_at(cur_logits, ids), guide_k)
    assert all(estimates[k] <= exact + 1e-9 for k in estimates), "Cauchy-Schwarz: the lumped tail is a lower bound"
    gaps = [exact - estimates[k] for k in (4, 8, 16, 40)]
    assert gaps == sorted(gaps, reverse=True) and abs(gaps[-1]) < 1e-9
    assert gaps[2] < 0.02 * exact, "k = 16 of 40 is within 2% here"
