"""What V needs from a policy's logits, with memory bounded per chunk of positions, never per response.

V = mean over guide tokens of Σ_v π_cur(v)² / π_guide(v) (``npo_ext.signals``). At sampling time the guide keeps, per
generated position: its top-k token ids and log-probs, the exact log-mass of the rest of the vocabulary (a logsumexp
over the ids outside the top-k, so no cancellation), and ``draws`` ids sampled from that rest in proportion to the
guide's probabilities, with their log-probs. Later the current policy is scored on the same k + draws ids, with its
own log-mass outside the guide's top-k. A full ``(tokens, vocab)`` log-prob tensor is never held: positions are
processed ``chunk`` at a time, so the peak is a few ``chunk × vocab`` floats (64 × 151,936 float32 = 39 MB each)
whatever the response length, and what is kept is ``tokens × (2·(k + draws) + 1)`` numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_CHUNK = 64
DRAW_SEED = 0


@dataclass(frozen=True)
class GuideTopK:
    """Per position of a guide sample: top-k ids and log-probs ``(T, k)``, tail draws ids and log-probs
    ``(T, draws)``, and the log-mass outside the top-k ``(T,)``."""

    ids: torch.Tensor
    log_probs: torch.Tensor
    draw_ids: torch.Tensor
    draw_log_probs: torch.Tensor
    tail: torch.Tensor


def guide_topk(
    logits: torch.Tensor, k: int, draws: int, generator: torch.Generator | None = None, chunk: int = DEFAULT_CHUNK
) -> GuideTopK:
    """Per position ``(T, vocab)`` logits -> what the guide keeps for V (see the module docstring)."""
    if k >= logits.shape[-1]:
        raise ValueError(f"top-k of {k} must be smaller than the vocabulary of {logits.shape[-1]}")
    if generator is None:
        generator = torch.Generator(device=logits.device).manual_seed(DRAW_SEED)
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, logits.shape[0], chunk):
        log_probs = torch.log_softmax(logits[start : start + chunk].float(), dim=-1)
        top = log_probs.topk(k, dim=-1)
        rest = log_probs.scatter(-1, top.indices, float("-inf"))
        tail = torch.logsumexp(rest, dim=-1)
        # softmax of the rest: the guide's distribution given "not in the top k", normalised before exp (no underflow)
        draw_ids = torch.multinomial(torch.softmax(rest, dim=-1), draws, replacement=True, generator=generator)
        parts.append((top.indices, top.values, draw_ids, log_probs.gather(-1, draw_ids), tail))
    return GuideTopK(*(torch.cat(column) for column in zip(*parts, strict=True)))


def log_probs_at(
    logits: torch.Tensor, ids: torch.Tensor, exclude: int = 0, chunk: int = DEFAULT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position ``(T, vocab)`` logits -> the log-probs ``(T, n)`` of the given ``(T, n)`` ids, and the log-mass
    ``(T,)`` of the vocabulary outside the first ``exclude`` of them (the guide's top-k ids)."""
    values, tails = [], []
    for start in range(0, logits.shape[0], chunk):
        log_probs = torch.log_softmax(logits[start : start + chunk].float(), dim=-1)
        chunk_ids = ids[start : start + chunk]
        values.append(log_probs.gather(-1, chunk_ids))
        tails.append(torch.logsumexp(log_probs.scatter(-1, chunk_ids[:, :exclude], float("-inf")), dim=-1))
    return torch.cat(values), torch.cat(tails)
