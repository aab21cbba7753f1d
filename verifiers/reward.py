"""verl reward functions: `compute_score` per response and `compute_score_batch` per rollout batch.

Use from a verl config, either form:

    reward.custom_reward_function.path=pkg://verifiers.reward      name=compute_score
    reward.custom_reward_function.path=pkg://verifiers.reward      name=compute_score_batch  (batch reward manager)

`reward.custom_reward_function.reward_kwargs` reach both as keyword arguments: `format_template` (see
`verifiers.formats`, default `auto`), `format_weight` (default 0.1; score = (1 - w)·acc + w·format), and `timeout`
(seconds per symbolic check). Per-sample `extra_info` may carry `answer_type`, `choices`, `benchmark`, `tolerance`
(absolute, or {"abs", "rel"}) and `precision`.

Both functions are safe to call from threads and asyncio executors (no signals) and never raise: a failure scores 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from verifiers.check import Item, verify_batch
from verifiers.formats import format_ok
from verifiers.normalize import sanitize

DEFAULT_FORMAT_WEIGHT = 0.1
_log = logging.getLogger(__name__)


def _item(text: str, ground_truth: Any, data_source: Any, extra_info: Any) -> Item:
    """The sample's `Item`; a sample with unusable fields (say a NaN `precision`) is scored wrong on its own."""
    try:
        return Item.from_fields(text, ground_truth, data_source, extra_info)
    except (TypeError, ValueError):
        _log.warning("verifiers: unusable reward fields for one sample; scoring it as wrong", exc_info=True)
        return Item(text, "")


def _score(correct: bool, formatted: bool, format_weight: float) -> dict[str, float]:
    acc, fmt = float(correct), float(formatted)
    return {"score": (1.0 - format_weight) * acc + format_weight * fmt, "acc": acc, "format": fmt}


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    format_template: str = "auto",
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    timeout: float | None = None,
    **_: Any,
) -> list[dict[str, float]]:
    """Scores for a whole rollout batch; symbolic checks of all responses share the worker pool."""
    extra_infos = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    texts = [sanitize(s) for s in solution_strs]
    try:
        items = [
            _item(text, gold, source, extra)
            for text, gold, source, extra in zip(texts, ground_truths, data_sources, extra_infos, strict=True)
        ]
        results = verify_batch(items, timeout=timeout)
    except Exception:  # never let a reward bug stop training; log it and score 0
        _log.exception("verifiers: batch scoring failed; scoring %d responses as wrong", len(texts))
        results = None
    scores = []
    for i, text in enumerate(texts):
        try:
            formatted = format_ok(text, format_template)
        except Exception:
            _log.exception("verifiers: format check failed")
            formatted = False
        scores.append(_score(bool(results and results[i].correct), formatted, format_weight))
    return scores


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any = None,
    format_template: str = "auto",
    format_weight: float = DEFAULT_FORMAT_WEIGHT,
    timeout: float | None = None,
    **_: Any,
) -> dict[str, float]:
    """verl's per-sample reward: {"score", "acc", "format"}; extra verl keyword arguments are ignored."""
    return compute_score_batch(
        [data_source], [solution_str], [ground_truth], [extra_info], format_template, format_weight, timeout
    )[0]
