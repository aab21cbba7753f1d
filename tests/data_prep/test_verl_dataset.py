"""Outputs load in verl's own RLHFDataset (data.image_key=images) with the tiny local processor, and the exact
prompt budget agrees row for row with verl's own over-long filter."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from PIL import Image
from verl.utils import hf_processor, hf_tokenizer
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from data_prep.budget import PromptBudget
from data_prep.cli import main

pytestmark = pytest.mark.slow


def _verl_dataset(files: list[Path], model: Path, cache: Path, max_prompt_length: int) -> RLHFDataset:
    config = OmegaConf.create(
        {
            "max_prompt_length": max_prompt_length,
            "image_key": "images",
            "prompt_key": "prompt",
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": None,  # in-process: no fork after torch has run in this process
            "cache_dir": str(cache),
        }
    )
    return RLHFDataset([str(f) for f in files], hf_tokenizer(str(model)), config, processor=hf_processor(str(model)))


def _indexes(files: list[Path]) -> list[int]:
    return [r["extra_info"]["index"] for f in files for r in pq.read_table(f, columns=["extra_info"]).to_pylist()]


def test_mmfinereason_and_benchmark_shards_load_together(mmfr_dir, kit, tiny_vl: Path, tmp_path: Path) -> None:
    raw, _ = mmfr_dir
    out = tmp_path / "mmfr"
    args = ["--input", str(raw), "--output", str(out), "--val-size", "4", "--shard-rows", "7"]
    assert main(["mmfinereason", *args]) == 0
    bench = tmp_path / "bench" / "testmini.jsonl"
    bench.parent.mkdir()
    (bench.parent / "1.png").write_bytes(kit.png())
    row = '{"pid": "1", "question": "How many?", "image": "1.png", "answer": "3", "answer_type": "integer"}'
    bench.write_text(row + "\n")
    assert main(["benchmark", "mathvista", "--input", str(bench), "--output", str(tmp_path / "mv")]) == 0

    train = sorted(out.glob("train-*.parquet"))
    assert len(train) == 3
    dataset = _verl_dataset(train, tiny_vl, tmp_path / "cache", 4096)
    assert len(dataset) == 18
    items = [dataset[i] for i in range(len(dataset))]
    assert sorted(item["index"] for item in items) == sorted(_indexes(train)), "extra_info.index reaches verl"
    for item in items:
        parts = [p for message in item["raw_prompt"] for p in message["content"]]
        images = [p for p in parts if p["type"] == "image"]
        assert len(images) == 1 and isinstance(images[0]["image"], Image.Image)
        assert item["reward_model"]["ground_truth"] and item["extra_info"]["answer_type"] == "number"
    assert collate_fn(items[:4])["index"].tolist() == [item["index"] for item in items[:4]]

    mixed = sorted(out.glob("val-*.parquet")) + sorted((tmp_path / "mv").glob("*.parquet"))
    validation = _verl_dataset(mixed, tiny_vl, tmp_path / "cache", 4096)
    assert len(validation) == 5, "one schema for all outputs: verl concatenates them"
    assert {validation[i]["data_source"] for i in range(5)} == {"mmfinereason", "MathVista"}


def test_the_exact_budget_agrees_with_verls_own_filter(kit, tiny_vl: Path, tmp_path: Path) -> None:
    sizes = [(40, 40), (300, 200), (64, 48), (500, 90), (33, 97), (1000, 1000)]
    rows = [
        kit.mmfr_row(i, question="<image>" + "How many edges? " * (i % 9 + 1), image={"bytes": kit.png(*sizes[i % 6])})
        for i in range(36)
    ]
    kit.write_shard(tmp_path / "raw" / "s.parquet", rows)
    budget = PromptBudget(1, str(tiny_vl))
    counts = [budget.tokens(row["question"], [sizes[i % 6]]) for i, row in enumerate(rows)]
    limit = sorted(counts)[len(counts) // 2]
    common = ["--input", str(tmp_path / "raw"), "--val-size", "0", "--template", "none"]
    exact = ["--processor", str(tiny_vl), "--max-prompt-length", str(limit)]
    assert main(["mmfinereason", *common, "--output", str(tmp_path / "ours"), *exact]) == 0
    assert main(["mmfinereason", *common, "--output", str(tmp_path / "all"), "--max-prompt-length", "0"]) == 0

    ours = sorted(_indexes(sorted((tmp_path / "ours").glob("train-*.parquet"))))
    verl = _verl_dataset(sorted((tmp_path / "all").glob("train-*.parquet")), tiny_vl, tmp_path / "cache", limit)
    assert sorted(verl[i]["index"] for i in range(len(verl))) == ours
    assert 0 < len(ours) < len(rows) and limit in counts, "the limit cuts through the rows, some exactly at it"
