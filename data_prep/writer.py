"""Small parquet shards with the explicit output schema, written atomically.

Small files (`shard_rows`, default 1,000) and small row groups keep verl clear of pyarrow's "nested chunked" and
offset-overflow errors on large nested-binary files. A shard is written under a temporary name and renamed when
complete, so a killed run never leaves a half shard that looks finished.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.schema import OUTPUT_SCHEMA

DEFAULT_SHARD_ROWS = 1000
ROW_GROUP_ROWS = 128


def shard_name(prefix: str, number: int) -> str:
    return f"{prefix}-{number:05d}.parquet"


def remove_shards(out_dir: Path, prefix: str) -> None:
    """Delete shards (and temporaries) a previous run wrote under this prefix, so none is left over."""
    pattern = re.compile(rf"^\.?{re.escape(prefix)}-\d{{5}}\.parquet(\.tmp)?$")
    for path in out_dir.iterdir() if out_dir.is_dir() else []:
        if pattern.match(path.name):
            path.unlink()


class ShardWriter:
    """Rows in, `prefix-00000.parquet`, `prefix-00001.parquet`, ... out; memory is one row group of rows."""

    def __init__(self, out_dir: Path, prefix: str, shard_rows: int = DEFAULT_SHARD_ROWS) -> None:
        self.out_dir, self.prefix, self.shard_rows = out_dir, prefix, shard_rows
        self.files: list[Path] = []
        self.rows_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0
        self._temporary: Path | None = None

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= min(ROW_GROUP_ROWS, self.shard_rows - self._in_shard):
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self._temporary = self.out_dir / f".{shard_name(self.prefix, len(self.files))}.tmp"
            self._writer = pq.ParquetWriter(self._temporary, OUTPUT_SCHEMA)
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=OUTPUT_SCHEMA))
        self._in_shard += len(self._buffer)
        self.rows_written += len(self._buffer)
        self._buffer = []
        if self._in_shard >= self.shard_rows:
            self._finish_shard()

    def _finish_shard(self) -> None:
        assert self._writer is not None and self._temporary is not None
        self._writer.close()
        final = self.out_dir / shard_name(self.prefix, len(self.files))
        os.replace(self._temporary, final)
        self.files.append(final)
        self._writer, self._temporary, self._in_shard = None, None, 0

    def close(self) -> list[Path]:
        """Write what is buffered and finish the last shard; returns every shard written."""
        self._flush()
        if self._writer is not None:
            self._finish_shard()
        return self.files
