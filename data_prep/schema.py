"""The output: verl's RL parquet row, with one explicit schema shared by training data and every benchmark.

One schema for all outputs matters because verl concatenates its data files with `datasets.concatenate_datasets`,
which refuses files whose features differ: a validation list mixing MathVista and MMFineReason files must agree
column for column, including every `extra_info` field, even where a field is null for one of them.

`extra_info` carries what the reward (`verifiers.reward.compute_score`) reads: `answer_type`, `choices`, `answers`
(every accepted answer, when there are several), `benchmark`, `precision`, `tolerance`; plus `index` (unique int, the
NPO trainer's prompt key), `id`, `split`, `source`, `pass_rate`, `group` (DynaMath seed question or MathVerse/WeMath
problem, for per-problem scores), the raw `question`, and `teacher_response` (the 235B teacher trace, for the LUFFY
baseline).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from data_prep.checks import Checked
from data_prep.record import Record

EXTRA_INFO = pa.struct(
    [
        ("index", pa.int64()),
        ("id", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),
        ("benchmark", pa.string()),
        ("answer_type", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("precision", pa.int64()),
        ("tolerance", pa.float64()),
        ("pass_rate", pa.float64()),
        ("group", pa.string()),
        ("question", pa.string()),
        ("teacher_response", pa.string()),
    ]
)
OUTPUT_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", EXTRA_INFO),
    ]
)


def to_row(record: Record, checked: Checked) -> dict[str, Any]:
    """A verl RL row; `extra_info.split` is set when the row is written. Image paths are synthetic names, never
    null, so nothing downstream trips on them."""
    return {
        "data_source": record.data_source,
        "prompt": [{"role": "user", "content": checked.prompt}],
        "images": [{"bytes": data, "path": f"{record.index}_{i}"} for i, data in enumerate(record.images)],
        "ability": record.ability,
        "reward_model": {"style": "rule", "ground_truth": checked.answer},
        "extra_info": {
            "index": record.index,
            "id": record.id,
            "split": None,
            "source": record.source,
            "benchmark": record.benchmark,
            "answer_type": checked.answer_type,
            "choices": record.choices,
            "answers": record.answers,
            "precision": record.precision,
            "tolerance": record.tolerance,
            "pass_rate": record.pass_rate,
            "group": record.group,
            "question": record.question,
            "teacher_response": record.teacher_response,
        },
    }
