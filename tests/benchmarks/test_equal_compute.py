"""benchmarks/equal_compute.py end to end at a tiny budget: two methods, one seed, through the real recipe; a second
invocation resumes from runs.jsonl instead of training again."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH = yaml.safe_load((ROOT / "recipes/npo/config/npo_rule_cpu.yaml").read_text())["data"]["train_batch_size"]


def study(out: Path) -> subprocess.CompletedProcess:
    args = ["--seeds=0", "--steps=6", "--test-freq=3", "--methods=grpo,npo_cheap_reuse", f"--out-dir={out}"]
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.equal_compute", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def test_the_study_writes_table_csv_and_curves_and_resumes(tmp_path):
    first = study(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [(r["method"], r["seed"], r["attempts"]) for r in runs] == [("grpo", 0, 1), ("npo_cheap_reuse", 0, 1)]
    npo = runs[1]["records"]
    # the look-ahead counts on the compute axes: NPO ends with more optimizer steps than kept steps
    assert max(r.get("npo/compute/optimizer_steps", 0) for r in npo) == 6 + 4
    assert max(r.get("training/global_step", 0) for r in npo) == 6
    # the cheap collection saw the look-ahead: every prompt of the 4 window batches is accounted for,
    # and a prompt is only sampled when the look-ahead found no verified response for it
    collected = next(r for r in npo if "npo/collect/sampled_prompts" in r)
    counts = [collected[f"npo/collect/{k}_prompts"] for k in ("sampled", "reused", "skipped")]
    assert sum(counts) == 4 * BATCH, counts
    assert collected["npo/compute/guide_tokens"] <= counts[0] * 8 * 12, "guide_n 8, at most 12 tokens per response"
    with open(tmp_path / "summary.csv") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"GRPO", "repeated NPO, `reuse`"}
    ratio = float(rows["GRPO"]["kept steps: ratio"])  # NaN when the target is met before the first step
    assert rows["GRPO"]["reached"] == "0" or ratio == 1.0 or math.isnan(ratio)
    table = (tmp_path / "table.md").read_text()
    assert "| repeated NPO, `reuse` |" in table and "Wall time of the invocation that wrote this table" in table
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE

    again = study(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2  # nothing trained twice
