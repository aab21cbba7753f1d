"""Tolerant JSON-lines reading: one bad line (invalid JSON, invalid UTF-8, not an object) never stops a run."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _open(path: str | Path) -> BinaryIO:
    return sys.stdin.buffer if str(path) == "-" else open(path, "rb")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row, error) for each non-blank line; `row` is None and `error` says why for a bad line."""
    handle = _open(path)
    try:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                row = json.loads(text)
            except ValueError:
                yield number, None, "invalid JSON"
                continue
            if isinstance(row, dict):
                yield number, row, None
            else:
                yield number, None, "not a JSON object"
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def dumps(row: dict) -> str:
    """One output line; ASCII-escaped so lone surrogates from broken input still serialise."""
    return json.dumps(row, ensure_ascii=True) + "\n"
