"""Prompt keys: how a guide collected for a prompt finds the same prompt again after the rollback.

A key joins several non-tensor fields of the batch (default ``data_source`` and ``index``), so that two datasets
that each number their rows from 0 do not collide. A key must still be unique per prompt: verl sets ``index=0``
for every row without ``extra_info.index``, and such collisions would inject one prompt's guide into another.
So keys are checked wherever they are made, and a duplicate is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from npo_ext.config import NPOConfigError

KEY_SEPARATOR = "/"


class DuplicatePromptKeyError(NPOConfigError):
    """Two different prompts map to the same key."""


def prompt_keys(non_tensor_batch: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """One key per row: the values of ``fields`` joined by ``/``."""
    missing = [f for f in fields if f not in non_tensor_batch]
    if missing:
        raise NPOConfigError(
            f"npo.prompt_key={list(fields)}: the batch has no field(s) {missing} (have {sorted(non_tensor_batch)}); "
            "set extra_info.index per row in the data, or choose other fields"
        )
    columns = [non_tensor_batch[f] for f in fields]
    return [KEY_SEPARATOR.join(str(column[row]) for column in columns) for row in range(len(columns[0]))]


def check_one_prompt_per_key(keys: Sequence[str], prompt_ids: Sequence[Any], fields: Sequence[str]) -> None:
    """Rows of one prompt (same ``prompt_ids`` entry, e.g. verl's ``uid``) share a key; different prompts never do."""
    first_row: dict[str, int] = {}
    for row, key in enumerate(keys):
        other = first_row.setdefault(key, row)
        if prompt_ids[other] != prompt_ids[row]:
            raise DuplicatePromptKeyError(
                f"npo.prompt_key={list(fields)}: rows {other} and {row} are different prompts with the same key "
                f"{key!r}. verl sets index=0 for rows without extra_info.index; give every row of a data source a "
                "unique extra_info.index, or choose fields that identify a prompt"
            )
