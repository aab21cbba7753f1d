"""Multiple-choice answers: option letters, letter sets (LogicVista), and option text mapped back to its letter."""

from __future__ import annotations

import re
from collections.abc import Sequence

from verifiers.compare import equal
from verifiers.normalize import clean_latex, normalize_text, strip_units
from verifiers.parse import ParseError, parse

LETTERS = "ABCDEFGHIJ"

_PREFIX_RE = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+|correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:：]?|A\s*[:：](?=\s*\S))\s*",
    re.IGNORECASE,
)  # "A: 45" is an answer label, not option A
_SINGLE_RE = re.compile(r"^\(?([A-Ja-j])\)?[.:)]?$")
# "(C) 45", "C. 45", "C (52)", "D, Dark Seafoam": an option letter followed by its option text.
_LEADING_RE = re.compile(r"^(?:\(([A-J])\)|([A-J])[.:)]|([A-J])(?=\s+\()|([A-J]),(?=\s*[A-Za-z]{2}))\s*(\S.*)$")
# ... unless what follows names another option: "(A) or (B)", "(A),(B),(C)", "(A) (B)".
_ANOTHER_LETTER_RE = re.compile(r"^(?:(?:,|;|/|&|or\b|and\b)\s*\(?[A-J]\)?|\([A-J]\))(?![A-Za-z])", re.IGNORECASE)
_LONE_LETTER_RE = re.compile(r"\b[A-J]\b")
_LIST_SPLIT_RE = re.compile(r"\s*(?:,|;|\band\b|&|\s)\s*")


def parse_letters(span: str, multi_letter: bool = False) -> frozenset[str] | None:
    """The option letters a span names: `C`, `(c)`, `C. 45`, `Option C`, `A, C`; `AC` only when `multi_letter`."""
    text = _letter_text(span)
    m = _SINGLE_RE.match(text)
    if m:
        return frozenset(m.group(1).upper())
    m = _leading_letter(text)
    if m:
        return frozenset(m[0])
    parts = [p.strip("()") for p in _LIST_SPLIT_RE.split(text) if p]
    if len(parts) > 1 and all(len(p) == 1 and p in LETTERS for p in parts):
        return frozenset(parts)
    if multi_letter and 1 < len(text) <= len(LETTERS) and all(ch in LETTERS for ch in text):
        return frozenset(text)
    return None


def _letter_text(span: str) -> str:
    """The span without LaTeX presentation and without an answer prefix or label."""
    return _PREFIX_RE.sub("", clean_latex(span)).strip()


def _leading_letter(text: str) -> tuple[str, str] | None:
    """(letter, the option text after it) for "(C) 45"-style spans that name no other option."""
    m = _LEADING_RE.match(text)
    if m is None or _ANOTHER_LETTER_RE.match(m.group(5)):
        return None
    if m.group(4) and _LONE_LETTER_RE.search(m.group(5)):
        return None  # "A, and also B": after a comma, any other letter makes it a list
    return next(g for g in m.groups()[:4] if g), m.group(5)


def _contradicts(letter: str, text: str, choices: Sequence[str]) -> bool:
    """Whether the text after a letter states a different option, or a value its own option does not have:
    "(D) 71" when option D is 56 names no option at all."""
    named = letter_of_option_text(text, choices)
    if named is not None:
        return named != letter
    index = LETTERS.index(letter)
    if index >= len(choices):
        return False
    try:
        option, stated = (parse(strip_units(clean_latex(str(t)))) for t in (choices[index], text))
        return equal(option, stated) is False
    except ParseError:
        return False  # prose after the letter: the letter stands


def letter_of_option_text(span: str, choices: Sequence[str]) -> str | None:
    """The letter whose option text the span states, by normalised text or, failing that, by value."""
    wanted = normalize_text(span)
    for i, option in enumerate(choices[: len(LETTERS)]):
        if normalize_text(str(option)) == wanted:
            return LETTERS[i]
    try:
        pred = parse(strip_units(clean_latex(span)))
    except ParseError:
        return None
    hits = []
    for i, option in enumerate(choices[: len(LETTERS)]):
        try:
            if equal(parse(strip_units(clean_latex(str(option)))), pred) is True:
                hits.append(LETTERS[i])
        except ParseError:
            continue
    return hits[0] if len(hits) == 1 else None


def letters_in(span: str, choices: Sequence[str] | None, multi_letter: bool = False) -> frozenset[str] | None:
    """Letters named by a span, falling back to matching the option texts when choices are known."""
    letters = parse_letters(span, multi_letter)
    if letters is not None and (not choices or all(LETTERS.index(ch) < len(choices) for ch in letters)):
        leading = _leading_letter(_letter_text(span)) if choices else None
        if leading and _contradicts(*leading, choices):
            return None
        return letters
    if choices:
        letter = letter_of_option_text(span, choices)
        if letter is not None:
            return frozenset(letter)
    return letters
