"""Classifying the expected answer, which picks the verification route.

Types: `choice`, `yesno`, `number` (integer or decimal), `fraction`, `percentage`, `quantity` (number with a unit),
`expression`, `equation` (also inequalities), `interval`, `set`, `tuple`, `text`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from verifiers.choice import parse_letters
from verifiers.normalize import clean_latex, normalize_text, strip_units
from verifiers.parse import ParseError, parse

TYPES = (
    "choice",
    "yesno",
    "number",
    "fraction",
    "percentage",
    "quantity",
    "expression",
    "equation",
    "interval",
    "set",
    "tuple",
    "text",
)
NUMERIC_TYPES = frozenset({"number", "fraction", "percentage", "quantity"})
MATH_TYPES = NUMERIC_TYPES | {"expression", "equation", "interval", "set", "tuple"}

# Names used by datasets and harnesses for the same types (MathVista, DynaMath, verl data prep).
_ALIASES = {
    "multi_choice": "choice",
    "multiple_choice": "choice",
    "multiple choice": "choice",
    "mcq": "choice",
    "option": "choice",
    "integer": "number",
    "int": "number",
    "float": "number",
    "decimal": "number",
    "numeric": "number",
    "numerical": "number",
    "boolean": "yesno",
    "yes_no": "yesno",
    "bool": "yesno",
    "list": "tuple",
    "free-form text": "text",
    "free_form_text": "text",
    "string": "text",
    "inequality": "equation",
}
_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})
_MATHY_RE = re.compile(r"[\\^=0-9]")


def canonical_type(declared: str | None) -> str | None:
    """A declared answer type mapped onto `TYPES`; None for unknown or "free_form" (classify automatically)."""
    if not declared:
        return None
    name = str(declared).strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in TYPES else None


def yes_no(span: str) -> str | None:
    """`yes` / `no` for spans that start with a yes/no/true/false word and name only one side."""
    words = normalize_text(span).replace(",", " ").replace("/", " ").split()
    first = words[0].strip(".!") if words else ""
    side = "yes" if first in _YES else "no" if first in _NO else None
    if side and (_NO if side == "yes" else _YES) & {w.strip(".!") for w in words[1:]}:
        return None  # "yes or no", "yes/no"
    return side


def _tree_type(node: tuple, had_unit: bool) -> str:
    kind = node[0]
    while kind == "neg":
        node = node[1]
        kind = node[0]
    if kind == "num":
        return "quantity" if had_unit else "number"
    if kind == "pct":
        return "percentage"
    if kind == "div" and node[1][0] == "num" and node[2][0] == "num":
        return "quantity" if had_unit else "fraction"
    if kind == "rel":
        return "interval" if node[2] == ("in",) else "equation"
    if kind == "tuple":
        return "tuple" if node[1:3] == ("(", ")") else "interval"
    if kind == "union":
        return "interval"
    if kind in ("set", "list"):
        return "set"
    return "expression"


def classify(
    answer: str, choices: Sequence[str] | None = None, declared: str | None = None, multi_letter: bool = False
) -> str:
    """The answer type of an expected answer: the declared type when valid, else inferred from its text
    (`multi_letter`: a benchmark where "AC" names options A and C)."""
    known = canonical_type(declared)
    if known:
        return known
    if choices:
        return "choice"
    if parse_letters(answer, multi_letter) is not None and not any(ch.islower() for ch in answer):
        return "choice"
    if yes_no(answer) is not None and len(answer.split()) == 1:
        return "yesno"
    cleaned = clean_latex(answer)
    unitless = strip_units(cleaned)
    try:
        return _tree_type(parse(unitless), unitless != cleaned)
    except ParseError:
        return "expression" if _MATHY_RE.search(cleaned) else "text"
