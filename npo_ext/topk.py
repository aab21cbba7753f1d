"""What V needs from a policy's logits, with memory bounded per chunk of positions, never per response.

For V = mean over guide tokens of Σ_v π_cur(v)² / π_guide(v) (``npo_ext.signals``), the guide keeps, per
generated position, its top-k token ids and their log-probs; later the current policy is scored on those same ids.
A full ``(tokens, vocab)`` log-prob tensor is never held: positions are processed ``chunk`` at a time, so the peak
is ``chunk × vocab`` floats (64 × 151,936 float32 = 39 MB) whatever the response length, and what is kept is
``tokens × k`` ids and values (4,096 × 16 × 12 bytes = 0.8 MB per response).
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 64


def topk_log_probs(logits: torch.Tensor, k: int, chunk: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position ``(T, vocab)`` logits -> the top-k ``(ids int64 (T, k), log-probs float32 (T, k))``."""
    ids, values = [], []
    for start in range(0, logits.shape[0], chunk):
        log_probs = torch.log_softmax(logits[start : start + chunk].float(), dim=-1)
        top = log_probs.topk(k, dim=-1)
        ids.append(top.indices)
        values.append(top.values)
    return torch.cat(ids), torch.cat(values)


def log_probs_at(logits: torch.Tensor, ids: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Per position ``(T, vocab)`` logits -> log-probs ``(T, k)`` of the given ``(T, k)`` token ids."""
    values = []
    for start in range(0, logits.shape[0], chunk):
        log_probs = torch.log_softmax(logits[start : start + chunk].float(), dim=-1)
        values.append(log_probs.gather(-1, ids[start : start + chunk]))
    return torch.cat(values)
