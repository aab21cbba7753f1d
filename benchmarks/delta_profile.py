"""The paper's Figure 2(c) on the hidden-rule task: S(Δ) = Q(Δ) / V(Δ) of near-future guides at an early and a late
anchor of one GRPO run, with 95 % intervals over the probe prompts.

    python -m benchmarks.delta_profile [--out-dir outputs/delta_profile] [--seed 4] [--anchors 1,10]
                                       [--deltas 1,2,4,8] [--k 8] [--docs DIR]

A GRPO run on ``recipes/demo/rule_task.py`` (the equal-compute study's task and recipe) saves a checkpoint after
every step; ``python -m recipes.npo.probe`` then measures, at each anchor T, Q on the held-out prompts θ_T fails
and V of θ_{T+Δ}'s samples under θ_T, for every Δ. verl saves no checkpoint before the first step, so the early
anchor is T = 1 (the paper's is T = 0). Writes ``table.md`` and ``s_of_delta.png``; both steps are skipped when
their output exists (resumable).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.equal_compute import CPU_ENV, ROOT
from recipes.demo.rule_task import RuleTask, build


def train(task_dir: Path, out_dir: Path, steps: int) -> Path:
    """A GRPO run with a checkpoint after every step; returns the checkpoint folder."""
    checkpoints = out_dir / "run" / "ckpt"
    if (checkpoints / f"global_step_{steps}" / "actor").is_dir():
        return checkpoints
    shutil.rmtree(checkpoints, ignore_errors=True)
    command = [
        sys.executable, "-m", "recipes.npo.main_npo", "--config-path", str(ROOT / "recipes/npo/config"),
        "--config-name", "npo_rule_cpu", f"trainer.default_local_dir={checkpoints}",
        f"trainer.total_training_steps={steps}", "trainer.save_freq=1", "trainer.max_actor_ckpt_to_keep=null",
        "trainer.test_freq=-1", "trainer.val_before_train=false", "npo.enable=false",
        "++ray_kwargs.ray_init.address=local",
    ]  # fmt: skip
    _run(command, task_dir, out_dir / "run" / "train.log")
    return checkpoints


def probe(task_dir: Path, checkpoints: Path, out: Path, anchor: int, deltas: list[int], k: int) -> Path:
    """``python -m recipes.npo.probe`` at one anchor on the held-out prompts; returns its probe.csv."""
    table = out / "probe.csv"
    if table.is_file():
        return table
    command = [
        sys.executable, "-m", "recipes.npo.probe", f"--checkpoints={checkpoints}", f"--anchor={anchor}",
        f"--deltas={','.join(map(str, deltas))}", f"--prompts={task_dir / 'data' / 'val.parquet'}", f"--k={k}",
        "--device=cpu", "--config-name=npo_rule_cpu", f"--out={out}", "++ray_kwargs.ray_init.address=local",
    ]  # fmt: skip
    _run(command, task_dir, out / "probe.log")
    return table


def _run(command: list[str], task_dir: Path, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **CPU_ENV, NPO_DEMO_DIR=str(task_dir))
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"{command[2]} failed (exit {proc.returncode}); its log: {log}")


def read(table: Path) -> list[dict[str, float]]:
    with open(table) as f:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]


def best_delta(rows: list[dict[str, float]]) -> int | None:
    chosen = [int(r["delta"]) for r in rows if r["chosen"] == 1]
    return chosen[0] if chosen else None


def move_noise(profiles: dict[int, list[dict[str, float]]], first: int, last: int) -> str:
    """Whether the two anchors' Δ* are told apart over prompts: at each anchor, do their S intervals overlap?"""
    overlapping = []
    for anchor, rows in profiles.items():
        by_delta = {int(r["delta"]): r for r in rows}
        (a_low, a_high), (b_low, b_high) = ((by_delta[d]["s_low"], by_delta[d]["s_high"]) for d in (first, last))
        if a_low <= b_high and b_low <= a_high:
            overlapping.append(
                f"at T = {anchor}, S is {by_delta[first]['s']:.3f} [{a_low:.3f}, {a_high:.3f}] at Δ = {first} and "
                f"{by_delta[last]['s']:.3f} [{b_low:.3f}, {b_high:.3f}] at Δ = {last}"
            )
    if overlapping:
        return ", within the noise over prompts: " + "; ".join(overlapping)
    return ", and at each anchor the two Δs' S intervals are disjoint"


