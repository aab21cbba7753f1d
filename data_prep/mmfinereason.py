"""MMFineReason shards (the 123K, 586K and 1.8M variants, as downloaded) as a conversion source.

Required columns: `id`, `question` (with `<image>`), `image` (struct {bytes, path}, or a list of them), `answer`
(nullable). Read when present: `source`, the teacher trace `qwen3vl_235b_thinking_response`, and the pass rate,
named `pass_rate` in the 123K shards and `qwen3vl_4b_pass_rate` in the repository's schema table. Every schema is
checked from the file footers before any row is read, so a bad file stops the run before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_prep.images import image_bytes
from data_prep.inputs import SchemaError, parquet_num_rows, parquet_rows, parquet_schema, require, resolve
from data_prep.record import Record

REQUIRED = ("id", "question", "image", "answer")
PASS_RATE_COLUMNS = ("pass_rate", "qwen3vl_4b_pass_rate")
TEACHER_COLUMN = "qwen3vl_235b_thinking_response"
SOURCE_COLUMN = "source"
DATA_SOURCE = "mmfinereason"
ABILITY = "multimodal_reasoning"


def _image_type_ok(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    if pa.types.is_struct(kind):
        return kind.get_field_index("bytes") >= 0 or kind.get_field_index("path") >= 0
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_string(kind)


def _plan(path: Path, need_pass_rate: bool, teacher: bool) -> dict[str, str]:
    """Which column to read for each field of this file (files of different variants may differ)."""
    schema = parquet_schema(path)
    require(path, schema, REQUIRED)
    if not _image_type_ok(schema.field("image").type):
        raise SchemaError(path, "image", f"type {schema.field('image').type}; expected struct<bytes, path>")
    plan = {name: name for name in REQUIRED}
    pass_rate = next((name for name in PASS_RATE_COLUMNS if name in schema.names), None)
    if pass_rate:
        plan["pass_rate"] = pass_rate
    elif need_pass_rate:
        raise SchemaError(
            path,
            PASS_RATE_COLUMNS[0],
            f"--pass-rate needs a pass-rate column ({' or '.join(PASS_RATE_COLUMNS)}); convert without --pass-rate "
            "and score the rows with `python -m data_prep filter`",
        )
    if SOURCE_COLUMN in schema.names:
        plan["source"] = SOURCE_COLUMN
    if teacher and TEACHER_COLUMN in schema.names:
        plan["teacher"] = TEACHER_COLUMN
    return plan


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    rate = float(value)
    return None if math.isnan(rate) else rate


class MMFineReasonSource:
    """Streams MMFineReason rows as `Record`s; `index` counts rows across all files in sorted file order."""

    name = "mmfinereason"

    def __init__(
        self, spec: str | Path, need_pass_rate: bool = False, teacher: bool = True, batch_size: int = 256
    ) -> None:
        self.files: Sequence[Path] = resolve(spec)
        self.plans = [_plan(path, need_pass_rate, teacher) for path in self.files]
        self.total = sum(parquet_num_rows(path) for path in self.files)
        self.batch_size = batch_size

    def ids(self) -> Iterator[str | None]:
        for path in self.files:
            for batch in parquet_rows(path, ["id"], batch_size=65536):
                yield from (_text(row["id"]) for row in batch)

    def records(self) -> Iterator[Record]:
        index = 0
        for path, plan in zip(self.files, self.plans, strict=True):
            row_number = 0
            for batch in parquet_rows(path, list(dict.fromkeys(plan.values())), self.batch_size):
                for raw in batch:
                    yield self._record(raw, plan, index, f"{path.name}:{row_number}", path.parent)
                    index += 1
                    row_number += 1

    @staticmethod
    def _record(raw: dict[str, Any], plan: dict[str, str], index: int, origin: str, base: Path) -> Record:
        value = raw[plan["image"]]
        values = (value or [None]) if isinstance(value, list) else [value]  # no image at all is a missing image
        return Record(
            index=index,
            origin=origin,
            id=_text(raw[plan["id"]]),
            question=_text(raw[plan["question"]]),
            images=[image_bytes(v, base) for v in values],
            answer=_text(raw[plan["answer"]]),
            data_source=DATA_SOURCE,
            ability=ABILITY,
            source=_text(raw.get(plan.get("source", ""))),
            pass_rate=_rate(raw.get(plan.get("pass_rate", ""))),
            teacher_response=_text(raw.get(plan.get("teacher", ""))),
        )
