"""MMFineReason conversion end to end through the CLI: every bad-row kind, the schema, splits, shards, filters."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.checks import REASONS
from data_prep.cli import main
from data_prep.schema import OUTPUT_SCHEMA
from data_prep.templates import TEMPLATES
from verifiers.reward import compute_score


def _convert(raw: Path, out: Path, *extra: str) -> int:
    return main(["mmfinereason", "--input", str(raw), "--output", str(out), *extra])


def _rows(out: Path, prefix: str = "*") -> list[dict]:
    return [row for path in sorted(out.glob(f"{prefix}-*.parquet")) for row in pq.read_table(path).to_pylist()]


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]


def _key(row: dict) -> str:
    """The converted row's id: MMFineReason rows are keyed by `source:id`."""
    return f"{row['source']}:{row['id']}"


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["summary"]


def test_every_bad_row_is_quarantined_with_its_reason(mmfr_dir, tmp_path: Path) -> None:
    raw, bad = mmfr_dir
    assert _convert(raw, tmp_path / "out", "--val-size", "4") == 0
    reasons = {(q["id"], q["origin"]): q["reason"] for q in _quarantine(tmp_path / "out")}
    by_id = {}
    for (row_id, _), reason in reasons.items():
        by_id.setdefault(row_id, []).append(reason)
    expected = {
        "corrupt_image": "corrupt_image",
        "corrupt_truncated": "corrupt_image",
        "missing_image": "missing_image",
        "missing_image_path": "missing_image",
        "empty_answer": "empty_answer",
        "empty_answer_blank": "empty_answer",
        "image_tag_mismatch": "image_tag_mismatch",
        "prompt_too_long": "prompt_too_long",
        "stray_media_tag": "stray_media_tag",
        "dup_first_bad": "empty_answer",
        "empty_question": "empty_question",
        "hidden_answer": "hidden_answer",
    }
    for key, reason in expected.items():
        assert by_id[_key(bad[key])] == [reason], key
    assert by_id[None] == ["missing_id"]
    assert by_id["MMR1:mmfr-0"] == ["duplicate_id"], "the later copy of a duplicated id is quarantined"
    assert len(reasons) == 14 and set(reasons.values()) == set(REASONS), "every quarantine reason is exercised"

    rows = _rows(tmp_path / "out")
    ids = [r["extra_info"]["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 20 + 2, "20 good rows, the fixed row, and the valid copy of 'twice'"
    assert "BMMR:twice" in ids, "a duplicate whose first copy was bad keeps its valid copy"
    fixed = next(r for r in rows if r["extra_info"]["id"] == _key(bad["fixed"]))
    assert fixed["prompt"][0]["content"].startswith("<image>What is shown?")

    summary = _manifest(tmp_path / "out")
    assert summary["rows_in"] == 36 == summary["total_out"] + sum(summary["quarantined"].values())
    assert summary["quarantined"]["empty_answer"] == 3 and summary["quarantined"]["corrupt_image"] == 2
    assert summary["fixed"] == {"image_tag_added": 1} and summary["noted"] == {"id_shared_across_sources": 0}
    assert summary["rows_out"] == {"train": 18, "val": 4}
    hydra = json.loads((tmp_path / "out" / "manifest.json").read_text())["verl_files"]
    assert hydra["val"] == f"[{(tmp_path / 'out' / 'val-00000.parquet').resolve()}]"


def test_rows_follow_the_explicit_schema_and_feed_the_reward(mmfr_dir, tmp_path: Path) -> None:
    raw, _ = mmfr_dir
    out = tmp_path / "out"
    assert _convert(raw, out, "--val-size", "0", "--template", "answer_tag") == 0
    for path in out.glob("*.parquet"):
        assert pq.read_schema(path).equals(OUTPUT_SCHEMA)
    rows = _rows(out, "train")
    inputs = [row for path in sorted(raw.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    indexes = [r["extra_info"]["index"] for r in rows]
    assert len(set(indexes)) == len(indexes) and all(isinstance(i, int) for i in indexes)
    for row in rows:
        info = row["extra_info"]
        original = inputs[info["index"]]  # the index is the row's position in the input
        assert info["id"] == _key(original)
        content = row["prompt"][0]["content"]
        assert row["prompt"][0]["role"] == "user" and content.endswith(TEMPLATES["answer_tag"])
        assert content.count("<image>") == len(row["images"]) == 1
        assert row["images"][0]["bytes"] == original["image"]["bytes"] and row["images"][0]["path"]
        assert row["data_source"] == "mmfinereason" and row["reward_model"] == {
            "style": "rule",
            "ground_truth": original["answer"],
        }
        assert info["source"] == original["source"] and info["pass_rate"] == 0.0 and info["split"] == "train"
        assert info["teacher_response"] == original["qwen3vl_235b_thinking_response"]
        assert info["answer_type"] == "number" and info["question"] == original["question"]
        gold = row["reward_model"]["ground_truth"]
        right = compute_score(row["data_source"], f"<answer>{gold}</answer>", gold, info)
        wrong = compute_score(row["data_source"], f"<answer>{gold}9</answer>", gold, info)
        assert (right["acc"], wrong["acc"]) == (1.0, 0.0)


def test_validation_split_is_exact_and_fixed_by_the_seed(mmfr_dir, tmp_path: Path) -> None:
    raw, _ = mmfr_dir

    def val_ids(name: str, seed: str) -> set[str]:
        assert _convert(raw, tmp_path / name, "--val-size", "5", "--seed", seed) == 0
        assert all(r["extra_info"]["split"] == "val" for r in _rows(tmp_path / name, "val"))
        return {r["extra_info"]["id"] for r in _rows(tmp_path / name, "val")}

    first, again, other = val_ids("a", "0"), val_ids("b", "0"), val_ids("c", "1")
    assert len(first) == 5 and first == again and first != other
    train = {r["extra_info"]["id"] for r in _rows(tmp_path / "a", "train")}
    assert not train & first and len(train | first) == 22


def test_shards_and_row_groups_stay_small_and_reruns_leave_no_stale_shards(mmfr_dir, tmp_path: Path) -> None:
    raw, _ = mmfr_dir
    out = tmp_path / "out"
    assert _convert(raw, out, "--val-size", "0", "--shard-rows", "5") == 0
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in sorted(out.glob("train-*.parquet"))]
    assert sizes == [5, 5, 5, 5, 2]
    assert _convert(raw, out, "--val-size", "0", "--shard-rows", "100") == 0
    assert [p.name for p in sorted(out.glob("*.parquet"))] == ["train-00000.parquet"]
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize("column", ["pass_rate", "qwen3vl_4b_pass_rate"])
def test_pass_rate_range_reads_either_column_name(kit, tmp_path: Path, column: str) -> None:
    rates = [0.0, 0.25, 0.5, 0.75, 1.0, None]
    kit.write_shard(tmp_path / "raw" / "s.parquet", [kit.mmfr_row(i, pass_rate=r) for i, r in enumerate(rates)], column)
    assert _convert(tmp_path / "raw", tmp_path / "out", "--val-size", "0", "--pass-rate", "0,0.5") == 0
    kept = sorted(r["extra_info"]["pass_rate"] for r in _rows(tmp_path / "out"))
    assert kept == [0.0, 0.25, 0.5]
    summary = _manifest(tmp_path / "out")
    assert summary["filtered"] == {"pass_rate_out_of_range": 2, "pass_rate_missing": 1}
    assert not _quarantine(tmp_path / "out"), "filtered rows are a choice, not a defect"


def test_pass_rate_without_the_column_is_a_schema_error(kit, tmp_path: Path, capsys) -> None:
    kit.write_shard(tmp_path / "raw" / "s.parquet", [kit.mmfr_row(0)], pass_rate_column=None)
    assert _convert(tmp_path / "raw", tmp_path / "out", "--pass-rate", "0") == 2
    message = capsys.readouterr().err
    assert "s.parquet" in message and "pass_rate" in message and "python -m data_prep filter" in message
    assert _convert(tmp_path / "raw", tmp_path / "out2", "--val-size", "0") == 0, "without --pass-rate it converts"
    assert _rows(tmp_path / "out2")[0]["extra_info"]["pass_rate"] is None


def test_a_missing_required_column_stops_the_run_naming_file_and_column(kit, tmp_path: Path, capsys) -> None:
    kit.write_shard(tmp_path / "raw" / "a.parquet", [kit.mmfr_row(0)])
    table = pq.read_table(kit.write_shard(tmp_path / "tmp" / "b.parquet", [kit.mmfr_row(1)]))
    pq.write_table(table.drop_columns(["answer"]), tmp_path / "raw" / "b.parquet")
    assert _convert(tmp_path / "raw", tmp_path / "out") == 2
    message = capsys.readouterr().err
    assert "b.parquet" in message and "'answer'" in message
    assert not (tmp_path / "out").exists(), "schemas are checked before anything is written"


def test_a_wrongly_typed_image_column_is_a_schema_error(tmp_path: Path, capsys) -> None:
    table = pa.table({"id": ["a"], "question": ["<image>q"], "answer": ["1"], "image": [3]})
    (tmp_path / "raw").mkdir()
    pq.write_table(table, tmp_path / "raw" / "s.parquet")
    assert _convert(tmp_path / "raw", tmp_path / "out") == 2
    assert "'image'" in capsys.readouterr().err


def test_no_surviving_row_exits_non_zero(kit, tmp_path: Path, capsys) -> None:
    kit.write_shard(tmp_path / "raw" / "s.parquet", [kit.mmfr_row(0, answer=None), kit.mmfr_row(1, image=None)])
    assert _convert(tmp_path / "raw", tmp_path / "out") == 1
    assert "no row survived" in capsys.readouterr().err


def test_excluded_answer_types_teacher_flag_and_glob_input(kit, tmp_path: Path) -> None:
    rows = [kit.mmfr_row(0), kit.mmfr_row(1, answer="The triangle is isosceles"), kit.mmfr_row(2, answer="B")]
    kit.write_shard(tmp_path / "raw" / "part-1.parquet", rows)
    kit.write_shard(tmp_path / "raw" / "ignored.parquet", [kit.mmfr_row(9)])
    pattern = str(tmp_path / "raw" / "part-*.parquet")
    assert _convert(pattern, tmp_path / "out", "--val-size", "0", "--exclude-types", "text", "--no-teacher") == 0
    out = _rows(tmp_path / "out")
    types = {r["extra_info"]["id"]: r["extra_info"]["answer_type"] for r in out}
    assert types == {"MMR1:mmfr-0": "number", "BMMR:mmfr-2": "choice"}
    assert all(r["extra_info"]["teacher_response"] is None for r in out)
    assert _manifest(tmp_path / "out")["filtered"] == {"answer_type_excluded": 1}


def test_multi_image_rows_get_their_missing_tags(kit, tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("image", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ]
    )
    two = [{"bytes": kit.png(), "path": "a"}, {"bytes": kit.png(40, 40, "green"), "path": "b"}]
    rows = [{"id": "m", "question": "<image>Which is larger?", "answer": "A", "image": two}]
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "raw" / "s.parquet")
    assert _convert(tmp_path / "raw", tmp_path / "out", "--val-size", "0") == 0
    (row,) = _rows(tmp_path / "out")
    assert row["prompt"][0]["content"].startswith("<image><image>Which")
    assert [i["bytes"] for i in row["images"]] == [two[0]["bytes"], two[1]["bytes"]]


def test_the_output_does_not_depend_on_the_number_of_threads(mmfr_dir, tmp_path: Path) -> None:
    raw, _ = mmfr_dir
    for workers in ("1", "3"):
        assert _convert(raw, tmp_path / workers, "--val-size", "3", "--workers", workers) == 0
    for name in ("train-00000.parquet", "val-00000.parquet", "quarantine.jsonl"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "3" / name).read_bytes(), name
