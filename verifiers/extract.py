"""Finding the final-answer span in a model response.

Order, first hit wins:
1. `<answer>…</answer>` (a `\\boxed{}` inside it is preferred);
2. the last `\\boxed{}`, or the last run of boxes separated only by commas or "and", read as one list
   (`\\boxed{1}, \\boxed{2}` is `1, 2`), unless an explicit answer marker ("answer is", "Answer:", "the correct option
   is", "答案：") follows the box: the last explicitly stated answer wins;
3. the last answer marker; a sentence after it ("The largest $n$ is 34") is reduced to its value;
4. an option letter standing alone on the last line;
5. the last sentence, when it states a value conservatively: "… is (about) 34.", "… is $x \\ge 5$.", or
   "$x \\ge 5$ is the solution.";
6. with the question's options known: the one option the last sentence names, or a leading "Yes," / "No,";
7. the only math span of a one-line response ("We find that $x \\lt 3$."), or the whole response when it is one short
   line.
Only the part after a closed `</think>` / `</thought>` block and before a chat-template turn marker is searched, so
numbers in the reasoning (or in a new turn) are never taken for the answer. All searches are `rfind`-based or run on a
bounded tail, so a 1 MB response costs milliseconds.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from verifiers.normalize import clean_latex, matching_brace, sanitize

TAIL_CHARS = 4096
MAX_BOXED_CHARS = 20_000
MAX_BOXED_CANDIDATES = 8
WHOLE_RESPONSE_MAX_CHARS = 80
REASONING_CLOSE_TAGS = ("</think>", "</thought>")

_ANSWER_IS_RE = re.compile(
    r"(?i)\b(?:answer|option|choice)(?:\s+letter|\s+to\s+(?:the|this|your)\s+question)?\b\s*(?:is\s*[:：]?|[:：=])\s*"
)
# "Answer $9$" or "Answer \\[ 9 \\]" on a line of its own
_ANSWER_LINE_RE = re.compile(r"(?im)^[ \t]*(?:final\s+)?answer[ \t]*(?=\$|\\\[)")
_DISPLAY_CLOSE = {"$$": "$$", "\\[": "\\]"}
_CJK_ANSWER_RE = re.compile(
    r"(?:(?:最终答案|正确答案|答案|选项)\s*(?:应该?是|是|为|為|[:：])|(?:故|所以|因此|则)\s*选(?!项)\s*[:：]?)\s*"
)
_SENTENCE_END_RE = re.compile(r"[.!?。](?=\s|$)")
_CLAUSE_END_RE = re.compile(r"[.!?。]\$?(?=\s|$)")  # also a sentence ending inside math: "$x = 0.$ By ..."
# A value stated at the end of a sentence: "... is 34", "... is about 31%", "... is 17.5 cm", "... equals $1/2$".
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?|" + "|".join(_NUMBER_WORDS)
_STATED_VALUE_RE = re.compile(
    r"(?i)(?:\bis|\bare|\bwas|\bequals?|\bbe|\bit's|=)\s+(?:about\s+|around\s+|approximately\s+|roughly\s+|nearly\s+)?"
    rf"['\"]?(\$[^$]+\$|\\\(.+?\\\)|(?:{_NUMBER})\s*(?:%|percent\b|[€£¥$]|[A-Za-z]{{1,12}}(?:\^\{{?[23]\}}?|[²³])?)?)['\"]?"
    r"(?:\s+(?:long|tall|wide|high|deep|old|away|apart|left|in\s+total))?\s*$"
)
# "There are 3 dots in each group": a count, when it is the sentence's only number.
_COUNT_RE = re.compile(rf"(?i)\bthere\s+(?:are|is|were|was)\s+({_NUMBER})\s+[a-z]")
_ANY_NUMBER_RE = re.compile(rf"(?i)\d|\b(?:{'|'.join(_NUMBER_WORDS)})\b")
# Closing pleasantries after the answer ("I hope this helps!"): not where a final answer is stated.
_PLEASANTRY_RE = re.compile(r"(?i)^(?:i hope|hope this|let me know|feel free|do you want|if you have)")
# "$x \\geq 5$ is the solution": the sentence's only math span, named as the answer.
_NAMED_SPAN_RE = re.compile(
    r"(?i)^(?:so|thus|therefore|hence|finally)?\W*(\$[^$]+\$)\s+(?:is|are)\s+the\s+(?:final\s+)?"
    r"(?:answer|solution|result|value)s?\b[^$]*$"
)
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_NEGATION_RE = re.compile(r"\b(?:not|never|neither|nor|cannot)\b|n't\b")
_OR_RE = re.compile(r"(?i)\bor\b(?!\s*,?\s*equivalently)|或")
# Between the boxes of one list answer: separators only.
_BOX_SEPARATOR_RE = re.compile(r"^(?:[\s$,;&]|\band\b|\\text\{\s*and\s*\}|\\q?quad|\\[,;!()\[\]])*$")
# Generation-stop markers a decoder may leave at the end of the text.
_STOP_TEXTS = ("</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<eos>")
# A chat-template turn marker: what follows it (a new user turn) is no part of the answer.
_TURN_MARKER_RE = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id)\|>")
# A one-line response whose only math is one `$…$` / `\\(…\\)` span: "We find that $x \\lt 3$."
_MATH_SPAN_RE = re.compile(r"\$[^$]+\$|\\\(.+?\\\)")
SINGLE_SPAN_LINE_MAX_CHARS = 400
_LETTER_LINE_RE = re.compile(r"^[\W_]*(?:(?:option|choice)\s*)?\(?([A-J])\)?[\W_]*$", re.IGNORECASE)
_OPTION_LINE_RE = re.compile(r"^(?:(?i:option|choice)\s*)?(?:\([A-J]\)|[A-J][.)])(?:\s|$)")
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


@dataclass(frozen=True)
class _Box:
    start: int
    end: int
    content: str


def _boxes_from_end(text: str):
    """Complete `\\boxed{…}` / `\\fbox{…}` (also `\\boxed 5`), last first.

    Only the last few candidates are tried and each may span at most `MAX_BOXED_CHARS`, so a response full of
    unclosed `\\boxed{` costs linear time."""
    end = len(text)
    for _ in range(MAX_BOXED_CANDIDATES):
        start, name = max((text.rfind(n, 0, end), n) for n in _BOXED_NAMES)
        if start < 0:
            return
        pos = start + len(name)
        if pos < len(text) and text[pos] == "{":
            close = matching_brace(text, pos, MAX_BOXED_CHARS)
            if close > 0:
                yield _Box(start, close + 1, text[pos + 1 : close].strip())
        elif pos < len(text) and text[pos] == " ":
            token = text[pos:].split(maxsplit=1)
            if token:
                yield _Box(start, pos + 1 + len(token[0]), token[0].rstrip("$."))
        end = start


def _final_boxes(text: str) -> _Box | None:
    """The last box, or the last run of boxes separated only by commas / "and", joined as one list answer."""
    run: list[_Box] = []
    for box in _boxes_from_end(text):
        if run and not _BOX_SEPARATOR_RE.match(text[box.end : run[-1].start]):
            break
        run.append(box)
    if not run:
        return None
    contents = list(dict.fromkeys(box.content for box in reversed(run) if box.content))  # `\\boxed{5}\\boxed{5}` is 5
    first, last = run[-1], run[0]
    if _OR_RE.search(text, max(first.start - 300, 0), last.end + 300):
        begin, stop = _sentence_bounds(text, first.start, last.end)
        if _OR_RE.search(text[begin : first.start] + " " + text[last.end : stop]):
            return _Box(first.start, last.end, text[begin:stop].strip())  # "$x = \\boxed{4}$ or $x = 5$" hedges
    return _Box(first.start, last.end, ", ".join(contents))


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Where the sentence (or line) holding `text[start:end]` begins and stops, looking at most 300 characters out."""
    left = text[max(start - 300, 0) : start]
    begin = start - len(left) + max([left.rfind("\n") + 1] + [m.end() for m in _CLAUSE_END_RE.finditer(left)])
    right = text[end : end + 300]
    stops = [len(right), *(m.start() for m in _CLAUSE_END_RE.finditer(right))]
    newline = right.find("\n")
    return begin, end + min(stops[:2] + ([newline] if newline >= 0 else []))


