"""The building blocks on their own: image checks, holdout, shard writer, prompt budget estimate, templates."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep.budget import PromptBudget, estimated_visual_tokens
from data_prep.checks import align_image_tags
from data_prep.holdout import Holdout
from data_prep.images import ImageError, image_bytes, image_size
from data_prep.templates import TEMPLATES, build_prompt
from data_prep.writer import ShardWriter
from verifiers.formats import format_ok


def test_images_decode_fully_and_hostile_bytes_are_refused(kit, tmp_path: Path) -> None:
    assert image_size(kit.png(30, 20)) == (30, 20) and image_size(kit.jpeg(64, 48)) == (64, 48)
    noisy = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(noisy, format="JPEG")
    for bad in (noisy.getvalue()[: len(noisy.getvalue()) // 2], kit.png(64, 64)[:-30], b"GIF89a....", b""):
        with pytest.raises(ImageError):
            image_size(bad)
    with pytest.raises(ImageError, match="aspect ratio"):
        image_size(kit.png(1000, 4))
    (tmp_path / "a.png").write_bytes(kit.png())
    assert image_bytes({"bytes": None, "path": "a.png"}, [tmp_path]) == kit.png()
    assert image_bytes("a.png", [tmp_path]) == image_bytes(kit.png()) == kit.png()
    assert image_bytes({"bytes": b"", "path": "nope.png"}, [tmp_path]) is None and image_bytes(None) is None


@pytest.mark.parametrize(
    "question, images, expected",
    [
        ("<image>x", 1, ("<image>x", 0)),
        ("x", 2, ("<image><image>x", 2)),
        ("<image><image>x", 1, ("<image><image>x", -1)),
    ],
)
def test_align_image_tags(question: str, images: int, expected: tuple[str, int]) -> None:
    assert align_image_tags(question, images) == expected


def test_holdout_keeps_exactly_size_rows_whatever_the_order() -> None:
    ids = [f"id-{i}" for i in range(200)]

    def chosen(order: list[str]) -> set[str]:
        holdout = Holdout(10, seed=3)
        passed = [holdout.offer(i, n, {"id": i}) for n, i in enumerate(order)]
        val = {row["id"] for row in holdout.drain()}
        assert {row["id"] for row in passed if row} | val == set(order) and len(val) == 10
        return val

    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert chosen(ids) == chosen(shuffled)
    assert Holdout(0, 0).offer("a", 0, {"x": 1}) == {"x": 1}


def test_writer_caps_shard_and_row_group_sizes(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "train", shard_rows=300)
    row = {"data_source": "s", "prompt": [], "images": [], "ability": "a", "reward_model": None, "extra_info": None}
    for _ in range(650):
        writer.write(dict(row))
    files = writer.close()
    assert [f.name for f in files] == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    metadata = [pq.ParquetFile(f).metadata for f in files]
    assert [m.num_rows for m in metadata] == [300, 300, 50] and writer.rows_written == 650
    assert max(m.row_group(g).num_rows for m in metadata for g in range(m.num_row_groups)) <= 128


def test_budget_estimate() -> None:
    assert estimated_visual_tokens(512, 512) == 256, "inside the pixel range: (512 / 32) ** 2"
    assert estimated_visual_tokens(2048, 2048) == 1024, "capped at 1,048,576 pixels"
    assert estimated_visual_tokens(64, 64) == 256, "raised to 262,144 pixels"
    budget = PromptBudget(100)
    assert budget.tokens("<image>" + "x" * 300, [(512, 512)]) == 100 + 32 + 256
    assert not PromptBudget(0).enabled


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_templates_ask_for_what_the_format_reward_accepts(template: str) -> None:
    prompt = build_prompt("<image>What is 2 + 2?  ", template)
    assert prompt.startswith("<image>What is 2 + 2?") and prompt.count("<image>") == 1
    replies = {
        "thought_answer": "<thought>add</thought><answer>4</answer>",
        "think_answer": "<think>add</think><answer>4</answer>",
        "think_boxed": "<think>add</think> so \\boxed{4}",
        "answer_tag": "<answer>4</answer>",
        "boxed": "\\boxed{4}",
        "none": "4",
    }
    if template != "none":
        assert format_ok(replies[template], template)
