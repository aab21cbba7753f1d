"""Benchmark conversion from local copies in their publishers' layouts: answer types, choices, image placement."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.benchmarks import parse_option_string, parse_options, place_images
from data_prep.cli import main
from data_prep.schema import OUTPUT_SCHEMA
from verifiers.reward import compute_score

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _parquet(path: Path, rows: list[dict], types: dict[str, pa.DataType] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {key: [row.get(key) for row in rows] for key in rows[0]}
    arrays = {key: pa.array(values, type=(types or {}).get(key)) for key, values in columns.items()}
    pq.write_table(pa.table(arrays), path)
    return path


def _convert(name: str, source: Path, out: Path) -> list[dict]:
    assert main(["benchmark", name, "--input", str(source), "--output", str(out), "--template", "boxed"]) == 0
    files = sorted(out.glob("*.parquet"))
    assert files and all(pq.read_schema(f).equals(OUTPUT_SCHEMA) for f in files)
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    assert all(r["extra_info"]["split"] == "test" and r["extra_info"]["benchmark"] == r["data_source"] for r in rows)
    return rows


def _score(row: dict, answer: str) -> float:
    gold = row["reward_model"]["ground_truth"]
    return compute_score(row["data_source"], f"\\boxed{{{answer}}}", gold, row["extra_info"])["acc"]


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["extra_info"]["id"]: r for r in rows}


def test_mathvista_maps_option_text_and_keeps_precision(kit, tmp_path: Path) -> None:
    rows = [
        {
            "pid": "1",
            "question": "How many cubes?",
            "decoded_image": {"bytes": kit.png(), "path": "1.png"},
            "choices": ["3", "4", "5"],
            "precision": None,
            "answer": "4",
            "question_type": "multi_choice",
            "answer_type": "text",
            "query": "Hint: answer with the option letter.\nQuestion: How many cubes?\nChoices:\n(A) 3\n(B) 4\n(C) 5",
        },
        {
            "pid": "2",
            "question": "What is the length?",
            "decoded_image": {"bytes": kit.jpeg(), "path": "2.jpg"},
            "choices": None,
            "precision": 1.0,
            "answer": "2.5",
            "question_type": "free_form",
            "answer_type": "float",
            "query": "Hint: one decimal.\nQuestion: What is the length?",
        },
    ]
    types = {"decoded_image": IMAGE, "choices": pa.list_(pa.string())}
    out = _by_id(_convert("mathvista", _parquet(tmp_path / "mv" / "testmini-0.parquet", rows, types), tmp_path / "o"))
    choice, number = out["1"], out["2"]
    assert choice["prompt"][0]["content"].startswith("<image>\nHint: answer with the option letter.")
    assert choice["extra_info"]["choices"] == ["3", "4", "5"] and choice["extra_info"]["answer_type"] == "choice"
    assert (_score(choice, "B"), _score(choice, "A"), _score(choice, "4")) == (1.0, 0.0, 1.0)
    assert number["extra_info"]["precision"] == 1 and number["extra_info"]["answer_type"] == "number"
    assert (_score(number, "2.54"), _score(number, "2.7")) == (1.0, 0.0)
    assert {r["data_source"] for r in out.values()} == {"MathVista"}
    assert sorted(p.name for p in (tmp_path / "o").glob("*.parquet")) == ["mathvista-00000.parquet"]


def test_mathverse_keeps_text_only_rows_without_images(kit, tmp_path: Path) -> None:
    rows = [
        {
            "sample_index": "1",
            "problem_index": "1",
            "question": "Find x.\nChoices:\nA:30\nB:60",
            "image": {"bytes": kit.png(), "path": "a.png"},
            "answer": "B",
            "question_type": "multi-choice",
        },
        {
            "sample_index": "2",
            "problem_index": "1",
            "question": "Triangle ABC has angle 30. Find x.",
            "image": None,
            "answer": "60",
            "question_type": "free-form",
        },
    ]
    out = _by_id(
        _convert("mathverse", _parquet(tmp_path / "in" / "testmini.parquet", rows, {"image": IMAGE}), tmp_path / "o")
    )
    assert out["1"]["prompt"][0]["content"].count("<image>") == 1 and out["1"]["extra_info"]["answer_type"] == "choice"
    assert out["2"]["images"] == [] and "<image>" not in out["2"]["prompt"][0]["content"]
    assert out["1"]["extra_info"]["group"] == out["2"]["extra_info"]["group"] == "1"
    assert (_score(out["1"], "B"), _score(out["2"], "60"), _score(out["2"], "30")) == (1.0, 1.0, 0.0)


def test_mathvision_replaces_numbered_tags_and_lists_options(kit, tmp_path: Path) -> None:
    rows = [
        {
            "id": "7",
            "question": "<image1>\nWhich shape comes next?",
            "options": ["1", "2", "3", "4", "5"],
            "decoded_image": {"bytes": kit.png(), "path": "images/7.jpg"},
            "image": "images/7.jpg",
            "answer": "C",
        },
        {
            "id": "8",
            "question": "How many dots are there?",
            "options": [],
            "decoded_image": {"bytes": kit.png(), "path": "images/8.jpg"},
            "image": "images/8.jpg",
            "answer": "12",
        },
    ]
    source = _parquet(
        tmp_path / "in" / "test.parquet", rows, {"decoded_image": IMAGE, "options": pa.list_(pa.string())}
    )
    out = _by_id(_convert("mathvision", source, tmp_path / "o"))
    prompt = out["7"]["prompt"][0]["content"]
    assert prompt.startswith("<image>\nWhich shape") and prompt.count("<image>") == 1 and "\nC. 3\n" in prompt
    assert out["7"]["extra_info"]["answer_type"] == "choice" and out["8"]["extra_info"]["choices"] is None
    assert out["8"]["prompt"][0]["content"].startswith("<image>\nHow many")
    assert (_score(out["7"], "C"), _score(out["7"], "D"), _score(out["8"], "12")) == (1.0, 0.0, 1.0)


def test_wemath_reads_image_files_relative_to_the_data(kit, tmp_path: Path) -> None:
    (tmp_path / "in" / "images").mkdir(parents=True)
    (tmp_path / "in" / "images" / "q1.png").write_bytes(kit.png())
    row = {"ID": "q1", "question": "Find the angle.", "option": "A. 60°; B. 70°; C. 80°", "answer": "B"}
    (tmp_path / "in" / "testmini.json").write_text(json.dumps([{**row, "image_path": "images/q1.png"}]))
    (out,) = _convert("wemath", tmp_path / "in" / "testmini.json", tmp_path / "o")
    assert out["images"][0]["bytes"] == kit.png() and out["extra_info"]["choices"] == ["60°", "70°", "80°"]
    assert out["prompt"][0]["content"].startswith("<image>\nFind the angle.\nOptions: A. 60°")
    assert (_score(out, "B"), _score(out, "70°"), _score(out, "A")) == (1.0, 1.0, 0.0)


def test_logicvista_reads_the_repository_json_and_scores_letter_sets(kit, tmp_path: Path) -> None:
    data = tmp_path / "LogicVista" / "data"
    (data / "images").mkdir(parents=True)
    for name in ("v1_0.png", "v1_1.png"):
        (data / "images" / name).write_bytes(kit.png())
    dataset = {
        "v1_0": {"imagename": "v1_0.png", "question": "Which belong to green?", "answer": "A, C", "skill": ["x"]},
        "v1_1": {"imagename": "v1_1.png", "question": "Which is correct? Select from 1-5", "answer": "3"},
        "v1_2": {"imagename": "missing.png", "question": "Which?", "answer": "B"},
    }
    (data / "dataset.json").write_text(json.dumps(dataset))
    assert (
        main(["benchmark", "logicvista", "--input", str(data / "dataset.json"), "--output", str(tmp_path / "o")]) == 0
    )
    out = _by_id([r for f in (tmp_path / "o").glob("*.parquet") for r in pq.read_table(f).to_pylist()])
    assert set(out) == {"v1_0", "v1_1"}
    quarantined = [json.loads(line) for line in (tmp_path / "o" / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["id"], q["reason"]) for q in quarantined] == [("v1_2", "missing_image")]
    assert (_score(out["v1_0"], "C, A"), _score(out["v1_0"], "A"), _score(out["v1_1"], "3")) == (1.0, 0.0, 1.0)


def test_dynamath_variants_get_unique_ids_grouped_by_seed(kit, tmp_path: Path) -> None:
    for variant in (1, 2):
        rows = [
            {"id": "1", "question": "Compute pi.", "decoded_image": {"bytes": kit.png(), "path": "a"},
             "ground_truth": "3.1415", "answer_type": "float"},
            {"id": "2", "question": "Is it convex? A. yes B. no", "decoded_image": {"bytes": kit.png(), "path": "b"},
             "ground_truth": "B", "answer_type": "multiple choice"},
        ]  # fmt: skip
        _parquet(tmp_path / "in" / f"sample_variant{variant}-00000-of-00001.parquet", rows, {"decoded_image": IMAGE})
    out = _by_id(_convert("dynamath", tmp_path / "in", tmp_path / "o"))
    assert set(out) == {"1_v1", "1_v2", "2_v1", "2_v2"}
    assert {r["extra_info"]["group"] for r in out.values()} == {"1", "2"}
    assert out["1_v1"]["extra_info"]["tolerance"] == 1e-3 and out["2_v1"]["extra_info"]["answer_type"] == "choice"
    assert (_score(out["1_v2"], "3.1416"), _score(out["1_v2"], "3.15"), _score(out["2_v1"], "B")) == (1.0, 0.0, 1.0)


def test_mmmu_places_numbered_images_in_tag_order(kit, tmp_path: Path) -> None:
    first, second, third, spare = (kit.png(40, 40, c) for c in ("red", "green", "blue", "white"))
    rows = [
        {
            "id": "validation_Art_1",
            "question": "Compare <image 2> with <image 1>.",
            "options": "['<image 3>', 'Both']",
            "image_1": {"bytes": first, "path": None},
            "image_2": {"bytes": second, "path": None},
            "image_3": {"bytes": third, "path": None},
            "image_4": {"bytes": spare, "path": None},
            "answer": "A",
            "question_type": "multiple-choice",
        },
        {
            "id": "validation_Math_2",
            "question": "<image 1> What is the area?",
            "options": "[]",
            "image_1": {"bytes": first, "path": None},
            "image_2": None,
            "image_3": None,
            "image_4": None,
            "answer": "['24', '24.0']",
            "question_type": "open",
        },
    ]
    types = {f"image_{n}": IMAGE for n in range(1, 5)}
    out = _by_id(_convert("mmmu", _parquet(tmp_path / "in" / "validation.parquet", rows, types), tmp_path / "o"))
    choice, open_ = out["validation_Art_1"], out["validation_Math_2"]
    assert choice["prompt"][0]["content"].startswith(
        "<image>Compare <image> with <image>.\nOptions:\nA. <image>\nB. Both"
    )
    assert [i["bytes"] for i in choice["images"]] == [spare, second, first, third]
    assert choice["extra_info"]["choices"] == ["<image 3>", "Both"] and _score(choice, "A") == 1.0
    assert open_["reward_model"]["ground_truth"] == "24" and open_["extra_info"]["answer_type"] == "number"
    assert len(open_["images"]) == 1 and _score(open_, "24") == 1.0


def test_a_benchmark_file_without_a_required_column_is_named(tmp_path: Path, capsys) -> None:
    _parquet(tmp_path / "in" / "testmini.parquet", [{"pid": "1", "question": "q", "answer": "1"}])
    assert main(["benchmark", "mathvista", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]) == 2
    message = capsys.readouterr().err
    assert "testmini.parquet" in message and "'decoded_image'" in message and "image" in message


@pytest.mark.parametrize(
    "text, images, expected_text, expected_order",
    [
        ("What?", {1: b"a"}, "<image>\nWhat?", [b"a"]),
        ("<image>What?", {1: b"a"}, "<image>What?", [b"a"]),
        ("See <image1> and <image 1>", {1: b"a"}, "See <image> and <image>", [b"a", b"a"]),
        ("See <image_2>", {1: b"a", 2: b"b"}, "<image>See <image>", [b"a", b"b"]),
        ("Text only", {}, "Text only", []),
        ("See <image 3>", {1: b"a"}, "<image>See <image>", [b"a", None]),
    ],
)
def test_place_images(text: str, images: dict, expected_text: str, expected_order: list) -> None:
    assert place_images(text, images) == (expected_text, expected_order)


def test_option_parsing() -> None:
    assert parse_option_string("A. 60°; B. 70°;C: 80") == ["60°", "70°", "80"]
    assert parse_option_string("A. x\nB. y") == ["x", "y"]
    assert parse_option_string("B. starts late; C. no") is None and parse_option_string(None) is None
    assert parse_options("['a', 'b']") == ["a", "b"] and parse_options("[]") is None and parse_options("[oops") is None
