"""NPO machinery cost on the tiny CPU config, measured against a GRPO run of the same config in one script.

    python benchmarks/npo_overhead.py [--out-dir outputs/bench_npo] [--steps 14]

Runs ``scripts/run_npo.sh --local`` twice (RECIPE=grpo, then RECIPE=npo with two interventions), each logging every
step to a JSONL file, and reports:

* NPO's own work per guided step (injection with reward recomputation, log-prob alignment, metrics; the trainer's
  ``npo/time/step_overhead_s``) as a fraction of the mean GRPO step time. Look-ahead and collection are excluded;
* the end-to-end mean time of a guided step vs a GRPO step, raw and per processed token (noisier: the two runs'
  policies, hence response lengths, diverge);
* rollback time (``npo/time/rollback_s``) vs one GRPO step;
* the driver's peak RSS in each run, and the guide pool's size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDED = 4.0  # npo/phase code of Phase.GUIDED


def run(recipe: str, out_dir: Path, steps: int) -> list[dict]:
    log = out_dir / f"{recipe}.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ, RECIPE=recipe, OUT_DIR=str(out_dir / recipe), VERL_FILE_LOGGER_PATH=str(log))
    overrides = [f"trainer.total_training_steps={steps}", "trainer.save_freq=-1", "trainer.logger=[console,file]"]
    if recipe == "npo":
        overrides.append("npo.interventions=[{at_step:2,delta:2,window:4},{at_step:7,delta:2,window:4}]")
    subprocess.run(
        ["bash", "scripts/run_npo.sh", "--local", *overrides], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return [json.loads(line) for line in log.read_text().splitlines()]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def per_token(steps: list[dict]) -> float:
    """Step time per processed token: removes the effect of the two runs' different response lengths."""
    return mean([d["timing_s/step"] / d["perf/total_num_tokens"] for d in steps])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "bench_npo")
    parser.add_argument("--steps", type=int, default=14)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    grpo = [r["data"] for r in run("grpo", args.out_dir, args.steps)]
    npo = [r["data"] for r in run("npo", args.out_dir, args.steps)]

    grpo_steps = [d["timing_s/step"] for d in grpo[1:]]  # the first step includes warm-up
    guided = [d for d in npo if d.get("npo/phase") == GUIDED and "timing_s/step" in d]
    grpo_step = mean(grpo_steps)
    overhead = mean([d.get("npo/time/step_overhead_s", 0.0) for d in guided])
    guided_step = mean([d["timing_s/step"] for d in guided])
    rollbacks = [d["npo/time/rollback_s"] for d in npo if "npo/time/rollback_s" in d]
    results = {
        "grpo_step_s": grpo_step,
        "guided_steps": len(guided),
        "guide_rows_injected": sum(d.get("npo/inject/guide_rows", 0.0) for d in guided),
        "npo_overhead_per_guided_step_s": overhead,
        "overhead_ratio": overhead / grpo_step,
        "guided_step_s": guided_step,
        "guided_vs_grpo_step_ratio": guided_step / grpo_step,
        "guided_vs_grpo_time_per_token_ratio": per_token(guided) / per_token(grpo[1:]),
        "rollback_s": mean(rollbacks),
        "rollback_vs_step_ratio": mean(rollbacks) / grpo_step,
        "driver_max_rss_mb_grpo": max(d["npo/driver/max_rss_mb"] for d in grpo),
        "driver_max_rss_mb_npo": max(d["npo/driver/max_rss_mb"] for d in npo),
        "pool_tokens_max": max((d.get("npo/pool/tokens", 0.0) for d in npo), default=0.0),
    }
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1))
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.4g} |")


if __name__ == "__main__":
    main()
