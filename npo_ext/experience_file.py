"""RLEP's experience file: the verified-correct responses an earlier, finished run gives on the training prompts.

``recipes/rlep/collect.py`` writes it (k samples per prompt at temperature 0.7, top-p 0.95; prompts with at least
``min_correct`` verified-correct ones are kept; RLEP, arXiv 2507.07451) and the RLEP recipe
reads it through :class:`ExperienceFileSource`. One JSON object per line, so a collection that dies keeps what it
wrote and resumes after the last prompt on file::

    {"format": "npo-experience-v1", "min_correct": 2, "samples_per_prompt": 64, "source_step": 400}   (header)
    {"key": "<prompt key>", "num_samples": 64, "responses": [[token ids...], ...]}                       (per prompt)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npo_ext.guide_pool import GuideSample

FORMAT = "npo-experience-v1"
PROVENANCE = "earlier_run"


class ExperienceFileError(ValueError):
    """The experience file is missing, truncated or not in this format; the message names the file and line."""


@dataclass(frozen=True)
class ExperienceHeader:
    min_correct: int
    samples_per_prompt: int
    source_step: int


def start_file(path: str | Path, header: ExperienceHeader) -> set[str]:
    """Open a collection: write the header to a new file, or check it against an existing one (a resumed collection
    must use the same settings) and return the prompt keys already collected."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": FORMAT, **header.__dict__}) + "\n")
        return set()
    lines = path.read_text().splitlines(keepends=True)
    try:
        json.loads(lines[-1])
    except json.JSONDecodeError:  # the last line of a collection killed mid-write: drop it, it is collected again
        path.write_text("".join(lines[:-1]))
    found, entries = _read(path)
    if found != header:
        raise ExperienceFileError(f"{path}: written with {found}, resumed with {header}; use a new file")
    return set(entries)


def append_prompts(path: str | Path, prompts: Mapping[str, tuple[int, Sequence[Sequence[int]]]]) -> None:
    """Add collected prompts (key -> (samples drawn, verified-correct responses)), one line each, flushed."""
    with open(path, "a") as f:
        for key, (num_samples, responses) in prompts.items():
            f.write(json.dumps({"key": key, "num_samples": num_samples, "responses": [list(r) for r in responses]}))
            f.write("\n")
        f.flush()


def read_experience(path: str | Path) -> tuple[ExperienceHeader, dict[str, list[tuple[int, ...]]]]:
    """The header and, per prompt key, its verified-correct responses."""
    return _read(Path(path))


def _read(path: Path) -> tuple[ExperienceHeader, dict[str, list[tuple[int, ...]]]]:
    if not path.is_file():
        raise ExperienceFileError(f"experience file not found: {path} (write it with python -m recipes.rlep.collect)")
    lines = path.read_text().splitlines()
    try:
        head = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError as e:
        raise ExperienceFileError(f"{path}, line 1: not JSON ({e})") from e
    if head.get("format") != FORMAT:
        raise ExperienceFileError(f"{path}, line 1: expected a header with format {FORMAT!r}, got {lines[:1]}")
    header = ExperienceHeader(int(head["min_correct"]), int(head["samples_per_prompt"]), int(head["source_step"]))
    entries: dict[str, list[tuple[int, ...]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key, responses = str(row["key"]), [tuple(int(t) for t in r) for r in row["responses"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            hint = " (a collection killed mid-write: run it again to resume and repair)" if number == len(lines) else ""
            raise ExperienceFileError(f"{path}, line {number}: not a prompt entry ({e!r}){hint}") from e
        if key in entries:
            raise ExperienceFileError(f"{path}, line {number}: prompt key {key!r} appears twice")
        if len(responses) < header.min_correct or not all(responses):
            raise ExperienceFileError(
                f"{path}, line {number}, field responses: {len(responses)} response(s), some empty or fewer than "
                f"min_correct={header.min_correct}"
            )
        entries[key] = responses
    return header, entries


class ExperienceFileSource:
    """RLEP's guidance source: ``per_group`` distinct responses drawn at random from a prompt's stored successes.

    The draws come from a seeded generator whose state is saved with checkpoints (``state_dict``), so a resumed run
    draws what the uninterrupted one would have.
    """

    provenance = PROVENANCE

    def __init__(self, path: str | Path, per_group: int, seed: int = 0) -> None:
        self.header, self.entries = read_experience(path)
        self.per_group = per_group
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def guides(self, prompt_key: str, prompt_row: Mapping[str, Any] | None = None) -> list[GuideSample]:
        responses = self.entries.get(prompt_key)
        if not responses:
            return []
        chosen = self.rng.choice(len(responses), size=min(self.per_group, len(responses)), replace=False)
        return [GuideSample(responses[i], 1.0, self.header.source_step, self.provenance) for i in sorted(chosen)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
