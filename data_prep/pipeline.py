"""The streaming conversion shared by MMFineReason and the benchmarks: source rows in, verl shards out.

Per row: optional filters (pass-rate range, excluded answer types; counted, not quarantined, because they are
choices, not defects), then the checks (`data_prep.checks`), then the duplicate-id rule, then the validation holdout
and the shard writers. Filters and checks of a chunk of 64 rows run on a few threads (image decoding dominates and
releases the GIL); everything after them runs in input order, so the output does not depend on the thread count.

Nothing is held per row except an 8-byte id hash for duplicate detection, read in a first pass over the id column
only (1 MB per 123K rows); rows themselves are held only in one input row group, one chunk of checks, one output row
group per writer, and the validation candidates.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from data_prep.budget import PromptBudget
from data_prep.checks import Checked, check
from data_prep.holdout import Holdout
from data_prep.ids import duplicated_keys, id_key
from data_prep.quarantine import NOTES_FILE, QUARANTINE_FILE, Quarantine
from data_prep.record import Record, Rejected
from data_prep.schema import to_row
from data_prep.templates import DEFAULT_TEMPLATE
from data_prep.writer import DEFAULT_SHARD_ROWS, ShardWriter, remove_shards
from verifiers.answer_types import classify

MANIFEST_FILE = "manifest.json"
CHUNK_ROWS = 64
VAL_PREFIX = "val"
_PASS_RATE_SLACK = 1e-9


class Source(Protocol):
    """A dataset reader: `total` rows (for the progress bar), their ids (first pass), then the records; `notes`
    counts facts about the input found on the way (filled by the time `records` is exhausted)."""

    name: str
    total: int
    notes: Counter[str]

    def ids(self) -> Iterator[str | None]: ...

    def records(self) -> Iterator[Record]: ...


@dataclass
class Settings:
    """How rows are filtered, checked and written; `prefix` names the main split's shards (`train`, `mathvista`)."""

    template: str = DEFAULT_TEMPLATE
    budget: PromptBudget = field(default_factory=lambda: PromptBudget(0))
    val_size: int = 0
    seed: int = 0
    shard_rows: int = DEFAULT_SHARD_ROWS
    pass_rate: tuple[float, float] | None = None
    exclude_types: frozenset[str] = frozenset()
    prefix: str = "train"
    split: str = "train"
    workers: int = 1


@dataclass
class Summary:
    """What happened to every input row: rows in = rows out + filtered + quarantined. `noted` counts kept rows
    flagged in `notes.jsonl`, plus facts about the whole input a source reports (`Source.notes`)."""

    name: str
    rows_in: int = 0
    rows_out: dict[str, int] = field(default_factory=dict)
    filtered: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)
    noted: Counter[str] = field(default_factory=Counter)
    scoring: Counter[str] = field(default_factory=Counter)
    files: dict[str, list[str]] = field(default_factory=dict)
    quarantine_file: str = ""
    seconds: float = 0.0

    @property
    def total_out(self) -> int:
        return sum(self.rows_out.values())

    def to_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**{k: dict(v) if isinstance(v, Counter) else v for k, v in plain.items()}, "total_out": self.total_out}

    def format(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.rows_out.items())
        rate = self.rows_in / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.name}: {self.rows_in} rows in, {self.total_out} out ({splits}), "
            f"{sum(self.filtered.values())} filtered, {sum(self.quarantined.values())} quarantined "
            f"in {self.seconds:.1f} s ({rate:.0f} rows/s)"
        ]
        groups = ("filtered", "quarantined", "fixed", "noted", "scoring")
        for label, counts in ((name, getattr(self, name)) for name in groups):
            lines += [f"  {label:<12} {reason:<24} {n}" for reason, n in sorted(counts.items())]
        if self.quarantined:
            lines.append(f"  quarantine log: {self.quarantine_file}")
        return "\n".join(lines)


def _filter_reason(record: Record, settings: Settings) -> tuple[str | None, str | None]:
    """(reason the row is filtered out, its answer type when already computed)."""
    if settings.pass_rate is not None:
        lo, hi = settings.pass_rate
        if record.pass_rate is None:
            return "pass_rate_missing", None
        if not lo - _PASS_RATE_SLACK <= record.pass_rate <= hi + _PASS_RATE_SLACK:
            return "pass_rate_out_of_range", None
    if settings.exclude_types and (record.answer or "").strip():
        answer_type = classify(record.answer.strip(), record.choices, record.answer_type, record.multi_letter)
        return ("answer_type_excluded" if answer_type in settings.exclude_types else None), answer_type
    return None, None


