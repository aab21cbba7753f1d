"""Benchmark-specific matching rules, where the public harnesses differ from the default.

The default route needs no rule; a rule only switches on what a benchmark's own protocol does differently. See
verifiers/README.md ("Benchmark rules") for the protocol each one follows and where it departs from an LLM judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.compare import Tolerance


@dataclass(frozen=True)
class BenchmarkRule:
    """What a benchmark changes: numeric tolerance, letter sets, substring text match, JSON answer field."""

    name: str
    tolerance: Tolerance | None = None
    multi_letter: bool = False
    text_substring: bool = False
    json_short_answer: bool = False
    worst_case_groups: bool = False


DEFAULT = BenchmarkRule("default")

RULES = {
    rule.name: rule
    for rule in (
        # MathVista stores the option *text* as the answer; letters are mapped through `choices`, and a float answer
        # is compared after rounding to the item's `precision` (passed per row).
        BenchmarkRule("mathvista"),
        BenchmarkRule("mathverse"),
        BenchmarkRule("mathvision"),
        BenchmarkRule("wemath"),
        # LogicVista answers may name several options ("A, C" or "AC"); the set must match exactly.
        BenchmarkRule("logicvista", multi_letter=True),
        # DynaMath (VLMEvalKit): JSON "short answer" field, float |pred - gold| <= 1e-3, free text by substring,
        # and worst-case accuracy over the variants of each seed question.
        BenchmarkRule(
            "dynamath",
            tolerance=Tolerance(abs=1e-3),
            text_substring=True,
            json_short_answer=True,
            worst_case_groups=True,
        ),
        # MMMU open questions: a free-text gold counts when the normalised prediction contains it.
        BenchmarkRule("mmmu", text_substring=True),
    )
}

_NON_ALNUM_RE = re.compile(r"[^a-z0-9]")


def rule_for(benchmark: str | None) -> BenchmarkRule:
    """The rule whose name occurs in `benchmark` (`MathVista_MINI`, `AI4Math/MathVista`, `mmmu_val`), else default."""
    if not benchmark:
        return DEFAULT
    key = _NON_ALNUM_RE.sub("", str(benchmark).lower())
    for name, rule in RULES.items():
        if name in key:
            return rule
    return DEFAULT
