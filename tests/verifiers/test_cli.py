"""`python -m verifiers score|report`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from verifiers.cli import main

ROWS = [
    {"id": 1, "prediction": "so \\boxed{\\dfrac{26}{92}}", "answer": "\\frac{13}{46}", "benchmark": "MathVision"},
    {"id": 2, "prediction": "<answer>B</answer>", "answer": "12", "choices": ["10", "12"], "benchmark": "MathVista"},
    {"id": 3, "prediction": "\\boxed{3.1416}", "answer": "3.142", "benchmark": "DynaMath", "qid": "q1"},
    {"id": 4, "prediction": "\\boxed{3.2}", "answer": "3.142", "benchmark": "DynaMath", "qid": "q1"},
    {"id": 5, "prediction": "\\boxed{2}", "answer": 2, "benchmark": "DynaMath", "qid": "q2"},
    {"id": 6, "prediction": "\\boxed{1.449}", "answer": "1.4", "precision": 1, "benchmark": "MathVista"},
    {"id": 7, "prediction": "\\boxed{5}", "answer": ["4", "5"], "extra": {"kept": True}},
]


def _write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_keeps_fields_and_order(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    assert main(["score", str(source), "-o", str(tmp_path / "out.jsonl")]) == 0
    out = _read(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["correct"] for r in out] == [True, True, True, False, True, True, True]
    assert out[6]["extra"] == {"kept": True} and out[1]["choices"] == ["10", "12"]
    assert set(out[0]) >= {"correct", "extracted", "answer_type", "method", "reason"}
    assert out[0]["extracted"] == "\\dfrac{26}{92}" and out[0]["answer_type"] == "fraction"


def test_malformed_rows_are_scored_wrong_and_counted(tmp_path: Path, capsys) -> None:
    lines = [
        json.dumps(ROWS[0]),
        "{not json",
        json.dumps({"id": 9, "prediction": "x"}),
        json.dumps({"id": 10, "prediction": 5, "answer": "5"}),
        json.dumps([1, 2]),
        "",
        json.dumps({"id": 11, "prediction": "\\boxed{5}", "answer": {"a": 1}}),
        json.dumps({"id": 12, "prediction": "\\boxed{5}", "answer": "5", "tolerance": "wide"}),
        b'{"id": 13, "prediction": "\\\\boxed{5} \xff\xfe", "answer": "5"}',
        json.dumps(ROWS[1]),
    ]
    source = _write(tmp_path / "in.jsonl", lines)
    main(["score", str(source), "-o", str(tmp_path / "out.jsonl")])
    out = _read(tmp_path / "out.jsonl")
    assert [r["correct"] for r in out] == [True, False, False, False, False, False, False, True, True]
    reasons = [r["reason"] for r in out[1:7]]
    assert all(reason.startswith("malformed: ") for reason in reasons), reasons
    assert out[1] == {
        "id": None,
        "line": 2,
        "correct": False,
        "extracted": None,
        "answer_type": None,
        "method": "none",
        "reason": "malformed: invalid JSON",
    }
    assert "missing field 'answer'" in out[2]["reason"] and out[2]["id"] == 9
    assert "6 malformed row(s)" in capsys.readouterr().err


def test_report_markdown_and_csv(tmp_path: Path, capsys) -> None:
    source = _write(tmp_path / "in.jsonl", [json.dumps(r) for r in ROWS])
    main(["score", str(source), "-o", str(tmp_path / "out.jsonl")])
    capsys.readouterr()
    main(["report", str(tmp_path / "out.jsonl"), "--csv", str(tmp_path / "table.csv")])
    table = capsys.readouterr().out
    assert "| benchmark | n | correct | accuracy | worst_case |" in table
    assert "| DynaMath | 3 | 2 | 66.67 | 50.00 |" in table
    assert "| all | 7 | 6 | 85.71 |  |" in table
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert rows[0] == {"benchmark": "DynaMath", "n": "3", "correct": "2", "accuracy": "66.67", "worst_case": "50.00"}
    assert [r["benchmark"] for r in rows] == ["DynaMath", "MathVision", "MathVista", "default", "all"]


def test_module_entry_point(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [json.dumps(ROWS[0]), "garbage"])
    done = subprocess.run(
        [sys.executable, "-m", "verifiers", "score", str(source), "-o", "-"], capture_output=True, text=True, check=True
    )
    assert [json.loads(line)["correct"] for line in done.stdout.splitlines()] == [True, False]
    assert "1 malformed row(s)" in done.stderr
