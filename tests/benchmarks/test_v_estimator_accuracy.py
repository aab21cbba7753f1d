"""benchmarks/v_estimator_accuracy.py at a small size: on close, far, sharpened and peaked guides the trainer's V
picks the full-vocabulary V's Δ* every time and never falls below 1, while the lumped tail alone does not."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = 2


def test_the_trainers_v_picks_the_full_vocabulary_delta_star_on_every_family(tmp_path):
    out = tmp_path / "results.json"
    args = ["--vocab=4096", "--positions=1024", f"--seeds={SEEDS}", f"--out={out}"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/v_estimator_accuracy.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())["report"]
    assert sorted(report) == ["close", "far", "peaked", "sharpened"]
    for name, family in report.items():
        assert family["trainer"]["agree"] == SEEDS, f"{name}: {family['trainer']}"
        assert family["trainer"]["min_v"] >= 1.0, name
        assert max(family["trainer"]["errors"]) < 0.5, name
    # the test set can tell: the lumped lower bound alone picks another Δ* on the close and far guides
    assert report["close"]["bound"]["agree"] == 0 and report["far"]["bound"]["agree"] == 0
    assert "| close | trainer |" in proc.stdout
