"""Does NPO pay for its look-ahead? GRPO, NPO, AutoNPO, LUFFY, NPO's cheaper collection and near-future distillation
on the hidden-rule task, at equal compute, over many seeds.

    python -m benchmarks.equal_compute [--out-dir outputs/equal_compute] [--seeds 0-7] [--steps 20]
                                        [--methods grpo,npo_once,...]  (default: all but EXTENSIONS) [--jobs 2]
                                        [--docs DIR]  (also copy table.md and curves.png there)

Every run goes through the real recipe (``recipes.npo.main_npo``: ``RayNPOTrainer``, the FSDP actor, the in-worker
rollout, the ``verifiers`` reward) on ``recipes/demo/rule_task.py``; per seed the task (rule, warm start, data) is
built once and every method sees the same data order and the same number of kept steps. Held-out accuracy is the
sampled accuracy (4 samples per held-out prompt) every ``--test-freq`` kept steps. Each finished run is appended to
``runs.jsonl``; a rerun skips the runs whose method, seed, steps, evaluation frequency, overrides and task are
unchanged (resumable) and trains a crashed one again. Then ``summary.csv``, ``curves.png`` and ``table.md`` are
written.

How it is read (``benchmarks/equal_compute_stats.py``): the target, per seed, is the held-out accuracy at 90 % of
GRPO's gain on that seed (start + 0.9 × (final − start); a seed where GRPO did not gain has none). The crossing is
located in kept steps and the compute is read from that step's record: optimizer steps (look-ahead included) and
tokens spent (generated, guide sampling included, plus the response tokens of V's extra forward passes; LUFFY once
with its teacher's tokens free and once counted). Per method: seeds that reach the target (a crashed run counts as
a failure), the ratio of means GRPO / method over the seeds where both reach it (above 1: the method needs less)
with a bootstrap 95 % interval over seeds, final held-out accuracy after the same kept steps and after GRPO's token
budget (the method stopped at the last evaluation within it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.equal_compute_stats import (
    Trace,
    acc_within,
    bootstrap_interval,
    ratio_of_means,
    spent_to_target,
    trace,
)
from recipes.demo.rule_task import RuleTask, build

ROOT = Path(__file__).resolve().parents[1]
CPU_ENV = {
    "VERL_USE_EXTERNAL_MODULES": "recipes.cpu.platform",
    "VERL_PLATFORM": "cpu",
    "VERL_ENGINE_DEVICE": "cuda",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "HYDRA_FULL_ERROR": "1",
    "RAY_AUTH_MODE": "disabled",
}
TARGET_SHARE = 0.9
# verl 0.9.1's micro-batch split fails on rare batches (README, Known limitations); a crashed run is run again once
ATTEMPTS = 2
ACC_COLUMNS = ("acc at equal kept steps", "acc at GRPO's tokens")
SPENT_COLUMN = "whole run's tokens, method / GRPO"


def interventions(starts: list[int], delta: int, window: int | None = None) -> str:
    window = window or delta
    return "npo.interventions=[" + ",".join(f"{{at_step:{s},delta:{delta},window:{window}}}" for s in starts) + "]"


def methods(steps: int) -> dict[str, list[str]]:
    """Hydra overrides per method; NPO's windows are Δ = W = 4 (our choice for a run of a few dozen steps). The
    ``npo_cheap_*`` variants are repeated NPO with one cheaper-collection option each, same forks, same seeds."""
    delta = 4
    forks = list(range(0, steps - delta, 2 * delta))
    repeated = ["npo.enable=true", interventions(forks, delta)]
    return {
        "grpo": ["npo.enable=false"],
        "npo_once": ["npo.enable=true", interventions([0], delta)],
        "npo_repeated": repeated,
        "autonpo": [
            "npo.enable=true",
            "npo.mode=auto",
            "npo.auto.window=4",
            "npo.auto.cooldown=4",
            "npo.auto.max_interventions=4",
            "npo.auto.min_pool=4",
            "npo.auto.delta_max=4",
            "npo.auto.candidate_every=2",
            "npo.auto.probe_prompts=8",
            "npo.auto.probe_k=4",
        ],
        "luffy": [
            "npo.enable=false",
            "guidance.source=teacher",
            "guidance.gated=false",
            "guidance.loss_shaping=policy_prob",
            "algorithm.norm_adv_by_std_in_grpo=false",
            "actor_rollout_ref.actor.policy_loss.loss_mode=npo_guided",
        ],
        # guides only for the prompts whose look-ahead group was below the gate
        "npo_cheap_skip": [*repeated, "npo.collect_skip_expected_passes=true"],
        # ... and a verified look-ahead response as the guide where there is one: only look-ahead failures sampled
        "npo_cheap_reuse": [*repeated, "npo.collect_skip_expected_passes=true", "npo.collect_reuse_lookahead=true"],
        # guide_n = 8 in rounds of 2, a prompt stops at its first verified guide
        "npo_cheap_early": [*repeated, "npo.guide_round_n=2"],
        # half the window: 2 guided steps (and 2 window batches sampled) per look-ahead of 4
        "npo_cheap_window": ["npo.enable=true", interventions(forks, delta, window=delta // 2)],
        # our extension (docs/distillation.md), npo.distill at its defaults: θ_{T+Δ} also a token-level teacher in
        # the window, with guide injection, and alone (no guide sampling); its forward counts as scored tokens
        "npo_distill": [*repeated, "npo.distill.enable=true"],
        "distill_only": [*repeated, "npo.distill.enable=true", "npo.distill.inject_guides=false"],
    }


# methods of our own, not the paper's, run only when named: their study is docs/distillation.md's
EXTENSIONS = ("npo_distill", "distill_only")


@dataclass(frozen=True)
class Row:
    """One line of the table: a method's runs read with one way of counting tokens."""

    name: str
    method: str
    count_external: bool = False

    def tokens(self, spent: dict[str, float]) -> float:
        extra = spent["external_tokens"] if self.count_external else 0.0
        return spent["generated_tokens"] + spent["scored_tokens"] + extra


