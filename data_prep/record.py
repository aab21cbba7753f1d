"""One input row in a dataset-neutral form, so every source goes through the same checks and writer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Record:
    """A question with its images and gold answer, as read from a source, before any check.

    `index` is the row's position in the whole input (unique, stable across reruns with other filters); `origin`
    says where it came from (`file:row`) for the quarantine log. `images` holds raw bytes, None where a row names an
    image that could not be found. `answers` lists every accepted answer when there are several (`answer` is the
    first). `fixes` are changes made to a kept row; `notes` flag a kept row worth a look (logged in `notes.jsonl`).
    """

    index: int
    origin: str
    id: str | None
    question: str | None
    images: list[bytes | None]
    answer: str | None
    data_source: str
    ability: str
    answers: list[str] | None = None
    source: str | None = None
    answer_type: str | None = None
    choices: list[str] | None = None
    benchmark: str | None = None
    precision: int | None = None
    tolerance: float | None = None
    pass_rate: float | None = None
    teacher_response: str | None = None
    group: str | None = None
    multi_letter: bool = False
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Rejected:
    """A row that failed a check, with the reason it is quarantined (see `data_prep.checks.REASONS`)."""

    index: int
    origin: str
    id: str | None
    reason: str
    detail: str = ""
