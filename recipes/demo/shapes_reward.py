"""Minimal reward for the shapes demo: accuracy on the answer, plus a small bonus for the answer-tag format.

The project's full multimodal verifiers live in ``verifiers``; this one only has to be cheap and to give a
random tiny model a non-zero chance, so the demo's guide collection finds verified-correct samples. It reads the
``<answer>`` span when present and otherwise the last answer-like word of the response.
"""

from __future__ import annotations

import re

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_WORD = re.compile(r"\b(\d+|red|green|blue|yellow)\b", re.IGNORECASE)


def extract_answer(response: str) -> str | None:
    tagged = _ANSWER_TAG.findall(response)
    span = tagged[-1] if tagged else response
    words = _ANSWER_WORD.findall(span)
    return words[-1].lower() if words else None


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None) -> dict:
    """``score`` = 0.9 * acc + 0.1 * format, with ``acc`` and ``format`` reported separately (both 0/1)."""
    acc = float(extract_answer(solution_str) == str(ground_truth).strip().lower())
    fmt = float(bool(_ANSWER_TAG.search(solution_str)))
    return {"score": 0.9 * acc + 0.1 * fmt, "acc": acc, "format": fmt}