def _judge(record: Record, settings: Settings) -> Checked | Rejected | str:
    """A row's fate before the duplicate rule: a filter reason, a quarantine `Rejected`, or its `Checked` form."""
    reason, answer_type = _filter_reason(record, settings)
    return reason or check(record, settings.template, settings.budget, answer_type)


def _judged(records: Iterator[Record], settings: Settings) -> Iterator[tuple[Record, Checked | Rejected | str]]:
    """Rows with their judgement, in input order. A chunk's checks run on `settings.workers` threads: they are mostly
    image decoding, which releases the GIL. Only one chunk of rows is in flight."""
    with ThreadPoolExecutor(max_workers=settings.workers) as pool:
        while chunk := list(islice(records, CHUNK_ROWS)):
            yield from zip(chunk, pool.map(lambda record: _judge(record, settings), chunk), strict=True)


def _write(writer: ShardWriter, row: dict[str, Any], split: str) -> None:
    row["extra_info"]["split"] = split
    writer.write(row)


def convert(source: Source, out_dir: Path, settings: Settings) -> Summary:
    """Convert every row of `source` into `out_dir`; see the module docstring for the order of decisions."""
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    for prefix in (settings.prefix, VAL_PREFIX):
        remove_shards(out_dir, prefix)
    summary = Summary(source.name)
    duplicates, seen = duplicated_keys(source.ids()), set()
    quarantine, notes = Quarantine(out_dir), Quarantine(out_dir, NOTES_FILE)
    main = ShardWriter(out_dir, settings.prefix, settings.shard_rows)
    holdout = Holdout(settings.val_size, settings.seed)
    try:
        with tqdm(total=source.total, desc=source.name, unit="row", file=sys.stderr) as bar:
            for item, verdict in _judged(source.records(), settings):
                summary.rows_in += 1
                bar.update(1)
                if isinstance(verdict, str):
                    summary.filtered[verdict] += 1
                    continue
                if isinstance(verdict, Rejected):
                    quarantine.add(verdict)
                    continue
                key = id_key(item.id)
                if key in duplicates:
                    if key in seen:
                        quarantine.add(Rejected(item.index, item.origin, item.id, "duplicate_id"))
                        continue
                    seen.add(key)
                summary.fixed.update(item.fixes)
                for note in item.notes:
                    notes.add(Rejected(item.index, item.origin, item.id, note))
                displaced = holdout.offer(item.id, item.index, to_row(item, verdict))
                if displaced is not None:
                    _write(main, displaced, settings.split)
        val = ShardWriter(out_dir, VAL_PREFIX, settings.shard_rows)
        for row in holdout.drain():
            _write(val, row, VAL_PREFIX)
        for split, writer in ((settings.split, main), (VAL_PREFIX, val)):
            files = writer.close()
            if files:
                summary.rows_out[split] = writer.rows_written
                summary.files[split] = [str(path) for path in files]
    finally:
        quarantine.close()
        notes.close()
    summary.quarantined = quarantine.counts
    summary.noted = Counter(notes.counts)
    summary.noted.update(source.notes)  # `update` keeps a zero count: "none found" is worth reporting too
    summary.quarantine_file = str(out_dir / QUARANTINE_FILE)
    summary.seconds = time.perf_counter() - start
    return summary


def _jsonable(value: Any) -> Any:
    return sorted(value) if isinstance(value, set | frozenset) else str(value)


def write_manifest(out_dir: Path, summary: Summary, settings: dict[str, Any]) -> Path:
    """`manifest.json`: the settings, the summary, and each split's shards as a Hydra list for `data.train_files` /
    `data.val_files` (verl wants files, not a folder)."""
    path = out_dir / MANIFEST_FILE
    lists = {split: "[" + ",".join(str(Path(f).resolve()) for f in fs) + "]" for split, fs in summary.files.items()}
    document = {"settings": settings, "summary": summary.to_dict(), "verl_files": lists}
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path
