"""Finding the final-answer span in a model response.

Order, first hit wins: `<answer>…</answer>` (a `\\boxed{}` inside it is preferred), the last `\\boxed{}`, the last
"answer is …", a trailing option letter on the last line, and finally the whole response when it is one short line.
Only the part after a closed `</think>` / `</thought>` block is searched, so numbers in the reasoning are never taken
for the answer. All searches are `rfind`-based or run on a bounded tail, so a 1 MB response costs milliseconds.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass

from verifiers.normalize import matching_brace, sanitize

TAIL_CHARS = 4096
MAX_BOXED_CHARS = 20_000
MAX_BOXED_CANDIDATES = 8
WHOLE_RESPONSE_MAX_CHARS = 80
REASONING_CLOSE_TAGS = ("</think>", "</thought>")

_ANSWER_IS_RE = re.compile(r"(?i)\banswer\b\s*(?:is\s*[:：]?|[:：=])\s*")
_LETTER_LINE_RE = re.compile(r"^[\W_]*(?:(?:option|choice)\s*)?\(?([A-J])\)?[\W_]*$", re.IGNORECASE)
_SHORT_ANSWER_RE = re.compile(r'"short answer"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}\n]+)', re.IGNORECASE)
_BOXED_NAMES = (r"\boxed", r"\fbox")


@dataclass(frozen=True)
class Extraction:
    """The answer span and where it came from (`answer_tag`, `boxed`, `answer_is`, `option_letter`, ...)."""

    span: str | None
    source: str


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = deque(pattern.finditer(text), maxlen=1)
    return last[0] if last else None


def final_part(text: str) -> str:
    """The text after the last closed reasoning block, or all of it when there is none."""
    cut = max(text.rfind(tag) + len(tag) if tag in text else -1 for tag in REASONING_CLOSE_TAGS)
    return text if cut < 0 else text[cut:]


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{…}` / `\\fbox{…}` (also `\\boxed 5`); None when there is none.

    Only the last few candidates are tried and each may span at most `MAX_BOXED_CHARS`, so a response full of
    unclosed `\\boxed{` costs linear time."""
    end = len(text)
    for _ in range(MAX_BOXED_CANDIDATES):
        start, name = max((text.rfind(n, 0, end), n) for n in _BOXED_NAMES)
        if start < 0:
            return None
        pos = start + len(name)
        if pos < len(text) and text[pos] == "{":
            close = matching_brace(text, pos, MAX_BOXED_CHARS)
            if close > 0:
                return text[pos + 1 : close].strip()
        elif pos < len(text) and text[pos] == " ":
            token = text[pos:].split(maxsplit=1)
            if token:
                return token[0].rstrip("$.")
        end = start
    return None


def answer_tag(text: str) -> str | None:
    """Content of the last closed `<answer>…</answer>` pair."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    return None if open_ < 0 else text[open_ + len("<answer>") : close].strip()


def answer_is(text: str) -> str | None:
    """What follows the last "answer is" / "Answer:" on its line, without trailing sentence punctuation."""
    tail = text[-TAIL_CHARS:]
    last = _last_match(_ANSWER_IS_RE, tail)
    if last is None:
        return None
    line = tail[last.end() :].lstrip().split("\n", 1)[0]
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0].strip().strip("*").strip()
    return line or None


def trailing_letter(text: str) -> str | None:
    """An option letter standing alone on the last non-empty line: `C`, `(C)`, `**C.**`, `Option C`."""
    lines = text[-TAIL_CHARS:].strip().rsplit("\n", 1)
    m = _LETTER_LINE_RE.match(lines[-1].strip()) if lines else None
    return m.group(1).upper() if m else None


def short_answer_field(text: str) -> str | None:
    """The `"short answer"` value of a JSON reply (DynaMath asks for `{"solution": …, "short answer": …}`)."""
    m = _last_match(_SHORT_ANSWER_RE, text[-TAIL_CHARS:])
    if m is None:
        return None
    raw = m.group(1).strip()
    if raw.startswith('"'):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = raw.strip('"')
    return str(raw).strip() or None


def extract_answer(response: str | bytes | None, json_short_answer: bool = False) -> Extraction:
    """The final-answer span of a response; `span is None` when the response states no answer."""
    body = final_part(sanitize(response))
    if json_short_answer:
        field = short_answer_field(body)
        if field is not None:
            return Extraction(field, "json_short_answer")
    tagged = answer_tag(body)
    if tagged is not None:
        inner = last_boxed(tagged) or answer_is(tagged) or tagged
        return Extraction(inner, "answer_tag") if inner else Extraction(None, "none")
    boxed = last_boxed(body)
    if boxed:
        return Extraction(boxed, "boxed")
    stated = answer_is(body)
    if stated:
        return Extraction(stated, "answer_is")
    letter = trailing_letter(body)
    if letter:
        return Extraction(letter, "option_letter")
    whole = body.strip()
    if whole and len(whole) <= WHOLE_RESPONSE_MAX_CHARS and "\n" not in whole:
        return Extraction(whole, "whole")
    return Extraction(None, "none")
