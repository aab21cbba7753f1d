"""Cheap refusals before any symbolic work.

sympy (under both mathruler and math-verify) can run for minutes or exhaust memory on exponent towers, huge
factorials and deep nesting; the worker deadline would catch them, but each catch costs a killed worker and a full
deadline. These regex checks refuse such predictions up front, in microseconds. Gold answers are trusted and not
checked here; the worker deadline still bounds them.
"""

from __future__ import annotations

import re

from verifiers.parse import nesting_depth

MAX_SYMBOLIC_CHARS = 400
MAX_SYMBOLIC_NESTING = 20

_RISKY = (
    re.compile(r"\^\s*\{[^{}]*\^|\^\s*\([^()]*\^|\*\*[^*]*\*\*|\^\s*\d+\s*\^"),  # exponent towers
    re.compile(r"(?:\^|\*\*)\s*[{(]?\s*-?\d{5,}"),  # exponents of 10,000 and more
    re.compile(r"\d{4,}\s*!|![\s)}\]]*!"),  # factorials of 1,000 and more, nested factorials
    re.compile(r"!.*\^|\^.*!", re.DOTALL),  # factorials mixed with powers: (10^{7})!
    re.compile(r"\\binom\s*\{[^}]*(?:\d{5,}|\^)"),  # huge binomials
)


def refusal(span: str) -> str | None:
    """Why a prediction is refused symbolic checking (`too_long`, `too_deep`, `too_complex`), or None."""
    if len(span) > MAX_SYMBOLIC_CHARS:
        return "too_long"
    if nesting_depth(span) > MAX_SYMBOLIC_NESTING:
        return "too_deep"
    if any(pattern.search(span) for pattern in _RISKY):
        return "too_complex"
    return None
