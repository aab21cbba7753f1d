"""The cost of one AutoNPO decision in GRPO-step units, on the tiny CPU config, against a GRPO run in the same script.

    python benchmarks/autonpo_decision_cost.py [--out-dir outputs/bench_autonpo] [--steps 8]

Runs ``scripts/run_npo.sh --local`` twice, each logging every optimizer step to a JSONL file: RECIPE=grpo, then
``npo.mode=auto`` with one intervention (the bootstrap at step 0: look ahead ``delta_max`` = 2 steps with candidates
at Δ = 1 and 2, probe both, select, collect the window's guides, roll back). A decision is:

* the ``delta_max`` look-ahead steps, each a GRPO step by construction (same code, thrown away), so counted as
  exactly ``delta_max`` step units; their measured time is reported as a check;
* the fork machinery around them, timed by the fork manager: the snapshot at T, a weights-only save per candidate,
  probing (each candidate samples the probe prompts and its top-k log-probs are stored), selection (θ_T scores
  every candidate's samples: V), and the rollback.

Collecting the chosen guide's window and measuring V on it is the cost of *guiding*, which manual NPO pays too; it is
reported beside the decision, not in it. Times are seconds on this machine; ratios divide by the GRPO run's mean
step time (its first, warm-up step excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOKAHEAD_STEP = "npo/lookahead/timing_s/step"  # look-ahead steps log verl's metrics under npo/lookahead/
DECISION = ("snapshot", "guide_checkpoint", "probe", "select", "rollback")
GUIDING = ("collect", "variance")
AUTO = ["npo.mode=auto", "npo.auto.max_interventions=1", "npo.auto.delta_max=2", "npo.auto.candidate_every=1"]


def run(recipe: str, overrides: list[str], out_dir: Path, steps: int) -> tuple[list[dict], float]:
    """One local run; returns its per-step records and its wall time (start-up included)."""
    name = "autonpo" if overrides else recipe
    log = out_dir / f"{name}.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ, RECIPE=recipe, OUT_DIR=str(out_dir / name), VERL_FILE_LOGGER_PATH=str(log))
    common = [f"trainer.total_training_steps={steps}", "trainer.save_freq=-1", "trainer.logger=[console,file]"]
    start = time.perf_counter()
    command = ["bash", "scripts/run_npo.sh", "--local", *common, *overrides]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return [json.loads(line)["data"] for line in log.read_text().splitlines()], time.perf_counter() - start


def total(records: list[dict], key: str) -> float:
    return sum(r.get(key, 0.0) for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "bench_autonpo")
    parser.add_argument("--steps", type=int, default=8, help="kept steps of each run")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    grpo, grpo_wall = run("grpo", [], args.out_dir, args.steps)
    auto, auto_wall = run("npo", AUTO, args.out_dir, args.steps)
    if not any("npo/auto/delta_star" in r for r in auto):
        raise SystemExit("the AutoNPO run made no decision (no npo/auto/delta_star logged)")

    step = statistics.fmean(r["timing_s/step"] for r in grpo[1:])
    lookahead = [r[LOOKAHEAD_STEP] for r in auto if LOOKAHEAD_STEP in r]
    parts = {name: total(auto, f"npo/time/{name}_s") for name in (*DECISION, *GUIDING)}
    machinery = sum(parts[name] for name in DECISION)
    candidate_keys = {k.split("/")[2] for r in auto for k in r if k.startswith("npo/auto/candidate_")}
    candidates = sorted(int(k.removeprefix("candidate_")) for k in candidate_keys)
    results = {
        "grpo_step_s": step,
        "lookahead_steps": len(lookahead),
        "lookahead_step_s_measured": statistics.fmean(lookahead[1:] or lookahead),
        "candidates": candidates,
        "delta_star": next(r["npo/auto/delta_star"] for r in auto if "npo/auto/delta_star" in r),
        **{f"{name}_s": seconds for name, seconds in parts.items()},
        **{f"{name}_steps": seconds / step for name, seconds in parts.items()},
        "machinery_steps": machinery / step,
        "decision_steps": len(lookahead) + machinery / step,
        "guiding_steps": sum(parts[name] for name in GUIDING) / step,
        "run_wall_s_grpo": grpo_wall,
        "run_wall_s_autonpo": auto_wall,
        "run_wall_ratio": auto_wall / grpo_wall,
    }
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
