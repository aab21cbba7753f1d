"""`python -m data_prep teacher`: each converted row's teacher trace counted in the training tokenizer against the
response budget and checked against the ground truth; flagged rows logged; `--clear` removes flagged traces and
keeps every prompt."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_prep.cli import main
from recipes.demo.tiny_model import build_tokenizer

BUDGET = 40
LONG = " ".join(["step"] * 60)
TRACES = {
    0: "<think>0 plus one</think><answer>1</answer>",  # fits, right
    1: f"<think>{LONG}</think><answer>2</answer>",  # right, too long
    2: "<think>2 plus one</think><answer>7</answer>",  # fits, wrong
    3: "<think>3 plus one is 4</think>",  # no answer to check
    4: None,
}


@pytest.fixture
def converted(kit, tmp_path: Path) -> Path:
    rows = [kit.mmfr_row(i, qwen3vl_235b_thinking_response=trace) for i, trace in TRACES.items()]
    kit.write_shard(tmp_path / "raw" / "s.parquet", rows)
    out = tmp_path / "converted"
    assert main(["mmfinereason", "--input", str(tmp_path / "raw"), "--output", str(out), "--val-size", "0"]) == 0
    return out


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    path = tmp_path / "tokenizer"
    build_tokenizer([t for t in TRACES.values() if t] * 4).save_pretrained(path)
    return path


def teacher(converted: Path, out: Path, tokenizer: Path, *extra: str) -> int:
    args = ["teacher", "--input", str(converted), "--output", str(out), "--tokenizer", str(tokenizer)]
    return main([*args, "--max-response-length", str(BUDGET), *extra])


def rows_by_index(folder: Path) -> dict[int, dict]:
    rows = [r for p in sorted(folder.glob("*-*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["extra_info"]["index"]: r for r in rows}


def source_id(row: dict) -> str:
    return row["extra_info"]["id"].rsplit(":", 1)[-1]  # "<source>:<id>"


def test_every_trace_is_counted_and_checked(converted, tokenizer, tmp_path, capsys):
    out = tmp_path / "report"
    assert teacher(converted, out, tokenizer) == 0
    index_of = {source_id(r): i for i, r in rows_by_index(converted).items()}
    flags = {int(json.loads(line)["index"]): json.loads(line)["flags"] for line in (out / "teacher_flags.jsonl").open()}
    assert flags == {
        index_of["mmfr-1"]: ["too_long"],
        index_of["mmfr-2"]: ["unverified"],
        index_of["mmfr-3"]: ["unverified"],
        index_of["mmfr-4"]: ["missing"],
    }
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["scoring"] == {
        "trace_fits_and_verifies": 1,
        "trace_too_long": 1,
        "trace_unverified": 2,
        "trace_missing": 1,
    }
    assert "traces that fit 40 tokens and verify: 20.0%" in capsys.readouterr().out
    assert not list(out.glob("*-*.parquet")), "without --clear only the report is written"


def test_clear_removes_the_flagged_traces_and_keeps_every_prompt(converted, tokenizer, tmp_path):
    out = tmp_path / "cleared"
    assert teacher(converted, out, tokenizer, "--clear", "too_long,unverified") == 0
    before, after = rows_by_index(converted), rows_by_index(out)
    assert after.keys() == before.keys()
    kept = {source_id(before[i]) for i, r in after.items() if r["extra_info"]["teacher_response"]}
    assert kept == {"mmfr-0"}
    assert json.loads((out / "manifest.json").read_text())["summary"]["fixed"] == {"trace_cleared": 3}


def test_bad_options_are_refused(converted, tokenizer, tmp_path, capsys):
    assert teacher(converted, tmp_path / "x", tokenizer, "--clear", "missing") == 2
    assert "--clear takes too_long and/or unverified" in capsys.readouterr().err
    assert teacher(converted, converted, tokenizer) == 2
