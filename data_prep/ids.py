"""Row ids as 8-byte hashes: the only per-row state a conversion keeps for the whole input."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def id_key(row_id: str) -> int:
    """An 8-byte hash of an id, the only per-row state kept for the whole run."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest(), "big")


def duplicated_keys(ids: Iterable[str | None]) -> set[int]:
    """Hashes of the ids that occur more than once (sorting 8 bytes per row, not holding the ids)."""
    keys = np.fromiter((id_key(i) for i in ids if i), dtype=np.uint64)
    keys.sort()
    return set(keys[1:][keys[1:] == keys[:-1]].tolist())