def markdown(profiles: dict[int, list[dict[str, float]]], seed: int, k: int, minutes: float) -> str:
    header = ["anchor T", "prompts θ_T fails", "Δ", *(f"{n} [95 % interval]" for n in ("Q", "V", "S = Q / V")), "Δ*"]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|---|---|---|---|---|---|---|")
    for anchor, rows in profiles.items():
        for r in rows:
            cells = [f"{r[n]:.3f} [{r[f'{n}_low']:.3f}, {r[f'{n}_high']:.3f}]" for n in "qvs"]
            mark = "←" if r["chosen"] else ""
            failing = f"{int(r['failing_prompts'])} / {int(r['prompts'])}"
            lines.append(f"| {anchor} | {failing} | {int(r['delta'])} | " + " | ".join(cells) + f" | {mark} |")
    (early, early_rows), (late, late_rows) = list(profiles.items())[0], list(profiles.items())[-1]
    first, last = best_delta(early_rows), best_delta(late_rows)
    if first is None or last is None:
        verdict = "one anchor has no Δ* (no guide solves a prompt θ_T fails), so nothing is said about its move"
    else:
        moved = "later" if last > first else ("earlier" if last < first else "nowhere")
        verdict = f"Δ* is {first} at T = {early} and {last} at T = {late}: the optimum moves {moved}"
        if first != last:
            verdict += move_noise(profiles, first, last)
    notes = [
        f"One GRPO run (seed {seed}) of the equal-compute study's task and recipe, a checkpoint after every step. At "
        f"each anchor, θ_T samples {k} responses per held-out prompt; Q is θ_{{T+Δ}}'s pass@4 on the prompts θ_T "
        "fails (all wrong; the fewer they are, the wider Q's interval), V the per-token 1 + χ² of θ_T against "
        "θ_{T+Δ} on θ_{T+Δ}'s samples (top-k with tail draws, as training measures it). Intervals: bootstrap 95 % "
        "over the held-out prompts (a prompt's counts and its responses' V move together). Δ*: the largest S, ties "
        "to the smaller Δ.",
        verdict + ".",
        f"Wall time of the invocation that wrote this table: {minutes:.1f} minutes on {os.cpu_count()} CPU cores.",
    ]
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def plot(profiles: dict[int, list[dict[str, float]]], path: Path) -> None:
    """Q, V and S against Δ, one line and band per anchor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for anchor, rows in profiles.items():
        deltas = [r["delta"] for r in rows]
        for ax, name in zip(axes, "qvs", strict=True):
            line = ax.plot(deltas, [r[name] for r in rows], marker="o", label=f"T = {anchor}")[0]
            lows, highs = [r[f"{name}_low"] for r in rows], [r[f"{name}_high"] for r in rows]
            ax.fill_between(deltas, lows, highs, color=line.get_color(), alpha=0.15)
            chosen = best_delta(rows)
            if name == "s" and chosen is not None:
                ax.axvline(chosen, color=line.get_color(), linestyle="--")
    for ax, title in zip(axes, ("Q (strong enough)", "V (close enough)", "S = Q / V (dashed: Δ*)"), strict=True):
        ax.set_xlabel("Δ (look-ahead steps)")
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle("near-future guides at an early and a late anchor (95 % intervals over held-out prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "delta_profile")
    parser.add_argument("--seed", type=int, default=4, help="the task seed (rule, warm start, data order)")
    parser.add_argument("--anchors", default="1,10", help="early and late anchor steps T (>= 1)")
    parser.add_argument("--deltas", default="1,2,4,8")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt and policy")
    parser.add_argument("--docs", type=Path, help="also copy table.md and s_of_delta.png into this folder")
    args = parser.parse_args()
    anchors = sorted(int(a) for a in args.anchors.split(","))
    deltas = sorted(int(d) for d in args.deltas.split(","))
    if len(anchors) < 2 or anchors[0] < 1 or deltas[0] < 1:
        parser.error("--anchors needs an early and a late step >= 1 (verl saves no step-0 checkpoint); --deltas >= 1")
    started = time.monotonic()
    task_dir = build(args.out_dir / "task", RuleTask(seed=args.seed))
    checkpoints = train(task_dir, args.out_dir, anchors[-1] + deltas[-1])
    profiles = {
        anchor: read(probe(task_dir, checkpoints, args.out_dir / f"anchor_{anchor}", anchor, deltas, args.k))
        for anchor in anchors
    }
    text = markdown(profiles, args.seed, args.k, (time.monotonic() - started) / 60)
    (args.out_dir / "table.md").write_text(text)
    plot(profiles, args.out_dir / "s_of_delta.png")
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        for name in ("table.md", "s_of_delta.png"):
            shutil.copyfile(args.out_dir / name, args.docs / name)
    print(text)


if __name__ == "__main__":
    main()
