"""AutoNPO's mistake pool: prompts the current policy recently failed, kept so a candidate guide can be probed on them.

Admission: a prompt whose on-policy group accuracy is below the gate (the same gate that decides injection).
Eviction, so the pool stays small and current (our choices; the paper does not give them):

* a prompt seen again with accuracy at or above the gate is *solved* and leaves;
* a prompt not failed again for ``max_age`` steps leaves;
* beyond ``capacity`` prompts, the ones failed longest ago leave first.

Each entry holds an opaque ``payload``: whatever the trainer needs to generate for the prompt again. The verl recipe
stores the prompt's position in the training data and reads the row (images included) again when it probes, so the
pool, saved with every checkpoint through :meth:`state_dict`, stays a few bytes per prompt.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Mistake:
    """One failed prompt: its group accuracy the last time it was seen failing, and when that was."""

    key: str
    acc: float
    first_step: int
    last_step: int
    payload: Any


class MistakePool:
    """Failed prompts by key; see the module docstring for admission and eviction."""

    def __init__(self, gate: float, capacity: int, max_age: int) -> None:
        self.gate, self.capacity, self.max_age = gate, capacity, max_age
        self.entries: dict[str, Mistake] = {}
        self.evicted = {"solved": 0, "aged": 0, "capacity": 0}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def update(self, step: int, observations: Iterable[tuple[str, float, Any]]) -> None:
        """Take one training step's prompts as ``(key, group accuracy, payload)``; then expire and trim."""
        for key, acc, payload in observations:
            if acc >= self.gate:
                if self.entries.pop(key, None) is not None:
                    self.evicted["solved"] += 1
                continue
            known = self.entries.get(key)
            first = known.first_step if known else step
            self.entries[key] = Mistake(key, float(acc), first, step, payload)
        self._expire(step)

    def _expire(self, step: int) -> None:
        for key in [k for k, m in self.entries.items() if step - m.last_step > self.max_age]:
            del self.entries[key]
            self.evicted["aged"] += 1
        if len(self.entries) > self.capacity:
            oldest = sorted(self.entries.values(), key=lambda m: (m.last_step, m.key))
            for mistake in oldest[: len(self.entries) - self.capacity]:
                del self.entries[mistake.key]
                self.evicted["capacity"] += 1

    def probe(self, size: int, seed: int) -> list[Mistake]:
        """Up to ``size`` entries drawn without replacement, fixed by ``seed`` (the same set for every candidate)."""
        ordered = sorted(self.entries.values(), key=lambda m: m.key)
        return random.Random(seed).sample(ordered, min(size, len(ordered)))

    def state_dict(self) -> dict[str, Any]:
        entries = [vars(m).copy() for m in self.entries.values()]
        return {"entries": entries, "evicted": dict(self.evicted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = {e["key"]: Mistake(**e) for e in state["entries"]}
        self.evicted = dict(state["evicted"])
