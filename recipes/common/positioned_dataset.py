"""The training dataset with each row's position in it: a prompt can be asked again, or re-read, by position.

ExGRPO asks its experience questions again by position, and AutoNPO's mistake pool keeps positions instead of whole
prompt rows (images included), re-reading the rows it probes. verl's collate function carries the position into
the batch's non-tensor fields as ``dataset_position``.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

POSITION = "dataset_position"


class PositionedDataset(Dataset):
    """The training dataset with each row's position in it, so that an experience question can be asked again."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, position: int) -> dict[str, Any]:
        row = self.inner[position]
        row[POSITION] = int(position)
        return row

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling in a dataloader worker)
            raise AttributeError(name)
        return getattr(self.inner, name)
