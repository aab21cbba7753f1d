"""A dataloader wrapper that lets NPO rewind the data stream under verl's unmodified ``fit()`` loop.

``fit()`` iterates ``for batch_dict in self.train_dataloader``. This wrapper keeps that loop intact and calls a
hook at every step boundary: before each batch is handed out, and once more when the epoch runs out (a look-ahead
may end exactly there and must still roll back inside this epoch). The hook may rewind the underlying
``StatefulDataLoader`` to an earlier state (a rollback); the wrapper then re-creates its iterator, so the replayed
batches are exactly the ones the look-ahead saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# on_boundary(state_before_next_batch, epoch_end)
BoundaryHook = Callable[[dict[str, Any], bool], None]
# compose(collated batch) -> the batch the step trains on (ExGRPO swaps in experience questions)
ComposeHook = Callable[[dict[str, Any]], dict[str, Any]]


class ReplayableDataLoader:
    """Delegates to ``loader``; ``on_boundary`` runs at every step boundary of an iteration, ``compose`` (if given)
    on every batch it hands out."""

    def __init__(self, loader, on_boundary: BoundaryHook, compose: ComposeHook | None = None) -> None:
        self.loader = loader
        self.on_boundary = on_boundary
        self.compose = compose
        self._rewound = False

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position; a live iteration continues from it at the next batch."""
        self.loader.load_state_dict(state)
        self._rewound = True

    def peek(self, state: dict[str, Any], count: int) -> Iterator[Any]:
        """The ``count`` batches that follow ``state``, without running the boundary hook (leaves the loader there)."""
        self.load_state_dict(state)
        iterator = iter(self.loader)
        for _ in range(count):
            yield next(iterator)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        self._rewound = False
        while True:
            state_before = self.loader.state_dict()
            batch = next(iterator, None)
            self.on_boundary(state_before, batch is None)
            if self._rewound:
                iterator = iter(self.loader)
                self._rewound = False
                batch = next(iterator)
            if batch is None:
                return
            yield batch if self.compose is None else self.compose(batch)
