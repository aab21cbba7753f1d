"""The paper's Figure 2 as a command: Q(Δ), V(Δ) and S(Δ) of near-future guides, from a run's saved checkpoints.

    python -m recipes.npo.probe --checkpoints DIR --anchor T --deltas 10,20,40 --prompts FILE [--k 8] [--out DIR]
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

The measurement is ``npo_ext.probe``'s; loading checkpoints and sampling is ``recipes.npo.probe_backend``'s (the
run's own trainer, sampling through the rollout training uses); this module parses, writes and draws.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from npo_ext.config import NPOConfig
from npo_ext.delta_selection import Candidate, Decision, select_delta
from npo_ext.probe import Band, ProbeBackend, ProbeResult, SourceSignal, probe
from recipes.npo.probe_backend import create

BackendFactory = Callable[[argparse.Namespace, list[str]], ProbeBackend]


def write_csv(result: ProbeResult, decision: Decision, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        bands = [f"{name}_{end}" for name in "qvs" for end in ("low", "high")]
        writer.writerow(["delta", "q", "v", "s", "chosen", *bands, "failing_prompts", "prompts"])
        for row in result.rows:
            band = [x for name in "qvs" for x in result.bands[row.delta][name]]
            chosen = int(row.delta == decision.delta)
            writer.writerow([row.delta, row.q, row.v, row.s, chosen, *band, result.failing_prompts, result.prompts])


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
    parser = argparse.ArgumentParser(prog="python -m recipes.npo.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, required=True, help="the run's trainer.default_local_dir")
    parser.add_argument("--anchor", type=int, required=True, help="T: the step whose policy is the current one")
    parser.add_argument("--deltas", required=True, help="comma-separated look-ahead distances, e.g. 10,20,40")
    parser.add_argument("--prompts", type=Path, required=True, help="verl parquet of the prompts to probe on")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt and policy (default 8)")
    parser.add_argument(
        "--q-k", type=int, default=NPOConfig.q_k, help=f"Q is pass@min(q_k, k), as npo.q_k (default {NPOConfig.q_k})"
    )
    parser.add_argument("--out", type=Path, default=Path("probe_out"), help="where probe.csv and probe.png go")
    parser.add_argument("--teacher-field", help="also measure the teacher traces in extra_info[FIELD] (LUFFY)")
    parser.add_argument("--experience-file", type=Path, help="also measure an RLEP experience file")
    parser.add_argument(
        "--replay-pool", type=Path, help="also measure an ExGRPO pool (a checkpoint's guidance_source.json)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--config-name", default="npo_trainer", help="the run's recipe config (recipes/npo/config)")
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


def main(argv: Sequence[str] | None = None, create_backend: BackendFactory = create) -> list[Candidate]:
    """Run the probe; ``create_backend(args, overrides)`` builds the backend (the verl recipe's by default)."""
    args, overrides = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    backend = create_backend(args, overrides)
    external = [("teacher", args.teacher_field)] if args.teacher_field else []
    external += [("experience_file", str(args.experience_file))] if args.experience_file else []
    external += [("replay", str(args.replay_pool))] if args.replay_pool else []
    try:
        result = probe(backend, args.anchor, args.deltas, args.k, args.q_k, args.out, external)
    finally:
        getattr(backend, "close", lambda: None)()
    rows, sources, bands = result.rows, result.sources, result.bands
    decision = select_delta(rows)
    write_csv(result, decision, args.out / "probe.csv")
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
    print(f"Q is measured on the {result.failing_prompts} of {result.prompts} prompts θ_{args.anchor} fails")
    written = "probe.csv, probe.png, sources.csv and sources.png"
    print(f"delta*={decision.delta} ({decision.reason}); wrote {written} under {args.out}")
    return rows


if __name__ == "__main__":
    main()
