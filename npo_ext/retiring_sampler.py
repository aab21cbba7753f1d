"""A training sampler that leaves retired questions out of later epochs, as ExGRPO's release drops fully solved
questions from the training data (ExGRPO, arXiv 2510.02245).

Each epoch freezes the set of retired dataset positions when it starts: questions retired during an epoch are still
asked in the rest of it, and are gone from the next one. An epoch keeps the number of samples the trainer planned
(verl fixes its step count at start-up, and its final validation and checkpoint wait for the last planned step): when
one pass of the wrapped sampler runs out of unretired positions, a new pass (a new shuffle) continues the epoch, so the
unretired questions fill the retired ones' place.

The epoch's iterator is resumable (``state_dict``/``load_state_dict``, which torchdata's ``StatefulDataLoader``
saves with verl's data state): its state carries the frozen set, so a resumed or rolled-back epoch leaves out exactly
the questions the original left out, whatever has been retired since.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from typing import Any

from torch.utils.data import Sampler


class NothingLeftToTrainOn(RuntimeError):
    """Every question of the training data is retired."""


class RetiringSampler(Sampler[int]):
    """Wraps ``inner`` (verl's training sampler); ``retired`` says which dataset positions are retired now (the
    replay plug-in connects its pool after the trainer is built; until then nothing is retired)."""

    def __init__(self, inner: Sampler[int], retired: Callable[[], Collection[int]] = frozenset) -> None:
        self.inner = inner
        self.retired = retired

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> RetiringEpoch:
        return RetiringEpoch(self.inner, frozenset(self.retired()))


class RetiringEpoch(Iterator[int]):
    """One epoch: the wrapped sampler's order without ``retired``, pass after pass, ``len(inner)`` positions."""

    def __init__(self, inner: Sampler[int], retired: frozenset[int]) -> None:
        self.inner = inner
        self.length = len(inner)
        self.retired = retired
        self.yielded = 0  # positions handed out this epoch
        self.passes = 0  # passes of ``inner`` started this epoch
        self._new_pass()

    def _new_pass(self) -> None:
        self.pass_iterator = iter(self.inner)
        self.consumed = 0  # positions drawn from this pass, retired ones included
        self.found_in_pass = False  # this pass has handed out an unretired position
        self.passes += 1

    def __next__(self) -> int:
        if self.yielded >= self.length:
            raise StopIteration
        while True:
            position = next(self.pass_iterator, None)
            if position is None:
                if not self.found_in_pass:
                    raise NothingLeftToTrainOn(
                        f"all {self.length} training questions are retired (solved n/n): nothing is left to train on; "
                        "set guidance.replay_drop_retired=false to keep them in the data"
                    )
                self._new_pass()
                continue
            self.consumed += 1
            if position not in self.retired:
                self.yielded += 1
                self.found_in_pass = True
                return int(position)

    def state_dict(self) -> dict[str, Any]:
        pass_state = self.pass_iterator.state_dict() if hasattr(self.pass_iterator, "state_dict") else None
        return {
            "retired": sorted(self.retired),
            "yielded": self.yielded,
            "passes": self.passes,
            "consumed": self.consumed,
            "found_in_pass": self.found_in_pass,
            "pass_state": pass_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` was taken: the same frozen set, the same pass, the same place in it."""
        self.retired = frozenset(state["retired"])
        self.yielded, self.passes, self.consumed = state["yielded"], state["passes"], state["consumed"]
        self.found_in_pass = state["found_in_pass"]
        self.pass_iterator = iter(self.inner)
        if state["pass_state"] is not None:  # torchdata's RandomSampler: its generator's state at the pass start
            self.pass_iterator.load_state_dict(state["pass_state"])
        else:  # a sampler whose order does not depend on state (SequentialSampler)
            self.pass_iterator = itertools.islice(self.pass_iterator, self.consumed, None)
