"""The quarantine log: one JSON line per rejected row (index, id, origin, reason, detail), counted by reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_prep.record import Rejected

QUARANTINE_FILE = "quarantine.jsonl"


class Quarantine:
    """Appends rejected rows to `quarantine.jsonl` as they come, so a crash still leaves what was rejected so far."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / QUARANTINE_FILE
        self.counts: Counter[str] = Counter()
        self._handle = open(self.path, "w", encoding="utf-8")

    def add(self, rejected: Rejected) -> None:
        self.counts[rejected.reason] += 1
        line = {
            "index": rejected.index,
            "id": rejected.id,
            "origin": rejected.origin,
            "reason": rejected.reason,
            "detail": rejected.detail,
        }
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._handle.close()
