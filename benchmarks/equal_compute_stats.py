"""Reading an equal-compute study: where a run first reaches the target, what it had spent by then, and intervals.

A run is its per-step records (verl's file logger). Held-out accuracy is known only at evaluations, every few kept
steps, while compute changes inside a step (a fork's look-ahead and guide sampling happen within one). So the
crossing is located on the kept-step axis, linearly between evaluations, rounded up to a whole kept step, and the
compute is then read from that step's own record: an interval that holds a fork is charged all of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

HELD_OUT = "val-core/hidden_rule/acc/mean@4"
SPENT_KEYS = ("optimizer_steps", "generated_tokens", "scored_tokens", "external_tokens")


@dataclass
class Trace:
    """One run: held-out accuracy at its evaluations, and its cumulative compute after each kept step."""

    evals: list[tuple[int, float]] = field(default_factory=list)  # (kept step, held-out accuracy)
    spent: dict[int, dict[str, float]] = field(default_factory=dict)  # kept step -> cumulative counters

    @property
    def final_acc(self) -> float:
        return self.evals[-1][1]

    def spent_at(self, kept: int) -> dict[str, float]:
        """The cumulative counters after kept step ``kept`` (nothing at step 0)."""
        if kept == 0:
            return dict.fromkeys(SPENT_KEYS, 0.0)
        return self.spent[kept]

    @property
    def last_step(self) -> int:
        return max(self.spent)


def trace(records: Sequence[dict]) -> Trace:
    """A run's trace from its step records; look-ahead steps (no ``training/global_step``) are skipped, their cost
    is in the next kept step's counters."""
    out = Trace()
    for r in records:
        kept = r.get("training/global_step")
        if kept is None:
            if HELD_OUT in r and "npo/compute/optimizer_steps" not in r:  # validation before the first step
                out.evals.append((0, r[HELD_OUT]))
            continue
        if "npo/compute/optimizer_steps" in r:
            out.spent[int(kept)] = {k: float(r.get(f"npo/compute/{k}", 0.0)) for k in SPENT_KEYS}
        if HELD_OUT in r:
            out.evals.append((int(kept), r[HELD_OUT]))
    if not out.evals or not out.spent:
        raise ValueError("the records hold no held-out evaluation or no kept step")
    return out


def crossing_step(evals: Sequence[tuple[int, float]], target: float) -> float:
    """The kept step where held-out accuracy first reaches ``target``, linear between evaluations; inf if never."""
    for i, (step, acc) in enumerate(evals):
        if acc >= target:
            if i == 0:
                return float(step)
            (s0, a0) = evals[i - 1]
            return s0 + (target - a0) / (acc - a0) * (step - s0)
    return math.inf


def spent_to_target(run: Trace, target: float) -> dict[str, float] | None:
    """Kept steps to the target (whole steps, rounded up) and the counters of that step's record; None if never."""
    step = crossing_step(run.evals, target)
    if math.isinf(step):
        return None
    kept = math.ceil(step - 1e-9)
    return {"kept_steps": float(kept), **run.spent_at(kept)}


def acc_within(run: Trace, budget: float, cost: Callable[[dict[str, float]], float]) -> float:
    """Held-out accuracy at the last evaluation whose compute (``cost`` of its step's counters) is within ``budget``."""
    within = [acc for step, acc in run.evals if cost(run.spent_at(step)) <= budget + 1e-9]
    return within[-1] if within else math.nan


def ratio_of_means(reference: Sequence[float], method: Sequence[float]) -> float:
    """mean(reference) / mean(method): above 1 the method needs less."""
    return float(np.mean(reference) / np.mean(method))


def bootstrap_interval(
    statistic: Callable[..., float], *paired: Sequence[float], draws: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of ``statistic`` over seeds resampled with replacement (paired samples resampled
    together); NaN when there are fewer than two seeds."""
    arrays = [np.asarray(p, dtype=np.float64) for p in paired]
    size = len(arrays[0])
    if size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, size, size=(draws, size))
    values = np.array([statistic(*(a[p] for a in arrays)) for p in picks])
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)
