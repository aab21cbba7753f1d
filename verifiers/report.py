"""Per-benchmark accuracy tables from scored rows, as Markdown and CSV.

Benchmarks whose rule asks for it (DynaMath) also get worst-case accuracy: a seed question counts only when all its
variants are right. Variants are grouped by the row's `group` field, else `qid`.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from verifiers.benchmarks import rule_for

COLUMNS = ("benchmark", "n", "correct", "accuracy", "worst_case")


def _pct(num: int, den: int) -> float:
    return round(100.0 * num / den, 2) if den else 0.0


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One line per benchmark (sorted) plus an `all` line: count, correct count, accuracy %, worst-case %."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    groups: dict[str, dict[str, bool]] = defaultdict(dict)
    for row in rows:
        name = str(row.get("benchmark") or "default")
        correct = row.get("correct") is True
        counts[name][0] += 1
        counts[name][1] += correct
        group = row.get("group", row.get("qid"))
        if group is not None and rule_for(name).worst_case_groups:
            groups[name][str(group)] = groups[name].get(str(group), True) and correct
    counts["all"] = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    table = []
    for name in [*sorted(k for k in counts if k != "all"), "all"]:
        n, correct = counts[name]
        worst = groups.get(name)
        table.append(
            {
                "benchmark": name,
                "n": n,
                "correct": correct,
                "accuracy": _pct(correct, n),
                "worst_case": _pct(sum(worst.values()), len(worst)) if worst else None,
            }
        )
    return table


def _cell(value: object) -> str:
    return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def to_markdown(table: list[dict]) -> str:
    """A Markdown table; the worst-case column appears only when some benchmark has one."""
    columns = [c for c in COLUMNS if c != "worst_case" or any(r["worst_case"] is not None for r in table)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def write_csv(table: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow({c: _cell(row[c]) for c in COLUMNS})