ROWS = {
    "grpo": [Row("GRPO", "grpo")],
    "npo_once": [Row("NPO, once at step 0", "npo_once")],
    "npo_repeated": [Row("NPO, repeated", "npo_repeated")],
    "autonpo": [Row("AutoNPO", "autonpo")],
    "luffy": [Row("LUFFY, teacher free", "luffy"), Row("LUFFY, teacher's tokens counted", "luffy", True)],
    "npo_cheap_skip": [Row("repeated NPO, `skip`", "npo_cheap_skip")],
    "npo_cheap_reuse": [Row("repeated NPO, `reuse`", "npo_cheap_reuse")],
    "npo_cheap_early": [Row("repeated NPO, `early`", "npo_cheap_early")],
    "npo_cheap_window": [Row("repeated NPO, `window` (W = 2)", "npo_cheap_window")],
    "npo_distill": [Row("repeated NPO + near-future distillation (ours)", "npo_distill")],
    "distill_only": [Row("near-future distillation alone, repeated forks (ours)", "distill_only")],
}
AXES: dict[str, Callable[[Row, dict[str, float]], float]] = {
    "kept steps": lambda row, spent: spent["kept_steps"],
    "optimizer steps": lambda row, spent: spent["optimizer_steps"],
    "tokens": lambda row, spent: row.tokens(spent),
}


def run(
    method: str, overrides: list[str], seed: int, task_dir: Path, out_dir: Path, steps: int, test_freq: int
) -> tuple[list[dict] | None, int]:
    """One training run, tried again from scratch once if it crashes; returns its per-step records (None when every
    attempt failed) and the number of attempts. Each failed attempt's log stays in runs/."""
    for attempt in range(1, ATTEMPTS + 1):
        records = _attempt(method, overrides, seed, task_dir, out_dir, steps, test_freq, attempt)
        if records:
            return records, attempt
    return None, ATTEMPTS


