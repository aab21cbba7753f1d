"""Text clean-up shared by every stage: untrusted input made safe, LaTeX presentation noise removed.

Everything here is pure string work (no sympy), so it is cheap enough to run on every response of a rollout batch.
"""

from __future__ import annotations

import re

# Characters kept out of every span: NUL and the other C0 controls except tab and newline.
_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10))

_UNICODE = str.maketrans(
    {
        "\u2212": "-",
        "\u2013": "-",
        "\u00d7": r"\times ",
        "\u00b7": r"\cdot ",
        "\u22c5": r"\cdot ",
        "\u00f7": r"\div ",
        "\u03c0": r"\pi ",
        "\u221a": r"\sqrt ",
        "\u221e": r"\infty ",
        "\u2264": r"\le ",
        "\u2265": r"\ge ",
        "\u2260": r"\ne ",
        "\u222a": r"\cup ",
        "\u00b1": r"\pm ",
        "\u2248": r"\approx ",
        "\u00b0": "",
        "\u00b2": "^2",
        "\u00b3": "^3",
        "\uff0c": ",",
        "\uff1a": ":",
        "\uff08": "(",
        "\uff09": ")",
        "\u3002": ".",
        "\u20ac": "",  # currency signs, like `\\$`, are presentation
        "\u00a3": "",
        "\u00a5": "",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
    }
)

