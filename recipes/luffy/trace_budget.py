"""How many training prompts will get a teacher trace: a trace longer than the response budget is skipped at
injection (``npo/inject/skipped_no_room``), so its prompt trains all on-policy. LUFFY's own data was built to fit
its budget; other data (MMFineReason's teacher responses average about 4K tokens) may not, and the prompts left
without a trace lean towards the hard ones. The recipe counts this at start-up and refuses (or warns, by option) a
run where too few traces fit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from npo_ext.injection import with_eos

BATCH_ROWS = 1024


@dataclass(frozen=True)
class TraceFit:
    prompts: int
    missing: int  # no trace, or an empty one
    too_long: int  # its tokens with the EOS exceed the response budget

    @property
    def fits(self) -> int:
        return self.prompts - self.missing - self.too_long

    @property
    def share(self) -> float:
        return self.fits / self.prompts if self.prompts else 0.0

    def summary(self, field: str, max_response_length: int) -> str:
        return (
            f"teacher traces (extra_info.{field}): {self.fits} of {self.prompts} training prompts ({self.share:.1%}) "
            f"have one that fits {max_response_length} response tokens; {self.missing} have none, "
            f"{self.too_long} have one too long"
        )


def count_fitting_traces(
    traces: Iterable[str | None],
    encode_batch: Callable[[list[str]], Sequence[Sequence[int]]],
    eos_token_ids: Sequence[int],
    max_response_length: int,
) -> TraceFit:
    """Count traces as injection will treat them, tokenising in batches of :data:`BATCH_ROWS`."""
    prompts = missing = too_long = 0
    batch: list[str] = []

    def flush() -> int:
        longer = sum(len(with_eos(ids, eos_token_ids)) > max_response_length for ids in encode_batch(batch))
        batch.clear()
        return longer

    for trace in traces:
        prompts += 1
        if not isinstance(trace, str) or not trace.strip():
            missing += 1
            continue
        batch.append(trace)
        if len(batch) == BATCH_ROWS:
            too_long += flush()
    if batch:
        too_long += flush()
    return TraceFit(prompts, missing, too_long)


def dataset_traces(dataset: Any, field: str) -> Iterator[str | None]:
    """Each row's ``extra_info[field]`` from a verl ``RLHFDataset`` (its ``dataframe``), without loading images."""
    frame = dataset.dataframe.select_columns(["extra_info"])
    for start in range(0, len(frame), BATCH_ROWS):
        for extra in frame[start : start + BATCH_ROWS]["extra_info"]:
            yield extra.get(field) if isinstance(extra, Mapping) else None
