"""Row logs: one JSON line per row (index, id, origin, reason, detail), counted by reason.

`quarantine.jsonl` lists the rows left out as defective; `notes.jsonl` lists rows kept but worth a look (say an
option string that could not be split into choices)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_prep.record import Rejected

QUARANTINE_FILE = "quarantine.jsonl"
NOTES_FILE = "notes.jsonl"


class Quarantine:
    """Appends rows to the log as they come, so a crash still leaves what was logged so far."""

    def __init__(self, out_dir: Path, name: str = QUARANTINE_FILE) -> None:
        self.path = out_dir / name
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
