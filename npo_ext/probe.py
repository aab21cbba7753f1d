"""The paper's Figure 2 as a command: Q(Δ), V(Δ) and S(Δ) of near-future guides, from a run's saved checkpoints.

    python -m npo_ext.probe --checkpoints DIR --anchor T --deltas 10,20,40 --prompts FILE [--k 8] [--out DIR]
                            [--teacher-field FIELD] [--experience-file FILE] [--replay-pool FILE]
                            [--device cpu|cuda] [--config-name NAME] [hydra overrides of the run...]

θ_T (``DIR/global_step_T``) samples k responses per prompt: the prompts it fails (all k wrong) are where Q is
measured. Each θ_{T+Δ} samples k responses per prompt; Q(Δ) is its pass@min(q_k, k) on those prompts and V(Δ) the
per-token 1 + χ² of θ_T against θ_{T+Δ} on its samples, with the estimator training uses (``npo_ext.signals``:
exact on the guide's top-k ids, the tail from draws); each with a bootstrap 95 % interval over the probe prompts.
The table is built by the same function AutoNPO uses (``npo_ext.delta_selection.candidate_table``), so the same
checkpoints and prompts give the same Δ* in both; AutoNPO's prompts are its mistake pool's, the probe's are
``--prompts``. S = Q / V, and Δ* follows the trainer's rule. Writes ``probe.csv`` and ``probe.png`` under ``--out``.

The other guidance sources are measured on the same failed prompts (``--teacher-field``: LUFFY's trace in
``extra_info``; ``--experience-file``: RLEP's file; ``--replay-pool``: ExGRPO's pool as a checkpoint saved it), one
stored trajectory each, so their Q is pass@1; ``sources.csv`` and ``sources.png`` put every source side by side.
Their V is NaN here: NPO's V needs the guide's next-token distribution, which a stored trace does not have (README,
"Guidance sources"); ExGRPO's replay logs a sampled V during training from the log-probs it records.

Loading checkpoints and sampling is the backend's job (``--backend``, default the verl recipe's, which samples
through the same rollout the trainer uses); this module only orders the work and does the arithmetic, so it stays
free of any engine.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from npo_ext.delta_selection import Candidate, Decision, candidate_table, select_delta
from npo_ext.signals import effective_signal, pass_at_1_q, v_from_rows

DEFAULT_BACKEND = "recipes.npo.probe_backend"


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


def probe(
    backend: ProbeBackend,
    anchor: int,
    deltas: Sequence[int],
    k: int,
    q_k: int,
    work: Path,
    external: Sequence[tuple[str, str]] = (),
) -> tuple[list[Candidate], list[SourceSignal], dict[int, Band]]:
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
    return rows, near_future + sources, prompt_bootstrap(anchor_correct, k, correct, v_rows, q_k)


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


def write_csv(rows: Sequence[Candidate], bands: dict[int, Band], decision: Decision, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["delta", "q", "v", "s", "chosen", "q_low", "q_high", "v_low", "v_high", "s_low", "s_high"])
        for row in rows:
            band = [x for name in "qvs" for x in bands[row.delta][name]]
            writer.writerow([row.delta, row.q, row.v, row.s, int(row.delta == decision.delta), *band])


def write_sources_csv(sources: Sequence[SourceSignal], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "q", "v", "s"])
        for source in sources:
            writer.writerow([source.source, source.q, source.v, source.s])


def plot_sources(sources: Sequence[SourceSignal], path: Path, title: str) -> None:
    """Three bar panels, Q, V and S per source; an undefined V or S is drawn as no bar and labelled n/a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.source for s in sources]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, name, label in zip(axes, "qvs", ("Q (strong enough)", "V (close enough)", "S = Q / V"), strict=True):
        values = [getattr(s, name) for s in sources]
        ax.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values])
        for i, value in enumerate(values):
            if math.isnan(value):
                ax.annotate("n/a", (i, 0), ha="center", va="bottom")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(rows: Sequence[Candidate], bands: dict[int, Band], decision: Decision, path: Path, title: str) -> None:
    """Three panels, Q, V and S against Δ with their 95 % intervals over prompts, Δ* marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deltas = [r.delta for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, name, label in zip(axes, "qvs", ("Q (strong enough)", "V (close enough)", "S = Q / V"), strict=True):
        ax.plot(deltas, [getattr(r, name) for r in rows], marker="o")
        ax.fill_between(deltas, *zip(*(bands[d][name] for d in deltas), strict=True), alpha=0.2)
        if decision.delta is not None:
            ax.axvline(decision.delta, color="tab:red", linestyle="--", label=f"Δ* = {decision.delta}")
            ax.legend()
        ax.set_xlabel("Δ (look-ahead steps)")
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m npo_ext.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, required=True, help="the run's trainer.default_local_dir")
    parser.add_argument("--anchor", type=int, required=True, help="T: the step whose policy is the current one")
    parser.add_argument("--deltas", required=True, help="comma-separated look-ahead distances, e.g. 10,20,40")
    parser.add_argument("--prompts", type=Path, required=True, help="verl parquet of the prompts to probe on")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt and policy (default 8)")
    parser.add_argument("--q-k", type=int, default=4, help="Q is pass@min(q_k, k), as npo.q_k (default 4)")
    parser.add_argument("--out", type=Path, default=Path("probe_out"), help="where probe.csv and probe.png go")
    parser.add_argument("--teacher-field", help="also measure the teacher traces in extra_info[FIELD] (LUFFY)")
    parser.add_argument("--experience-file", type=Path, help="also measure an RLEP experience file")
    parser.add_argument(
        "--replay-pool", type=Path, help="also measure an ExGRPO pool (a checkpoint's guidance_source.json)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--config-name", default="npo_trainer", help="the run's recipe config (recipes/npo/config)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help="module with create(args, overrides)")
    args, overrides = parser.parse_known_args(argv)
    try:
        args.deltas = sorted({int(d) for d in args.deltas.split(",") if d.strip()})
    except ValueError:
        parser.error(f"--deltas must be comma-separated integers, got {args.deltas!r}")
    if not args.deltas or min(args.deltas) < 1:
        parser.error("--deltas needs at least one distance >= 1")
    if args.k < 1 or args.q_k < 1:
        parser.error("--k and --q-k must be >= 1")
    for step in (args.anchor, *(args.anchor + d for d in args.deltas)):
        folder = args.checkpoints / f"global_step_{step}" / "actor"
        if not folder.is_dir():
            parser.error(f"no checkpoint for step {step}: {folder} (save with trainer.save_freq dividing every step)")
    if not args.prompts.is_file():
        parser.error(f"--prompts: no such file {args.prompts}")
    for option, path in (("--experience-file", args.experience_file), ("--replay-pool", args.replay_pool)):
        if path is not None and not path.is_file():
            parser.error(f"{option}: no such file {path}")
    return args, overrides


def main(argv: Sequence[str] | None = None) -> list[Candidate]:
    args, overrides = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    backend = importlib.import_module(args.backend).create(args, overrides)
    external = [("teacher", args.teacher_field)] if args.teacher_field else []
    external += [("experience_file", str(args.experience_file))] if args.experience_file else []
    external += [("replay", str(args.replay_pool))] if args.replay_pool else []
    try:
        rows, sources, bands = probe(backend, args.anchor, args.deltas, args.k, args.q_k, args.out, external)
    finally:
        getattr(backend, "close", lambda: None)()
    decision = select_delta(rows)
    write_csv(rows, bands, decision, args.out / "probe.csv")
    plot(
        rows,
        bands,
        decision,
        args.out / "probe.png",
        f"near-future guides of θ_{args.anchor} ({args.prompts.name}, k={args.k})",
    )
    write_sources_csv(sources, args.out / "sources.csv")
    plot_sources(sources, args.out / "sources.png", f"guidance sources for θ_{args.anchor} ({args.prompts.name})")
    for row in rows:
        s = "nan" if math.isnan(row.s) else f"{row.s:.4g}"
        band = " ".join(f"{n.upper()}∈[{lo:.4g}, {hi:.4g}]" for n, (lo, hi) in bands[row.delta].items())
        print(f"delta={row.delta} Q={row.q:.4g} V={row.v:.4g} S={s} ({band})")
    for source in sources[len(rows) :]:
        print(f"source={source.source} Q={source.q:.4g} V=n/a")
    written = "probe.csv, probe.png, sources.csv and sources.png"
    print(f"delta*={decision.delta} ({decision.reason}); wrote {written} under {args.out}")
    return rows


if __name__ == "__main__":
    main()
