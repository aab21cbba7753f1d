"""``python -m recipes.npo.probe`` with its real verl backend, on checkpoints saved by a real CPU demo run.

The demo trains 3 plain steps (no intervention) saving every step; the probe then reloads θ_1, θ_2 and θ_3 through
the trainer's own workers, samples with the in-worker rollout and scores with the top-k forward.
"""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from npo_ext.experience_file import ExperienceHeader, append_prompts, start_file
from npo_ext.guide_pool import GuideSample
from npo_ext.replay_pool import ReplayPool, ReplaySettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def files_and_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    demo = tmp_path_factory.mktemp("probe_demo")
    env = dict(os.environ, OUT_DIR=str(demo), PYTHON=sys.executable)
    train = subprocess.run(
        [
            "bash",
            "scripts/run_npo.sh",
            "--local",
            "npo.interventions=[]",
            "trainer.total_training_steps=3",
            "trainer.save_freq=1",
            "trainer.max_actor_ckpt_to_keep=null",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    checkpoints = demo / "checkpoints"
    before = files_and_sizes(checkpoints)
    out = demo / "probe"
    # an experience file holding every training prompt (one made-up response each): its Q must be 1
    rows = pd.read_parquet(demo / "data" / "train.parquet")
    experience = demo / "experience.jsonl"
    start_file(experience, ExperienceHeader(min_correct=1, samples_per_prompt=1, source_step=0))
    append_prompts(experience, {f"{r.data_source}/{r.extra_info['index']}": (1, [[5, 2]]) for r in rows.itertuples()})
    # an ExGRPO pool, as a checkpoint saves it, holding the even-numbered prompts only: its Q is strictly inside (0, 1)
    pool = ReplayPool(ReplaySettings())
    for position, r in enumerate(rows.itertuples()):
        if r.extra_info["index"] % 2 == 0:
            success = GuideSample((5, 2), 1.0, 0, "replay", (-0.1, -0.1))
            pool.observe(f"{r.data_source}/{r.extra_info['index']}", position, [success], 1, 8)
    replay_pool = demo / "guidance_source.json"
    replay_pool.write_text(json.dumps(pool.state_dict()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recipes.npo.probe",
            f"--checkpoints={checkpoints}",
            "--anchor=1",
            "--deltas=1,2",
            f"--prompts={demo / 'data' / 'train.parquet'}",
            "--k=4",
            "--device=cpu",
            "--teacher-field=teacher_response",
            f"--experience-file={experience}",
            f"--replay-pool={replay_pool}",
            "--config-name=npo_cpu_demo",
            "++ray_kwargs.ray_init.address=local",  # not a `ray start` cluster another test may run here
            f"--out={out}",
        ],
        cwd=ROOT,
        env=dict(env, NPO_DEMO_DIR=str(demo)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout, before, files_and_sizes(checkpoints)


def test_probe_writes_finite_q_v_s_for_every_delta(probed):
    out, stdout, _, _ = probed
    with open(out / "probe.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["delta"]) for r in rows] == [1, 2]
    for row in rows:
        q, v, s = (float(row[name]) for name in ("q", "v", "s"))
        assert 0.0 <= q <= 1.0 and math.isfinite(v) and math.isfinite(s)
        # θ_{1+Δ} has trained Δ steps past θ_1, so the χ² distance is positive (top-k V is a lower bound, >= 1)
        assert v > 1.0
        assert s == pytest.approx(q / v)
        # each with its interval over the probe prompts, from the per-response V sums the backend returns
        v_low, v_high = float(row["v_low"]), float(row["v_high"])
        assert 1.0 <= v_low <= v <= v_high and float(row["q_low"]) <= q <= float(row["q_high"])
        assert 0 < int(row["failing_prompts"]) <= int(row["prompts"])
    chosen = [int(r["delta"]) for r in rows if r["chosen"] == "1"]
    best = max(rows, key=lambda r: float(r["s"]))
    assert chosen == ([int(best["delta"])] if float(best["q"]) > 0 else [])
    assert f"delta*={chosen[0] if chosen else None}" in stdout


def test_teacher_experience_file_and_replay_pool_are_measured_beside_the_near_future(probed):
    out, _, _, _ = probed
    with open(out / "sources.csv") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["near_future (Δ=1)", "near_future (Δ=2)", "teacher (teacher_response)",
                          "experience_file (experience.jsonl)", "replay (guidance_source.json)"]  # fmt: skip
    # the demo's teacher traces are correct worked answers, and the file holds every prompt: each solves all the
    # prompts θ_1 fails (the tiny model fails most of them)
    assert float(rows["teacher (teacher_response)"]["q"]) == 1.0
    assert float(rows["experience_file (experience.jsonl)"]["q"]) == 1.0
    assert 0.0 < float(rows["replay (guidance_source.json)"]["q"]) < 1.0, "the pool covers the even prompts only"
    assert rows["teacher (teacher_response)"]["v"] == "nan"
    assert (out / "sources.png").read_bytes()[:8] == PNG_SIGNATURE


def test_probe_draws_a_png_and_leaves_the_checkpoints_alone(probed):
    out, _, before, after = probed
    assert (out / "probe.png").read_bytes()[:8] == PNG_SIGNATURE
    assert after == before
