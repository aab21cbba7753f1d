"""MMFineReason shards (the 123K, 586K and 1.8M variants, as downloaded) as a conversion source.

Required columns: `id`, `question` (with `<image>`), `image` (struct {bytes, path}, or a list of them), `answer`
(nullable). Read when present: `source`, the teacher trace `qwen3vl_235b_thinking_response`, and the pass rate,
named `pass_rate` in the 123K shards and `qwen3vl_4b_pass_rate` in the repository's schema table. Every schema is
checked from the file footers before any row is read, so a bad file stops the run before anything is written.

A row's key is `source:id` wherever the file has a `source` column: some per-source releases number `id` from 0
within each source, so the bare id repeats across sources. The key is what duplicate detection, `extra_info.id` and
the validation split's hash see; how many rows shared a bare id across sources is reported in the summary.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_prep.ids import id_key
from data_prep.images import image_bytes, search_bases
from data_prep.inputs import SchemaError, parquet_num_rows, parquet_rows, parquet_schema, require, resolve
from data_prep.record import Record

REQUIRED = ("id", "question", "image", "answer")
PASS_RATE_COLUMNS = ("pass_rate", "qwen3vl_4b_pass_rate")
TEACHER_COLUMN = "qwen3vl_235b_thinking_response"
SOURCE_COLUMN = "source"
ID_SHARED_ACROSS_SOURCES = "id_shared_across_sources"
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


def row_key(row_id: Any, source: Any) -> str | None:
    """`source:id` when the row names its source, else the id; None for a missing id (quarantined later)."""
    if row_id is None or str(row_id) == "":
        return None
    return f"{source}:{row_id}" if source is not None and str(source) != "" else str(row_id)


def rows_sharing_ids_across_sources(id_keys: np.ndarray, source_keys: np.ndarray) -> int:
    """How many rows have a bare id that also appears under another source (the rows `source:id` keys tell apart);
    rows are given as hashes of their id and their source, 16 bytes per row."""
    if not len(id_keys):
        return 0
    pairs = np.unique(np.stack([id_keys, source_keys], axis=1), axis=0)
    ids, sources_per_id = np.unique(pairs[:, 0], return_counts=True)
    return int(np.isin(id_keys, ids[sources_per_id > 1]).sum())


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
        self.notes: Counter[str] = Counter()

    def ids(self) -> Iterator[str | None]:
        """Row keys (see the module docstring); counts the rows whose bare id is shared across sources."""
        id_keys, source_keys = array("Q"), array("Q")
        for path, plan in zip(self.files, self.plans, strict=True):
            columns = ["id"] + (["source"] if "source" in plan else [])
            for batch in parquet_rows(path, columns, batch_size=65536):
                for row in batch:
                    source = _text(row.get("source"))
                    if row["id"] is not None:
                        id_keys.append(id_key(str(row["id"])))
                        source_keys.append(id_key(source or ""))
                    yield row_key(row["id"], source)
        shared = rows_sharing_ids_across_sources(
            np.frombuffer(id_keys, np.uint64), np.frombuffer(source_keys, np.uint64)
        )
        self.notes[ID_SHARED_ACROSS_SOURCES] = shared

    def records(self) -> Iterator[Record]:
        index = 0
        for path, plan in zip(self.files, self.plans, strict=True):
            row_number, bases = 0, search_bases(path)
            for batch in parquet_rows(path, list(dict.fromkeys(plan.values())), self.batch_size):
                for raw in batch:
                    yield self._record(raw, plan, index, f"{path.name}:{row_number}", bases)
                    index += 1
                    row_number += 1

    @staticmethod
    def _record(raw: dict[str, Any], plan: dict[str, str], index: int, origin: str, bases: Sequence[Path]) -> Record:
        value = raw[plan["image"]]
        values = (value or [None]) if isinstance(value, list) else [value]  # no image at all is a missing image
        return Record(
            index=index,
            origin=origin,
            id=row_key(raw[plan["id"]], raw.get(plan.get("source", ""))),
            question=_text(raw[plan["question"]]),
            images=[image_bytes(v, bases) for v in values],
            answer=_text(raw[plan["answer"]]),
            data_source=DATA_SOURCE,
            ability=ABILITY,
            source=_text(raw.get(plan.get("source", ""))),
            pass_rate=_rate(raw.get(plan.get("pass_rate", ""))),
            teacher_response=_text(raw.get(plan.get("teacher", ""))),
        )