# Commands whose argument is kept and whose name is dropped.
_WRAPPERS = frozenset(
    "text textbf textit textrm textnormal textsf mathrm mathbf mathit mathsf mathnormal mbox boxed fbox "
    "operatorname bm boldsymbol displaystyle".split()
)
_WRAPPER_RE = re.compile(r"\\(" + "|".join(sorted(_WRAPPERS)) + r")\s*\{")
_SPACING_RE = re.compile(
    r"\\(?:left|right|[bB]igg?[lr]?|displaystyle|textstyle|quad|qquad)(?![a-zA-Z])|(?<!\\)\\[,;:! ]|~"  # not `\\\\ `
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])")
_FRAC_ALIAS_RE = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_BINOM_ALIAS_RE = re.compile(r"\\[dt]binom(?![a-zA-Z])")
# Digit groups as MATH writes them: `10{,}000`, `10\\,000`, `11,\\! 111,\\! 100`.
_THOUSANDS_SEP_RE = re.compile(r"(?<=\d)(?:\\,|\s*\{,\s*\}|,\\!\s*|,\\ \s*)(?=\d{3}(?!\d))")
_PERCENT_WORD_RE = re.compile(r"(?<=\d)\s*(?:percent(?:age)?|per\s+cent|pct)\b", re.IGNORECASE)
# 10,000 and 10 000; not `0,111`, which no one groups (a decimal comma, or a list).
_GROUPED_NUMBER_RE = re.compile(r"-?(?!0)\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"-?\d+,\d+")
_DECIMAL_RE = re.compile(r"-?\d*\.\d+")
_SCALE_RE = re.compile(r"(?<=[\d\s])\s*(thousand|million|billion|trillion)\s*$", re.IGNORECASE)
_SCALES = {"thousand": "10^3", "million": "10^6", "billion": "10^9", "trillion": "10^12"}

_LONG_UNITS = (
    r"(?:(?:centi|milli|kilo)?met(?:er|re)s?|cm|mm|km|inch(?:es)?|feet|foot|ft|yards?|yd|miles?|"
    r"(?:kilo)?grams?|kg|mg|pounds?|lbs?|ounces?|oz|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|"
    r"months?|years?|degrees?|deg|radians?|rad|units?|(?:milli)?lit(?:er|re)s?|ml|dollars?|cents?|yuan|"
    r"km/h|m/s|mph|people|persons?|students?|times|square\s+units?)"
)
_UNIT_RE = re.compile(
    r"(?:(?<=[\d)}])\s*|\s+)(?:square\s+|sq\.?\s+|cubic\s+)?" + _LONG_UNITS + r"(?:\s*\^\s*\{?[23]\}?)?\s*$"
    r"|\s+(?:m|g|s|h|l|L|in)(?:\s*\^\s*\{?[23]\}?)?\s*$|(?<=\d)m\s*\^\s*\{?[23]\}?\s*$",
    re.IGNORECASE,
)
_BRACE_RE = re.compile(r"[{}]")
_ARTICLE_RE = re.compile(r"^(?:the|a|an)\s+")
_EDGE_PUNCT = " \t\n.,;:!?\"'`*"


def sanitize(text: str | bytes | None) -> str:
    """Untrusted model output as a clean `str`: bytes decoded leniently, NUL and other control bytes removed."""
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return text.translate(_CONTROL)


def matching_brace(text: str, open_index: int, limit: int | None = None) -> int:
    """Index of the `}` closing the `{` at `open_index`, or -1 when unbalanced within `limit` characters."""
    end = len(text) if limit is None else min(len(text), open_index + limit)
    depth = 0
    for m in _BRACE_RE.finditer(text, open_index, end):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.start()
    return -1


def _unwrap(span: str) -> str:
    """`\\text{cm}` -> ` cm `, innermost last; an unbalanced wrapper loses only its name."""
    for _ in range(64):
        m = _WRAPPER_RE.search(span)
        if m is None:
            break
        close = matching_brace(span, m.end() - 1)
        if close < 0:
            span = span[: m.start()] + " " + span[m.end() :]
        else:
            span = span[: m.start()] + " " + span[m.end() : close] + " " + span[close + 1 :]
    return span


def _strip_delimiters(span: str) -> str:
    span = span.strip().replace("\\$", "").replace("$", "")  # a currency sign first, then math delimiters
    for left, right in ((r"\(", r"\)"), (r"\[", r"\]")):
        if span.startswith(left) and span.endswith(right):
            span = span[2:-2]
    if span.startswith("**") and span.endswith("**") and len(span) > 4:
        span = span[2:-2]
    return span.strip()


def clean_latex(span: str) -> str:
    """Presentation-only LaTeX removed: delimiters, `\\text{}`, spacing, `\\left`, degree signs, `\\dfrac`."""
    span = _strip_delimiters(span.translate(_UNICODE))
    if "\\" in span or "{" in span:
        span = _THOUSANDS_SEP_RE.sub("", span)
        span = _DEGREE_RE.sub(" ", span)
        span = _unwrap(span)
        span = _SPACING_RE.sub(" ", span)
        span = _FRAC_ALIAS_RE.sub(r"\\frac", span)
        span = _BINOM_ALIAS_RE.sub(r"\\binom", span)
        span = span.replace(r"\%", "%")
    span = _PERCENT_WORD_RE.sub("%", span)
    span = " ".join(span.split()).rstrip(" .,;:")
    if _GROUPED_NUMBER_RE.fullmatch(span):
        span = span.replace(",", "").replace(" ", "")
    return span


def read_decimal_comma(text: str, other: str) -> str:
    """`1000,99` read as the decimal 1000.99 when the answer it is compared with is one decimal number; otherwise its
    comma separates a list (`1,2`). Digit groups (`1,000`) were already joined by `clean_latex`."""
    if _DECIMAL_COMMA_RE.fullmatch(text) and _DECIMAL_RE.fullmatch(other):
        return text.replace(",", ".")
    return text


def strip_units(span: str) -> str:
    """A trailing unit or scale word removed (`5 cm^2` -> `5`, `3 million` -> `3*10^6`); values are not converted."""
    scale = _SCALE_RE.search(span)
    if scale:
        return span[: scale.start()].strip() + "*" + _SCALES[scale.group(1).lower()]
    m = _UNIT_RE.search(span)
    if m and m.start() > 0 and any(ch.isdigit() for ch in span[: m.start()]):
        stripped = span[: m.start()].strip()
        if _GROUPED_NUMBER_RE.fullmatch(stripped):
            stripped = stripped.replace(",", "").replace(" ", "")
        return stripped
    return span


def normalize_text(span: str) -> str:
    """Free-text answers compared case-, space- and edge-punctuation-insensitively, without a leading article."""
    text = " ".join(clean_latex(span).lower().split()).strip(_EDGE_PUNCT)
    return _ARTICLE_RE.sub("", text)