def last_boxed(text: str) -> str | None:
    """Content of the final box (or run of boxes); None when there is none."""
    box = _final_boxes(text)
    return box.content if box else None


def answer_tag(text: str) -> str | None:
    """Content of the last closed `<answer>…</answer>` pair."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    return None if open_ < 0 else text[open_ + len("<answer>") : close].strip()


def answer_is(text: str, start: int = 0) -> str | None:
    """What follows the last "answer is" / "Answer:" / "答案：" at or after `start`, on its line, without trailing
    sentence punctuation; a sentence there is reduced to the value it ends on."""
    offset = max(len(text) - TAIL_CHARS, start)
    tail = text[offset:]
    matches = [_last_match(_ANSWER_IS_RE, tail)]
    if "nswer" in tail:
        matches.append(_last_match(_ANSWER_LINE_RE, tail))
    if "答" in tail or "选" in tail:
        matches.append(_last_match(_CJK_ANSWER_RE, tail))
    last = max((m for m in matches if m), key=lambda m: m.start(), default=None)
    if last is None:
        return None
    rest = text[offset + last.end() :].lstrip()
    opener = next((o for o in _DISPLAY_CLOSE if rest.startswith(o)), None)
    close = rest.find(_DISPLAY_CLOSE[opener], len(opener)) if opener else -1
    if close > 0:  # display math over several lines: `Answer \\[ 9 \\]`
        return rest[len(opener) : close].strip() or None
    line = rest.split("\n", 1)[0]
    line = re.split(r"\.(?:\s|$)|。", line, maxsplit=1)[0].strip().strip("*").strip()
    return (_stated_value(line) or line) if line else None


def _stated_value(sentence: str) -> str | None:
    """The value a prose sentence ends on ("The largest $n$ is 34" -> "34"); None unless it has words before it."""
    m = _STATED_VALUE_RE.search(sentence)
    if m is None or not _WORD_RE.search(re.sub(r"\$[^$]*\$", " ", sentence[: m.start()])):
        return None
    value = m.group(1).strip()
    return _NUMBER_WORDS.get(value.lower(), value)


def _last_sentence(line: str) -> str:
    sentences = [s.strip() for s in _SENTENCE_END_RE.split(line) if s.strip()]
    return sentences[-1] if sentences else ""


def prose_answer(text: str) -> str | None:
    """A value the last sentence states, conservatively: at its end after "is"/"equals", or as its only math span
    named "the answer / solution"."""
    lines = [line.strip() for line in text[-TAIL_CHARS:].split("\n") if line.strip()]
    while lines and _PLEASANTRY_RE.match(lines[-1]):
        lines.pop()
    last = _last_sentence(lines[-1].replace("**", "") if lines else "")
    if not last:
        return None
    named = _NAMED_SPAN_RE.match(last)
    if named and last.count("$") == 2:
        return named.group(1)
    count = _COUNT_RE.search(last)
    if count and len(_ANY_NUMBER_RE.findall(last)) == 1:
        return _NUMBER_WORDS.get(count.group(1).lower(), count.group(1))
    return _stated_value(last)


def trailing_letter(text: str) -> str | None:
    """An option on the last non-empty line: a lone letter (`C`, `(C)`, `**C.**`, `Option C`) as the letter, or a
    letter with its option text (`Option B) No`, `\\textbf{(C)}`, `(C) $\\frac15$`) as the whole line, so that the
    choice check sees any other letter the line names."""
    lines = text[-TAIL_CHARS:].strip().rsplit("\n", 1)
    line = lines[-1].strip() if lines else ""
    m = _LETTER_LINE_RE.match(line)
    if m:
        return m.group(1).upper()
    cleaned = clean_latex(line).strip("*").strip()
    m = _LETTER_LINE_RE.match(cleaned)
    if m:
        return m.group(1).upper()
    return cleaned if len(cleaned) <= WHOLE_RESPONSE_MAX_CHARS and _OPTION_LINE_RE.match(cleaned) else None


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


def named_option(text: str, choices: Sequence[str]) -> str | None:
    """A multiple-choice question answered in prose: the one option text the last sentence names ("... would be the
    lizard."), unless the sentence negates; else a yes/no answer as the response's first word ("No, the number ...")."""
    last = _last_sentence(text[-TAIL_CHARS:].strip().rsplit("\n", 1)[-1]).lower()
    texts = [str(c).strip() for c in choices if _WORD_RE.search(str(c))]
    named = [  # "yes" / "no" are too common in prose to count as naming an option ("There is no doubt.")
        c for c in texts if c.lower() not in ("yes", "no") and re.search(rf"(?<!\w){re.escape(c.lower())}(?!\w)", last)
    ]
    named = [c for c in named if not any(c != other and c.lower() in other.lower() for other in named)]
    if len(named) == 1 and not _NEGATION_RE.search(last):
        return named[0]
    words = text.strip().split(maxsplit=1)
    first = words[0].strip(",.!:").lower() if words else ""
    if not named and first in ("yes", "no") and {c.lower() for c in texts} == {"yes", "no"}:
        return next(c for c in texts if c.lower() == first)
    return None


def _answer_part(response: str | bytes | None) -> str:
    """The part of a response that may state the answer: after the reasoning, before a new chat turn or stop text."""
    body = final_part(sanitize(response))
    marker = _TURN_MARKER_RE.search(body)
    if marker and body[: marker.start()].strip():
        body = body[: marker.start()]
    body = body.rstrip()
    while body.endswith(_STOP_TEXTS):
        body = body[: body.rfind("<")].rstrip()
    return body


def separate_boxes(response: str | bytes | None, count: int) -> str | None:
    """The response's boxes joined as one list when it has exactly `count` of them, none offered as an alternative or
    taken back: `\\boxed{(3, 3)} for part (a) and \\boxed{(1, 1)}` answers a gold of two values."""
    body = _answer_part(response)
    boxes = list(_boxes_from_end(body))
    if count < 2 or len(boxes) != count or not all(box.content for box in boxes):
        return None
    between = body[boxes[-1].end : boxes[0].start]
    if _OR_RE.search(between) or _NEGATION_RE.search(between):
        return None
    return ", ".join(box.content for box in reversed(boxes))


def extract_answer(
    response: str | bytes | None, json_short_answer: bool = False, choices: Sequence[str] | None = None
) -> Extraction:
    """The final-answer span of a response; `span is None` when the response states no answer. `choices` (option
    texts) let a prose answer that names one option count."""
    body = _answer_part(response)
    if json_short_answer:
        field = short_answer_field(body)
        if field is not None:
            return Extraction(field, "json_short_answer")
    tagged = answer_tag(body)
    if tagged is not None:
        inner = last_boxed(tagged) or answer_is(tagged) or tagged
        return Extraction(inner, "answer_tag") if inner else Extraction(None, "none")
    box = _final_boxes(body)
    if box and box.content:
        after = answer_is(body, box.end)  # an answer stated after the box wins over it
        return Extraction(after, "answer_is") if after else Extraction(box.content, "boxed")
    stated = answer_is(body)
    if stated:
        return Extraction(stated, "answer_is")
    letter = trailing_letter(body)
    if letter:
        return Extraction(letter, "option_letter")
    prose = prose_answer(body)
    if prose:
        return Extraction(prose, "prose")
    option = named_option(body, choices) if choices else None
    if option:
        return Extraction(option, "named_option")
    whole = body.strip()
    if whole and len(whole) <= WHOLE_RESPONSE_MAX_CHARS and "\n" not in whole:
        span = single_math_span(whole)
        return Extraction(span, "math_span") if span else Extraction(whole, "whole")
    span = single_math_span(whole) if len(whole) <= SINGLE_SPAN_LINE_MAX_CHARS and "\n" not in whole else None
    return Extraction(span, "math_span") if span else Extraction(None, "none")


def single_math_span(line: str) -> str | None:
    """The one math span of a prose line ("We find that $x \\lt 3$."); None when the line has several, or its prose
    negates or hedges ("It is not $5$", "$5$ or more")."""
    spans = _MATH_SPAN_RE.findall(line)
    if len(spans) != 1 or spans[0] == line:
        return None
    prose = line.replace(spans[0], " ")
    return None if _NEGATION_RE.search(prose) or _OR_RE.search(prose) else spans[0]
