"""Fork I/O at a scale where it shows: bytes and times of one manual and one AutoNPO fork, before and after.

    python benchmarks/fork_io.py [--out-dir outputs/bench_fork_io] [--layers 10 --hidden 768]

Builds a wider random Qwen3-VL from the CPU demo's tokenizer and processor (default about 90M parameters: with fp32
weights and AdamW's two moments a training state of about 1 GB), then runs ``scripts/run_npo.sh --local`` four
times on the demo data: a manual fork (Δ 2) and an AutoNPO fork (candidates Δ 1..4), each with the fork I/O options
off ("before": full guide and candidate checkpoints, fp32, snapshot read back from disk) and at their defaults
("after": weights-only guides in the rollout's dtype, the snapshot held in host memory). The trainer logs each
fork's checkpoint bytes (``npo/io/fork_{written,read,linked}_gib``: linked bytes are hard links made instead of
writes, which no option turns off, so "before" also counts them as writes) and the times of the snapshot, guide or
candidate saves and the rollback; these are reported as ratios to the mean plain step of the same run.

The model is random, so no guide is verified-correct: the fork's I/O does not depend on that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDLE = 0.0  # npo/phase code of Phase.IDLE (a plain GRPO step)
BEFORE = ["npo.weights_only_guides=false", "npo.guide_dtype=float32", "npo.snapshot_in_memory=false"]
MANUAL = ["npo.mode=manual", "npo.interventions=[{at_step:2,delta:2,window:2}]", "trainer.total_training_steps=6"]
AUTO = [  # no bootstrap: the fork comes after a few steps, when the state holds AdamW's moments
    "npo.mode=auto",
    "npo.auto.bootstrap=false",
    "npo.auto.max_interventions=1",
    "npo.auto.delta_max=4",
    "npo.auto.candidate_every=1",
    "trainer.total_training_steps=8",
]


def build_wide_model(demo_model: Path, out: Path, layers: int, hidden: int) -> int:
    """A random Qwen3-VL with the demo's tokenizer, processor and vision tower and a wider, deeper text model;
    returns its parameter count."""
    import torch
    from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig.from_pretrained(demo_model)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = hidden, 4 * hidden, layers
    text.num_attention_heads, text.num_key_value_heads, text.head_dim = hidden // 64, max(hidden // 256, 1), 64
    config.vision_config.out_hidden_size = hidden
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config)
    if not (out / "model.safetensors").is_file():
        model.save_pretrained(out)
        AutoProcessor.from_pretrained(demo_model).save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def run(name: str, overrides: list[str], out_dir: Path, demo_dir: Path, model: Path) -> list[dict]:
    log = out_dir / f"{name}.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ, NPO_DEMO_DIR=str(demo_dir), OUT_DIR=str(out_dir / name), VERL_FILE_LOGGER_PATH=str(log))
    args = [
        f"actor_rollout_ref.model.path={model}",
        "trainer.save_freq=100",  # a real checkpoint at the fork step after the rollback, as in a real run
        "trainer.logger=[console,file]",
        # fp32 compute: bf16 matmuls are many times slower on CPUs without bf16 units (the saved state is fp32 anyway)
        "++actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
        *overrides,
    ]
    print(f"[bench] {name}", flush=True)
    result = subprocess.run(
        ["bash", "scripts/run_npo.sh", "--local", "--demo", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return [json.loads(line)["data"] for line in log.read_text().splitlines()]


def summarise(steps: list[dict]) -> dict[str, float]:
    def total(key: str) -> float:
        return sum(d.get(key, 0.0) for d in steps)

    if not any("npo/io/fork_written_gib" in d for d in steps):
        raise SystemExit("no fork completed in this run: nothing to measure")
    plain = [d["timing_s/step"] for d in steps if d.get("npo/phase") == IDLE and "timing_s/step" in d]
    step = statistics.fmean(plain[1:] or plain)  # the first step also warms up
    linked = total("npo/io/fork_linked_gib")
    return {
        "plain_step_s": step,
        "written_gib": total("npo/io/fork_written_gib"),
        "written_without_links_gib": total("npo/io/fork_written_gib") + linked,
        "read_gib": total("npo/io/fork_read_gib"),
        "snapshot_host_gib": max((d.get("npo/snapshot_host_gib", 0.0) for d in steps), default=0.0),
        "snapshot_steps": total("npo/time/snapshot_s") / step,
        "guide_or_candidate_saves_steps": total("npo/time/guide_checkpoint_s") / step,
        "rollback_steps": total("npo/time/rollback_s") / step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "bench_fork_io")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--forks", nargs="+", choices=("manual", "auto"), default=["manual", "auto"])
    args = parser.parse_args()
    out, demo = args.out_dir.resolve(), args.out_dir.resolve() / "demo"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "recipes.demo.tiny_model", str(demo / "model")], cwd=ROOT, check=True
    )
    params = build_wide_model(demo / "model", out / "model", args.layers, args.hidden)
    path = out / "results.json"  # a run of some forks updates the others' earlier results
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(parameters=params, state_gib_fp32_adamw=12 * params / 2**30)
    forks = {"manual": MANUAL, "auto": AUTO}
    for fork in args.forks:
        overrides = forks[fork]
        for when, options in (("before", BEFORE), ("after", [])):
            steps = run(f"{fork}_{when}", [*overrides, *options], out, demo, out / "model")
            results[f"{fork}_{when}"] = summarise(steps)
        before, after = results[f"{fork}_before"], results[f"{fork}_after"]
        results[f"{fork}_written_ratio"] = after["written_gib"] / before["written_without_links_gib"]
        results[f"{fork}_read_ratio"] = after["read_gib"] / before["read_gib"]
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