def _attempt(method, overrides, seed, task_dir, out_dir, steps, test_freq, attempt) -> list[dict] | None:
    run_dir = out_dir / "runs" / f"{method}_seed{seed}"
    log = run_dir / "steps.jsonl"
    shutil.rmtree(run_dir / "ckpt", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    env = dict(os.environ, **CPU_ENV, NPO_DEMO_DIR=str(task_dir), VERL_FILE_LOGGER_PATH=str(log))
    command = [
        sys.executable, "-m", "recipes.npo.main_npo", "--config-path", str(ROOT / "recipes/npo/config"),
        "--config-name", "npo_rule_cpu", "trainer.logger=[console,file]", f"trainer.default_local_dir={run_dir}/ckpt",
        f"trainer.total_training_steps={steps}", f"trainer.test_freq={test_freq}", f"data.seed={seed}",
        "++ray_kwargs.ray_init.address=local",
        *overrides,
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    (run_dir / f"output.attempt{attempt}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        return None
    return [json.loads(line)["data"] for line in log.read_text().splitlines()]


def run_key(method: str, seed: int, steps: int, test_freq: int, overrides: list[str], task: RuleTask) -> str:
    """What a run's result depends on, as the key ``runs.jsonl`` is resumed by: change any of it and it trains again."""
    setting = {"method": method, "seed": seed, "steps": steps, "test_freq": test_freq, "overrides": overrides}
    return json.dumps(setting | {"task": asdict(task)}, sort_keys=True)


def target_of(grpo: dict[int, Trace]) -> dict[int, float]:
    """Per seed, the held-out accuracy at 90 % of GRPO's gain on that seed: start + 0.9 (final - start), GRPO's own
    evaluations before the first and after the last step. A seed where GRPO did not gain has no target."""
    if not grpo:
        raise ValueError("no GRPO run finished: the target is set by GRPO, so nothing can be read")
    return {
        seed: t.evals[0][1] + TARGET_SHARE * (t.final_acc - t.evals[0][1])
        for seed, t in sorted(grpo.items())
        if t.final_acc > t.evals[0][1]
    }


def summarise(
    traces: dict[tuple[str, int], Trace], rows: list[Row], targets: dict[int, float], seeds: list[int]
) -> list[dict]:
    """Per table row: of the seeds with a target, those the method reaches it on (a crashed run counts as not
    reaching it); ratios of means to the target over the seeds where both it and GRPO reach it, with intervals; final
    accuracies with intervals over every seed the method and GRPO ran."""
    grpo_row = Row("GRPO", "grpo")
    judged = [s for s in seeds if s in targets]
    out = []
    for row in rows:
        ran = [s for s in judged if (row.method, s) in traces]
        mine = {s: spent_to_target(traces[(row.method, s)], targets[s]) for s in ran}
        theirs = {s: spent_to_target(traces[("grpo", s)], targets[s]) for s in judged if ("grpo", s) in traces}
        both = [s for s in ran if mine[s] is not None and theirs.get(s) is not None]
        entry: dict = {"row": row.name, "seeds": len(judged), "reached": sum(m is not None for m in mine.values())}
        entry["paired"] = len(both)
        entry["at target before training"] = sum(m is not None and m["kept_steps"] == 0 for m in mine.values())
        for axis, cost in AXES.items():
            ref = [cost(grpo_row, theirs[s]) for s in both]
            own = [cost(row, mine[s]) for s in both]
            entry[f"{axis}: ratio"] = ratio_of_means(ref, own) if both else math.nan
            entry[f"{axis}: low"], entry[f"{axis}: high"] = bootstrap_interval(ratio_of_means, ref, own)
        compared = [s for s in seeds if (row.method, s) in traces and ("grpo", s) in traces]
        budget = {s: row_tokens_total(grpo_row, traces[("grpo", s)]) for s in compared}
        same_steps = [traces[(row.method, s)].final_acc for s in compared]
        same_tokens = [acc_within(traces[(row.method, s)], budget[s], row.tokens) for s in compared]
        for name, values in zip(ACC_COLUMNS, (same_steps, same_tokens), strict=True):
            entry[name] = _nanmean(values)
            entry[f"{name}: low"], entry[f"{name}: high"] = bootstrap_interval(_nanmean, values)
        own_total = [row_tokens_total(row, traces[(row.method, s)]) for s in compared]
        grpo_total = [budget[s] for s in compared]
        entry[SPENT_COLUMN] = ratio_of_means(own_total, grpo_total) if compared else math.nan
        entry[f"{SPENT_COLUMN}: low"], entry[f"{SPENT_COLUMN}: high"] = bootstrap_interval(
            ratio_of_means, own_total, grpo_total
        )
        out.append(entry)
    return out


def row_tokens_total(row: Row, run_trace: Trace) -> float:
    return row.tokens(run_trace.spent_at(run_trace.last_step))


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _cell(value: float, low: float, high: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    interval = "" if math.isnan(low) else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{value:.{digits}f}{interval}"


def markdown(
    summary: list[dict],
    targets: dict[int, float],
    grpo: dict[int, Trace],
    seeds: list[int],
    failed: dict[str, str],
    retried: list[str],
) -> str:
    lines = [
        "| method | reached the target (paired with GRPO) | kept steps | optimizer steps | tokens spent "
        "| held-out acc, equal kept steps | held-out acc, GRPO's tokens | whole run's tokens, method / GRPO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in summary:
        ratios = [_cell(e[f"{a}: ratio"], e[f"{a}: low"], e[f"{a}: high"]) for a in AXES]
        accs = [_cell(e[n], e[f"{n}: low"], e[f"{n}: high"], 3) for n in ACC_COLUMNS]
        spent = _cell(e[SPENT_COLUMN], e[f"{SPENT_COLUMN}: low"], e[f"{SPENT_COLUMN}: high"])
        cells = [e["row"], f"{e['reached']}/{e['seeds']} ({e['paired']})", *ratios, *accs, spent]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)}) per method. Target, per seed: the held-out accuracy at "
        f"{TARGET_SHARE:.0%} of GRPO's gain on that seed, start + {TARGET_SHARE} × (final − start); "
        + ", ".join(f"seed {s}: {t:.3f}" for s, t in targets.items())
        + "."
        + (
            f" Seeds where GRPO did not gain, so no target: {sorted(set(grpo) - set(targets))}."
            if set(grpo) - set(targets)
            else ""
        ),
        "Reached: seeds whose held-out accuracy reaches the target within the run (a crashed run counts as not "
        "reaching it); in brackets, those where GRPO reaches it too, the seeds the ratios are over.",
        "Ratios (kept steps, optimizer steps, tokens spent): mean over the paired seeds of GRPO's cost to the target "
        "/ mean of the method's; above 1 the method needs less. The crossing is found in kept steps (linear between "
        "evaluations, rounded up) and its cost read from that step's record. Tokens spent: generated (guides and "
        "look-ahead included) + scored by V's extra forward passes (+ the teacher's, where counted). Brackets: "
        "bootstrap 95 % interval over seeds. Accuracies: mean over seeds with its interval; at GRPO's tokens, each "
        "run is read at its last evaluation within the GRPO run's total tokens on that seed. Last column: mean "
        "tokens of the method's whole run / mean of GRPO's.",
    ]
    at_start = [f"{e['row']} ({e['at target before training']})" for e in summary if e["at target before training"]]
    if at_start:
        notes.append("Seeds at the target before any training (counted as reached at no cost): " + ", ".join(at_start))
    learned = ", ".join(f"{t.evals[0][1]:.2f} → {t.final_acc:.2f}" for _, t in sorted(grpo.items()))
    notes.append(f"GRPO's held-out accuracy per seed, before training → after the last step: {learned}.")
    if retried:
        notes.append("Runs that crashed once and finished when run again from scratch: " + ", ".join(retried) + ".")
    if failed:
        notes.append(
            "Runs with no result (logs under runs/): " + "; ".join(f"{k}: {v}" for k, v in failed.items()) + "."
        )
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def mean_band(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 40) -> tuple[np.ndarray, ...]:
    """Mean and bootstrap 95 % band over seeds of curves with their own x values, on a shared grid up to where the
    shortest curve ends (each curve linear between its points)."""
    end = min(float(xs[-1]) for xs, _ in curves)
    grid = np.linspace(0.0, end, points)
    ys = np.array([np.interp(grid, xs, acc) for xs, acc in curves])
    bands = [bootstrap_interval(np.mean, ys[:, i], draws=2000) for i in range(points)]
    low, high = (np.array([b[j] for b in bands]) for j in (0, 1))
    return grid, ys.mean(0), np.where(np.isnan(low), ys.mean(0), low), np.where(np.isnan(high), ys.mean(0), high)


def plot(traces: dict[tuple[str, int], Trace], rows: list[Row], targets: dict[int, float], path: Path) -> None:
    """Held-out accuracy against kept steps, optimizer steps and tokens spent: per table row, the mean over seeds
    and its bootstrap 95 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(AXES), figsize=(6 * len(AXES), 5), sharey=True)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(rows):
        runs = [t for (m, _), t in sorted(traces.items()) if m == row.method]
        if not runs:
            continue
        style = "--" if row.count_external else "-"
        for ax, cost in zip(axes, AXES.values(), strict=True):
            curves = []
            for t in runs:
                xs = [cost(row, {"kept_steps": float(step), **t.spent_at(step)}) for step, _ in t.evals]
                curves.append((np.array(xs), np.array([acc for _, acc in t.evals])))
            grid, mean, low, high = mean_band(curves)
            colour = palette[i % len(palette)]
            ax.plot(grid, mean, style, color=colour, label=f"{row.name} ({len(runs)} seeds)")
            ax.fill_between(grid, low, high, color=colour, alpha=0.12)
    for ax, axis in zip(axes, AXES, strict=True):
        if targets:
            ax.axhline(float(np.mean(list(targets.values()))), color="grey", linestyle=":", label="mean target")
        ax.set_xlabel(axis)
    axes[0].set_ylabel("held-out accuracy (mean, 95 % band over seeds)")
    axes[0].legend(fontsize=7)
    fig.suptitle("hidden-rule task: held-out accuracy against kept steps, optimizer steps and tokens spent")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_seeds(text: str) -> list[int]:
    """``0-7`` or ``0,1,2``."""
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "equal_compute")
    parser.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 0,1,2")
    parser.add_argument("--steps", type=int, default=20, help="kept optimizer steps per run")
    parser.add_argument("--test-freq", type=int, default=4, help="held-out evaluation every this many kept steps")
    parser.add_argument(
        "--methods",
        default=",".join(m for m in ROWS if m not in EXTENSIONS),
        help=f"default: every method but our extensions {', '.join(EXTENSIONS)} (docs/distillation.md)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every run, e.g. actor_rollout_ref.actor.optim.lr=1e-3"
    )
    parser.add_argument("--docs", type=Path, help="also copy table.md and curves.png into this folder")
    args = parser.parse_args()
    started = time.monotonic()
    seeds = parse_seeds(args.seeds)
    table = methods(args.steps)
    chosen = args.methods.split(",")
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {sorted(table)}")
    if "grpo" not in chosen:
        parser.error("grpo is the reference every ratio is taken against: include it")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = args.out_dir / "runs.jsonl"
    done: dict[str, dict] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            entry = json.loads(line)
            if not entry["failed"] and "key" in entry:  # a failed run is tried again
                done[entry["key"]] = entry

    def key(method: str, seed: int) -> str:
        return run_key(method, seed, args.steps, args.test_freq, [*table[method], *args.overrides], RuleTask(seed=seed))

    todo = [(m, s) for s in seeds for m in chosen if key(m, s) not in done]
    tasks = {s: build(args.out_dir / "tasks" / f"seed{s}", RuleTask(seed=s)) for s in sorted({s for _, s in todo})}
    # Runs are independent processes (each its own local Ray); a run does not keep 2 cores busy, so two at a time
    # finish the study sooner. Steps and tokens, the study's axes, do not depend on it.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {}
        for m, s in todo:
            overrides = [*table[m], *args.overrides]
            futures[pool.submit(run, m, overrides, s, tasks[s], args.out_dir, args.steps, args.test_freq)] = (m, s)
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs", unit="run"):
            method, seed = futures[future]
            records, attempts = future.result()
            entry = {"key": key(method, seed), "method": method, "seed": seed, "records": records or []}
            entry["attempts"] = attempts
            entry["failed"] = not records
            with open(results, "a") as f:
                f.write(json.dumps(entry) + "\n")
            done[entry["key"]] = entry
    traces, failed, retried = {}, {}, []
    for m in chosen:
        for s in seeds:
            entry = done[key(m, s)]
            name = f"{m} seed {s}"
            if entry.get("attempts", 1) > 1 and not entry["failed"]:
                retried.append(name)
            if entry["failed"]:
                failed[name] = f"exited with an error in each of {entry['attempts']} attempts"
                continue
            try:
                traces[(m, s)] = trace(entry["records"])
            except ValueError as error:
                failed[name] = str(error)
    grpo = {s: t for (m, s), t in traces.items() if m == "grpo"}
    targets = target_of(grpo)
    rows = [row for m in chosen for row in ROWS[m]]
    summary = summarise(traces, rows, targets, seeds)
    with open(args.out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    plot(traces, rows, targets, args.out_dir / "curves.png")
    minutes = (time.monotonic() - started) / 60
    text = markdown(summary, targets, grpo, seeds, failed, retried)
    text += (
        f"\nWall time of the invocation that wrote this table: {minutes:.1f} minutes on {os.cpu_count()} CPU cores, "
        f"{len(todo)} runs trained, {len(chosen) * len(seeds) - len(todo)} read from runs.jsonl.\n"
    )
    (args.out_dir / "table.md").write_text(text)
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "curves.png"):
            shutil.copyfile(args.out_dir / name, args.docs / name)
    print(text)


if __name__ == "__main__":
    main()
