"""AutoNPO's choice of look-ahead distance: Δ* = argmax over candidates of the empirical S = Q / V.

The candidate table (:func:`candidate_table`) is the one both AutoNPO and ``npo_ext.probe`` (the command
``python -m recipes.npo.probe``) build: θ_T and each candidate θ_{T+Δ} sample k responses for every probe prompt;
Q(Δ) is the candidate's unbiased pass@min(q_k, k) on the prompts θ_T *fails* (0 of its k samples verified-correct,
the definition used everywhere: README "Signals"),
V(Δ) is measured by the caller on the candidate's samples under θ_T.

Rules where the paper is silent (our choices, README "AutoNPO"):

* a candidate whose Q or V is undefined (NaN: no probe prompt failed, or no guide token to measure V on) is skipped;
* when no candidate has Q > 0, no guide solves any probe prompt: there is nothing to inject, so no intervention
  (Δ* is None) and the run simply continues from the rolled-back fork point;
* ties in S (relative difference below ``TIE_TOLERANCE``) go to the smaller Δ: the guide closer to the current
  policy, and the shorter guided window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from npo_ext.signals import effective_signal, estimate_q

TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Candidate:
    """One candidate guide θ_{T+Δ} with its measured Q and V."""

    delta: int
    q: float
    v: float

    @property
    def s(self) -> float:
        """S = Q / V; NaN when undefined (a non-positive V counts as undefined here instead of an error)."""
        return float("nan") if self.v <= 0 else effective_signal(self.q, self.v)


@dataclass(frozen=True)
class Decision:
    """The chosen Δ (None: do not intervene) and why."""

    delta: int | None
    reason: str


def select_delta(candidates: Sequence[Candidate]) -> Decision:
    """Δ* by the rules in the module docstring."""
    usable = [c for c in candidates if not math.isnan(c.s)]
    if not usable:
        return Decision(None, "no candidate has a defined Q and V")
    if all(c.q <= 0 for c in usable):
        return Decision(None, "no candidate guide solves any probe prompt")
    best = max(c.s for c in usable)
    tied = [c for c in usable if c.q > 0 and best - c.s <= TIE_TOLERANCE * abs(best)]
    chosen = min(tied, key=lambda c: c.delta)
    return Decision(chosen.delta, "argmax S" if len(tied) == 1 else f"argmax S, tie of {len(tied)} -> smallest delta")


def candidate_table(
    anchor_correct: Sequence[int],
    k: int,
    candidate_correct: Mapping[int, Sequence[int]],
    v: Mapping[int, float],
    q_k: int,
) -> list[Candidate]:
    """One row per candidate Δ (in ascending order): Q on the probe prompts θ_T fails, and the given V.

    ``anchor_correct`` and each ``candidate_correct[Δ]`` are per-prompt verified-correct counts out of ``k`` samples,
    over the same prompts in the same order.
    """
    anchor = np.asarray(anchor_correct, dtype=np.int64)
    rows = []
    for delta in sorted(candidate_correct):
        correct = np.asarray(candidate_correct[delta], dtype=np.int64)
        if correct.shape != anchor.shape:
            raise ValueError(f"candidate delta={delta} was probed on {correct.size} prompts, θ_T on {anchor.size}")
        q = estimate_q(anchor / k, np.full(anchor.size, k), correct, k=min(q_k, k), fail_max_acc=0.0)
        rows.append(Candidate(delta, q, v[delta]))
    return rows
