"""`python -m verifiers score|report`: score a JSONL of predictions, then tabulate accuracy per benchmark.

    python -m verifiers score INPUT.jsonl -o OUTPUT.jsonl [--timeout S] [--batch-size N]
    python -m verifiers report OUTPUT.jsonl [--csv PATH]

Input rows need `id`, `prediction` and `answer` (a string, a number, or a list of accepted answers), and may carry
`choices` (option texts in order A, B, …), `answer_type`, `benchmark`, `tolerance` (absolute, or {"abs", "rel"}),
`precision` (decimal places, MathVista) and `group` / `qid` (DynaMath variants). Output rows keep every input field
and add `correct`, `extracted`, `answer_type`, `method` and `reason`, in input order. A malformed row is written with
`correct: false` and the reason, counted on stderr, and the run goes on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from verifiers.check import Item, verify_batch
from verifiers.jsonl import dumps, read_rows
from verifiers.report import summarize, to_markdown, write_csv

REQUIRED = ("id", "prediction", "answer")
_SCALARS = (str, int, float)


def row_problem(row: dict) -> str | None:
    """Why a row cannot be scored, or None when it can."""
    missing = [name for name in REQUIRED if name not in row]
    if missing:
        return f"malformed: missing field {missing[0]!r}"
    if row["prediction"] is not None and not isinstance(row["prediction"], str):
        return "malformed: 'prediction' must be a string"
    answer = row["answer"]
    listed = isinstance(answer, list) and all(isinstance(a, _SCALARS) for a in answer)
    if not isinstance(answer, _SCALARS) and not listed:
        return "malformed: 'answer' must be a string, a number or a list of them"
    choices = row.get("choices")
    if choices is not None and not isinstance(choices, list):
        return "malformed: 'choices' must be a list"
    try:
        Item.from_fields(row["prediction"], answer, None, row)
    except (TypeError, ValueError):
        return "malformed: bad 'tolerance' or 'precision'"
    return None


def _malformed(row: dict | None, line: int, reason: str) -> dict:
    out = dict(row) if row is not None else {"id": None, "line": line}
    out.update(correct=False, extracted=None, answer_type=None, method="none", reason=reason)
    return out


def _chunks(path: str, size: int) -> Iterator[list[tuple[int, dict | None, str | None]]]:
    chunk = []
    for entry in read_rows(path):
        chunk.append(entry)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score(input_path: str, output_path: str, timeout: float | None = None, batch_size: int = 1024) -> tuple[int, int]:
    """Score every row; returns (rows written, malformed rows)."""
    written = malformed = 0
    malformed_lines: list[int] = []
    out = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")
    try:
        for chunk in _chunks(input_path, batch_size):
            problems = [f"malformed: {error}" if error else row_problem(row) for _, row, error in chunk]
            good = [row for (_, row, _), problem in zip(chunk, problems, strict=True) if problem is None]
            items = [Item.from_fields(row["prediction"], row["answer"], None, row) for row in good]
            verdicts = iter(verify_batch(items, timeout=timeout))
            for (line, row, _), problem in zip(chunk, problems, strict=True):
                if problem is None:
                    out.write(dumps({**row, **next(verdicts).to_dict()}))
                else:
                    out.write(dumps(_malformed(row, line, problem)))
                    malformed += 1
                    malformed_lines.append(line)
                written += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if malformed:
        shown = ", ".join(map(str, malformed_lines[:20])) + (", …" if malformed > 20 else "")
        print(f"verifiers: {malformed} malformed row(s) scored as wrong (lines {shown})", file=sys.stderr)
    return written, malformed


def report(path: str, csv_path: str | None = None) -> str:
    """The Markdown accuracy table of a scored file (unreadable lines are skipped); optionally also as CSV."""
    table = summarize(row for _, row, _ in read_rows(path) if row is not None)
    if csv_path:
        write_csv(table, csv_path)
    return to_markdown(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifiers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score_cmd = commands.add_parser("score", help="score predictions in a JSONL file ('-' reads stdin)")
    score_cmd.add_argument("input")
    score_cmd.add_argument("-o", "--output", required=True, help="output JSONL ('-' writes stdout)")
    score_cmd.add_argument("--timeout", type=float, default=None, help="seconds per symbolic check (default 5)")
    score_cmd.add_argument("--batch-size", type=int, default=1024)
    report_cmd = commands.add_parser("report", help="per-benchmark accuracy of a scored JSONL file")
    report_cmd.add_argument("input")
    report_cmd.add_argument("--csv", default=None, help="also write the table as CSV to this path")
    args = parser.parse_args(argv)
    if args.command == "score":
        written, malformed = score(args.input, args.output, args.timeout, args.batch_size)
        print(f"verifiers: scored {written} row(s), {malformed} malformed", file=sys.stderr)
    else:
        print(report(args.input, args.csv))
    return 0
