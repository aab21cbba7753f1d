"""`python -m data_prep` as a user runs it: progress bar on stderr, summary on stdout, exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_prep", *args], cwd=ROOT, capture_output=True, text=True)


def test_the_module_entry_point_converts_and_reports(mmfr_dir, tmp_path: Path) -> None:
    raw, _ = mmfr_dir
    done = _run("mmfinereason", "--input", str(raw), "--output", str(tmp_path / "out"), "--val-size", "2")
    assert done.returncode == 0, done.stderr
    assert "36/36" in done.stderr, "tqdm progress bar"
    assert done.stdout.startswith("mmfinereason: 36 rows in, 22 out (train 20, val 2), 0 filtered, 14 quarantined")
    assert "quarantined  corrupt_image            2" in done.stdout and "fixed        image_tag_added" in done.stdout
    assert (tmp_path / "out" / "manifest.json").is_file()

    missing = _run("benchmark", "mmmu", "--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "o"))
    assert missing.returncode == 2 and "no .parquet/.json/.jsonl files" in missing.stderr
    assert _run("benchmark", "unknown", "--input", "x", "--output", "y").returncode == 2  # argparse
