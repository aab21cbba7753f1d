"""Synthetic MMFineReason shards with the real schema, every bad-row kind, and the tiny local Qwen3-VL."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(buffer, format="JPEG")
    return buffer.getvalue()


def mmfr_schema(pass_rate_column: str | None = "pass_rate") -> pa.Schema:
    """The columns of the downloaded MMFineReason shards (plus two the conversion must ignore)."""
    fields = [
        ("source", pa.string()),
        ("id", pa.string()),
        ("original_question", pa.string()),
        ("original_answer", pa.string()),
        ("image", IMAGE_STRUCT),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("qwen3vl_235b_instruct_caption", pa.string()),
        ("qwen3vl_235b_thinking_response", pa.string()),
        ("is_consistent", pa.bool_()),
    ]
    if pass_rate_column:
        fields.append((pass_rate_column, pa.float64()))
    return pa.schema(fields)


def mmfr_row(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid row; `overrides` make it bad in one way."""
    row = {
        "source": ["MMR1", "GameQA-140K", "BMMR"][i % 3],
        "id": f"mmfr-{i}",
        "original_question": f"What is {i} + 1?",
        "original_answer": f"Adding one to {i} gives {i + 1}.",
        "image": {"bytes": png(32 + i % 7, 40), "path": f"{i}.png"},
        "question": f"<image>What is {i} + 1?",
        "answer": str(i + 1),
        "qwen3vl_235b_instruct_caption": "A red rectangle.",
        "qwen3vl_235b_thinking_response": f"<think>{i} plus one</think><answer>{i + 1}</answer>",
        "is_consistent": True,
        "pass_rate": 0.0,
    }
    row.update(overrides)
    return row


def write_shard(
    path: Path, rows: list[dict[str, Any]], pass_rate_column: str | None = "pass_rate", row_group_size: int = 4
) -> Path:
    """Rows into a parquet shard with the MMFineReason schema; `pass_rate` is renamed or dropped as asked."""
    rows = [dict(r) for r in rows]
    for row in rows:
        rate = row.pop("pass_rate", None)
        if pass_rate_column:
            row[pass_rate_column] = rate
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=mmfr_schema(pass_rate_column))
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def bad_rows(start: int) -> dict[str, dict[str, Any]]:
    """One row per defect, keyed by the expected outcome (a quarantine reason, or `fixed` / `dup_kept`)."""
    truncated = png(64, 64)[:60]
    return {
        "corrupt_image": mmfr_row(start, image={"bytes": b"\x89PNG not really", "path": "x.png"}),
        "corrupt_truncated": mmfr_row(start + 1, image={"bytes": truncated, "path": "t.png"}),
        "missing_image": mmfr_row(start + 2, image=None),
        "missing_image_path": mmfr_row(start + 3, image={"bytes": None, "path": "/nowhere/at/all.png"}),
        "empty_answer": mmfr_row(start + 4, answer=None),
        "empty_answer_blank": mmfr_row(start + 5, answer="   "),
        "image_tag_mismatch": mmfr_row(start + 6, question="<image>Compare <image> with the other one."),
        "fixed": mmfr_row(start + 7, question="What is shown?"),
        "prompt_too_long": mmfr_row(start + 8, question="<image>" + "Count the digits 1234567890. " * 600),
        "stray_media_tag": mmfr_row(start + 9, question="<image>Is this a <video> frame?"),
        "missing_id": mmfr_row(start + 10, id=None),
        "duplicate_id": mmfr_row(start + 11, id="mmfr-0", source="MMR1"),  # row 0's source and id
        "dup_first_bad": mmfr_row(start + 12, id="twice", source="BMMR", answer=None),
        "dup_kept": mmfr_row(start + 13, id="twice", source="BMMR"),
        "empty_question": mmfr_row(start + 14, question=" "),
        "hidden_answer": mmfr_row(start + 15, answer="?"),
    }


class Kit:
    """The builders above, handed to tests as a fixture (test folders are not importable under importlib mode)."""

    png = staticmethod(png)
    jpeg = staticmethod(jpeg)
    mmfr_row = staticmethod(mmfr_row)
    write_shard = staticmethod(write_shard)
    bad_rows = staticmethod(bad_rows)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def mmfr_dir(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Two shards: 20 good rows, then every bad-row kind (the second shard has several row groups)."""
    bad = bad_rows(100)
    write_shard(tmp_path / "raw" / "train-00000-of-00002.parquet", [mmfr_row(i) for i in range(12)])
    write_shard(
        tmp_path / "raw" / "train-00001-of-00002.parquet", [mmfr_row(i) for i in range(12, 20)] + list(bad.values())
    )
    return tmp_path / "raw", bad


@pytest.fixture(scope="session")
def tiny_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tiny random Qwen3-VL with its processor (no warm start: only the plumbing matters here)."""
    from recipes.demo.tiny_model import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_vl"), warm_start=False)
