"""The measurement behind the paper's Figure 2: Q(Δ), V(Δ) and S(Δ) of near-future guides θ_{T+Δ} against θ_T.

θ_T samples k responses per prompt: the prompts it fails (all k wrong) are where Q is measured. Each θ_{T+Δ}
samples k responses per prompt; Q(Δ) is its pass@min(q_k, k) on those prompts and V(Δ) the per-token 1 + χ² of θ_T
against θ_{T+Δ} on its samples, with the estimator training uses (``npo_ext.signals``: exact on the guide's top-k
ids, the tail from draws); each with a bootstrap 95 % interval over the probe prompts. The table is built by the
same function AutoNPO uses (``npo_ext.delta_selection.candidate_table``), so the same checkpoints and prompts give
the same Δ* in both. Other guidance sources (a teacher's traces, an experience file, a replay pool) are measured on
the same failed prompts, one stored trajectory each, so their Q is pass@1 and their V undefined here.

Loading checkpoints and sampling is a :class:`ProbeBackend`'s job; this module only orders the work and does the
arithmetic, so it stays free of any engine. The command is ``python -m recipes.npo.probe``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from npo_ext.delta_selection import Candidate, candidate_table
from npo_ext.signals import effective_signal, failing_prompts, pass_at_1_q, v_from_rows


class ProbeBackend(Protocol):
    """Loads checkpoints of one run and samples the probe prompts with them."""

    def load(self, step: int) -> None:
        """Make θ_step the policy that samples and scores."""

    def sample(self, k: int, samples_dir: Path | None) -> np.ndarray:
        """k responses per prompt from the loaded policy; returns the verified-correct count per prompt and, with
        ``samples_dir``, stores what V needs of the responses there."""

    def variance_rows(self, samples_dir: Path) -> np.ndarray:
        """V's per-response sums (``npo_ext.signals.Chi2TopK.rows``) of the responses in ``samples_dir`` under the
        loaded policy, in sampling order: k consecutive responses per prompt."""

    def external_correct(self, source: str, where: str) -> np.ndarray:
        """Per prompt, 1 where an external source holds a verified-correct trajectory: ``teacher`` (the trace in
        ``extra_info[where]``, judged by the reward), ``experience_file`` (the prompt is in the file ``where``) or
        ``replay`` (the prompt has stored successes in the pool state ``where``)."""


@dataclass(frozen=True)
class SourceSignal:
    """One guidance source's Q, V and S on the probe's failed prompts (V, S NaN where V is undefined)."""

    source: str
    q: float
    v: float = math.nan

    @property
    def s(self) -> float:
        return effective_signal(self.q, self.v)


Band = dict[str, tuple[float, float]]  # "q", "v", "s" -> 95 % interval


@dataclass(frozen=True)
class ProbeResult:
    """One probe: a row and an interval per Δ, the sources' signals, and how many prompts Q rests on."""

    rows: list[Candidate]
    sources: list[SourceSignal]
    bands: dict[int, Band]
    failing_prompts: int  # prompts θ_T fails: Q's denominator, so its interval's width
    prompts: int


def probe(
    backend: ProbeBackend,
    anchor: int,
    deltas: Sequence[int],
    k: int,
    q_k: int,
    work: Path,
    external: Sequence[tuple[str, str]] = (),
) -> ProbeResult:
    """Q, V and S for each Δ (a progress bar over the 1 + 2·len(deltas) policy passes) with their intervals over
    prompts, and Q of each ``external`` source ``(kind, where)`` on the prompts θ_T fails."""
    with tqdm(total=1 + 2 * len(deltas), desc="probe", unit="pass") as bar:
        backend.load(anchor)
        anchor_correct = backend.sample(k, None)
        bar.update()
        failing = anchor_correct / k
        sources = [
            SourceSignal(f"{kind} ({Path(where).name})", pass_at_1_q(failing, backend.external_correct(kind, where)))
            for kind, where in external
        ]
        correct: dict[int, np.ndarray] = {}
        for delta in deltas:
            backend.load(anchor + delta)
            correct[delta] = backend.sample(k, work / f"samples_{delta}")
            bar.update()
        backend.load(anchor)
        v_rows = {}
        for delta in deltas:
            v_rows[delta] = backend.variance_rows(work / f"samples_{delta}")
            bar.update()
        rows = candidate_table(anchor_correct, k, correct, {d: v_from_rows(r) for d, r in v_rows.items()}, q_k)
    near_future = [SourceSignal(f"near_future (Δ={r.delta})", r.q, r.v) for r in rows]
    return ProbeResult(
        rows,
        near_future + sources,
        prompt_bootstrap(anchor_correct, k, correct, v_rows, q_k),
        failing_prompts=len(failing_prompts(failing)),
        prompts=len(anchor_correct),
    )


def prompt_bootstrap(
    anchor_correct: Sequence[int],
    k: int,
    correct: dict[int, np.ndarray],
    v_rows: dict[int, np.ndarray],
    q_k: int,
    draws: int = 2000,
    seed: int = 0,
) -> dict[int, Band]:
    """Per Δ, 95 % percentile intervals of Q, V and S over the probe prompts resampled with replacement: a prompt
    carries its θ_T and θ_{T+Δ} counts and its k responses' V sums, and each resample is read by
    :func:`candidate_table`, as the point values are. NaN where no resample defines the value."""
    anchor = np.asarray(anchor_correct)
    prompts = anchor.size
    per_prompt = {}
    for delta, rows in v_rows.items():
        if len(rows) % max(prompts, 1):
            raise ValueError(f"Δ={delta}: {len(rows)} V rows do not split into {prompts} prompts' responses")
        per_prompt[delta] = np.asarray(rows).reshape(prompts, -1, 3)
    rng = np.random.default_rng(seed)
    values: dict[int, list[tuple[float, float, float]]] = {d: [] for d in correct}
    for _ in range(draws):
        pick = rng.integers(0, prompts, prompts)
        v = {d: v_from_rows(r[pick]) for d, r in per_prompt.items()}
        for row in candidate_table(anchor[pick], k, {d: np.asarray(c)[pick] for d, c in correct.items()}, v, q_k):
            values[row.delta].append((row.q, row.v, row.s))
    bands = {}
    for delta, triples in values.items():
        columns = np.array(triples, dtype=np.float64).T
        bands[delta] = {name: _interval(col) for name, col in zip("qvs", columns, strict=True)}
    return bands


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)
