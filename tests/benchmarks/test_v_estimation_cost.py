"""benchmarks/v_estimation_cost.py at a small size: what each method keeps, and that its peak-memory probe sees the
full method's per-token distributions while the top-k method stays at a chunk's worth."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENS, VOCAB, K, DRAWS = 2048, 8192, 4, 4


def test_v_estimation_cost_reports_bounded_top_k_memory(tmp_path):
    out = tmp_path / "results.json"
    args = [f"--tokens={TOKENS}", f"--vocab={VOCAB}", f"--k={K}", f"--draws={DRAWS}", "--repeats=1", f"--out={out}"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/v_estimation_cost.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    full, topk = report["rows"]
    assert full["kept_bytes_per_token"] == 4 * VOCAB  # one float32 per vocabulary entry
    assert topk["kept_bytes_per_token"] == 12 * (K + DRAWS) + 4  # int64 ids + float32 log-probs, a float32 tail
    # the full method holds TOKENS x VOCAB float32 (64 MiB) at once; the top-k one a few 64 x VOCAB chunks (2 MiB each)
    assert full["peak_mib"] >= TOKENS * VOCAB * 4 / 2**20
    assert topk["peak_mib"] < full["peak_mib"] / 4
    assert "| top-k / full |" in proc.stdout
