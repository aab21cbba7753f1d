"""The evaluation runner: verl RL parquet in, scored JSONL and a report out, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers import evaluate, vllm_engine
from verifiers.chat import content_parts


def _rows(png: bytes) -> list[dict]:
    rows = []
    for i in range(5):
        with_image = i % 2 == 0
        rows.append(
            {
                "data_source": "MathVista" if with_image else "text_bench",
                "prompt": [{"role": "user", "content": ("<image>" if with_image else "") + f"What is {i} + 1?"}],
                "images": [{"bytes": png, "path": ""}] if with_image else [],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(i + 1)},
                "extra_info": {"index": i, "answer_type": "number"},
            }
        )
    return rows


@pytest.fixture
def parquet(tmp_path: Path, png_bytes: bytes, write_rl_parquet) -> Path:
    return write_rl_parquet(tmp_path / "bench.parquet", _rows(png_bytes))


class CannedGenerator:
    """Answers every question correctly except the first, without a model."""

    calls: list[list[str]] = []

    def __init__(self, model_path: str, protocol: evaluate.Protocol) -> None:
        pass

    def generate(self, samples) -> list[str]:
        CannedGenerator.calls.append([s.id for s in samples])
        return [f"<think>add</think>\\boxed{{{int(s.id) + 1 if s.id != '0' else 0}}}" for s in samples]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_load_samples_reads_the_rl_schema(parquet: Path, png_bytes: bytes) -> None:
    samples = evaluate.load_samples(parquet)
    assert [s.id for s in samples] == ["0", "1", "2", "3", "4"]
    assert samples[0].images == [png_bytes] and samples[1].images == []
    assert samples[0].fields == {"answer_type": "number", "answer": "1", "benchmark": "MathVista"}
    assert evaluate.load_samples(parquet, benchmark="MathVerse", limit=2)[1].fields["benchmark"] == "MathVerse"


def test_image_tags_become_content_parts() -> None:
    parts = content_parts("<image>Compare <image> and the text")
    assert parts == [
        {"type": "image"},
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " and the text"},
    ]


def test_scores_appends_and_resumes(parquet: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(evaluate, "TransformersGenerator", CannedGenerator)
    CannedGenerator.calls = []
    out = tmp_path / "out" / "results.jsonl"
    args = ["--model", "unused", "--data", str(parquet), "--output", str(out), "--backend", "transformers"]
    evaluate.main([*args, "--limit", "2", "--batch-size", "2"])
    assert [r["id"] for r in _lines(out)] == ["0", "1"]
    with out.open("a") as handle:  # a run killed in the middle of a line
        handle.write('{"id": "2", "predic')
    evaluate.main([*args, "--batch-size", "2"])
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.startswith('{"id": "') and "}" in line]
    assert sorted(r["id"] for r in rows) == ["0", "1", "2", "3", "4"]
    assert CannedGenerator.calls == [["0", "1"], ["2", "3"], ["4"]]
    assert [r["correct"] for r in sorted(rows, key=lambda r: r["id"])] == [False, True, True, True, True]
    report = capsys.readouterr().out
    assert "| MathVista | 3 | 2 | 66.67 |" in report and "| all | 5 | 4 | 80.00 |" in report
    protocol = json.loads((out.parent / "results.jsonl.protocol.json").read_text())
    assert protocol["max_new_tokens"] == 4096 and protocol["temperature"] == 0.0


def test_row_with_mismatched_image_tags_is_reported_not_fatal(tmp_path: Path, png_bytes, write_rl_parquet, monkeypatch):
    rows = _rows(png_bytes)[:2]
    rows[0]["images"] = []  # one <image> tag, no image
    parquet = write_rl_parquet(tmp_path / "bad.parquet", rows)
    monkeypatch.setattr(evaluate, "TransformersGenerator", CannedGenerator)
    out = tmp_path / "out.jsonl"
    evaluate.main(["--model", "unused", "--data", str(parquet), "--output", str(out), "--backend", "transformers"])
    first, second = _lines(out)
    assert (first["correct"], first["reason"], first["prediction"]) == (False, "bad_row", None)
    assert second["correct"] is True


def test_auto_backend_needs_both_a_gpu_and_vllm(monkeypatch) -> None:
    import importlib.util

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert evaluate.resolve_backend("auto") == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "vllm" else None)
    assert evaluate.resolve_backend("auto") == "vllm"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert evaluate.resolve_backend("auto") == "transformers"
    assert evaluate.resolve_backend("vllm") == "vllm"


@pytest.mark.slow
def test_tiny_qwen3_vl_with_images_and_text_prompts(tiny_vl_model: Path, parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "vl.jsonl"
    argv = ["--model", str(tiny_vl_model), "--data", str(parquet), "--output", str(out), "--max-new-tokens", "4"]
    evaluate.main([*argv, "--batch-size", "3", "--backend", "transformers"])
    rows = _lines(out)
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(isinstance(r["prediction"], str) and r["correct"] in (True, False) for r in rows)
    assert json.loads((tmp_path / "vl.jsonl.protocol.json").read_text())["backend"] == "transformers"


@pytest.mark.slow
def test_tiny_text_model(tiny_text_model: Path, tmp_path: Path, write_rl_parquet, png_bytes) -> None:
    rows = [r for r in _rows(png_bytes) if not r["images"]]
    parquet = write_rl_parquet(tmp_path / "text.parquet", rows)
    out = tmp_path / "text.jsonl"
    evaluate.main(
        ["--model", str(tiny_text_model), "--data", str(parquet), "--output", str(out), "--max-new-tokens", "4"]
    )
    assert [r["id"] for r in _lines(out)] == ["1", "3"]


def test_the_engine_options_are_on_the_command_line_and_recorded_with_the_results(tmp_path, monkeypatch, parquet):
    seen = {}

    class Fixed:
        def __init__(self, protocol, options):
            seen["options"] = options

        def generate(self, samples):
            return ["<answer> 1 </answer>"] * len(samples)

    monkeypatch.setattr(evaluate, "make_generator", Fixed)
    out = tmp_path / "out.jsonl"
    args = ["--model", "m", "--data", str(parquet), "--output", str(out), "--backend", "vllm"]
    evaluate.main([*args, "--max-model-len", "2048", "--data-parallel-size", "2", "--dtype", "float32"])
    assert seen["options"] == vllm_engine.VLLMOptions(max_model_len=2048, data_parallel_size=2, dtype="float32")
    recorded = (tmp_path / "out.jsonl.protocol.json").read_text()
    assert '"dtype": "float32"' in recorded and '"max_model_len": 2048' in recorded
