"""Format reward: does a response have the shape the prompt asked for?

The default template, `auto`, accepts every shape a Qwen-VL policy legitimately produces: an optional single
`<think>…</think>` or `<thought>…</thought>` block (an opening tag may live in the chat template, so a lone closing tag
counts), followed by an explicit final answer, `<answer>…</answer>` or `\\boxed{…}`. Qwen3-VL-Instruct writes no
reasoning tags at all, and a template that demands them pins the format reward at 0 (EasyR1 #597).

The other named templates reproduce stricter public rewards; any other string is used as a regular expression that
must match the whole response (re.DOTALL).
"""

from __future__ import annotations

import re
from functools import lru_cache

from verifiers.extract import answer_tag, final_part, last_boxed


def _single_pair(text: str, name: str) -> tuple[int, int] | None:
    """(start of `<name>`, end of `</name>`) when the text holds exactly one such pair, in order."""
    open_tag, close_tag = f"<{name}>", f"</{name}>"
    if text.count(open_tag) != 1 or text.count(close_tag) != 1:
        return None
    start, close = text.find(open_tag), text.find(close_tag)
    return (start, close + len(close_tag)) if start < close else None


def _has_final_answer(body: str) -> bool:
    if "<answer>" in body or "</answer>" in body:
        pair = _single_pair(body, "answer")
        return pair is not None and bool(answer_tag(body))
    return bool(last_boxed(body))


def _auto(text: str) -> bool:
    tags = {name: (text.count(f"<{name}>"), text.count(f"</{name}>")) for name in ("think", "thought")}
    used = [name for name, counts in tags.items() if counts != (0, 0)]
    if len(used) > 1:
        return False
    if used:
        opens, closes = tags[used[0]]
        if closes != 1 or opens > 1:
            return False
        if opens == 1 and _single_pair(text, used[0]) is None:
            return False
    return _has_final_answer(final_part(text))


def _reasoning_then_answer(text: str, name: str) -> bool:
    """`<name>…</name>` at the start, then exactly `<answer>…</answer>` and nothing else (R1 / ReMind style)."""
    text = text.strip()
    pair = _single_pair(text, name)
    if pair is None or pair[0] != 0:
        return False
    rest = text[pair[1] :].strip()
    return rest.startswith("<answer>") and rest.endswith("</answer>") and _single_pair(rest, "answer") is not None


def _think_boxed(text: str) -> bool:
    """verl geo3k: `<think>…</think>` first, a `\\boxed{…}` after it."""
    pair = _single_pair(text, "think")
    return pair is not None and pair[0] == 0 and last_boxed(text[pair[1] :]) is not None


def _boxed(text: str) -> bool:
    return last_boxed(final_part(text)) is not None


def _answer_tag(text: str) -> bool:
    body = final_part(text)
    return _single_pair(body, "answer") is not None and bool(answer_tag(body))


_CHECKS = {
    "auto": _auto,
    "think_answer": lambda text: _reasoning_then_answer(text, "think"),
    "thought_answer": lambda text: _reasoning_then_answer(text, "thought"),
    "think_boxed": _think_boxed,
    "boxed": _boxed,
    "answer_tag": _answer_tag,
}
TEMPLATES = tuple(_CHECKS)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.DOTALL)


def format_ok(response: str, template: str = "auto") -> bool:
    """Whether `response` follows `template` (a name from `TEMPLATES` or a full-match regular expression)."""
    check = _CHECKS.get(template)
    if check is not None:
        return check(response)
    return _compiled(template).fullmatch(response) is not None
