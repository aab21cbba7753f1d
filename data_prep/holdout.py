"""The validation split, chosen while streaming: the `size` valid rows with the smallest seeded hash of their id.

The choice depends only on the seed and the set of surviving ids (not on file order or on how many rows come
later), and it gives exactly `size` rows without knowing the total in advance. Memory is bounded by `size` rows;
a row pushed out of the candidate set goes straight on to the training split.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Any


def seeded_key(seed: int, row_id: str) -> int:
    """A 64-bit hash of (seed, id): the row's place in the random order that picks the validation split."""
    digest = hashlib.blake2b(row_id.encode("utf-8"), digest_size=8, key=str(seed).encode("utf-8"))
    return int.from_bytes(digest.digest(), "big")


class Holdout:
    """`offer(id, row)` returns the row that leaves the candidate set (for training), or None; `drain()` the rest."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._heap: list[tuple[int, int, dict[str, Any]]] = []  # (-key, index, row): the largest key on top

    def offer(self, row_id: str, index: int, row: dict[str, Any]) -> dict[str, Any] | None:
        if self.size <= 0:
            return row
        item = (-seeded_key(self.seed, row_id), index, row)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, item)
            return None
        return heapq.heappushpop(self._heap, item)[2]

    def drain(self) -> list[dict[str, Any]]:
        """The validation rows, in input order."""
        rows = [row for _, _, row in sorted(self._heap, key=lambda item: item[1])]
        self._heap = []
        return rows
