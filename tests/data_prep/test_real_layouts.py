"""Benchmarks and MMFineReason in their publishers' real layouts, with the traps those releases contain.

Each fixture copies the shape of a public release (field names, id schemes, where images live, how empty values are
stored); the row texts are short stand-ins. Every good row must come out, every bad one must be quarantined with its
reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.benchmarks import VISION_ONLY_QUESTION
from data_prep.cli import main
from verifiers.reward import compute_score

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _run(name: str, source: Path, out: Path, *extra: str) -> list[dict]:
    args = ["benchmark", name, "--input", str(source), "--output", str(out), "--template", "boxed", *extra]
    assert main(args) == 0
    return [row for f in sorted(out.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def _by_id(rows: list[dict]) -> dict[str, dict]:
    ids = [r["extra_info"]["id"] for r in rows]
    assert len(ids) == len(set(ids)), "ids are unique"
    return dict(zip(ids, rows, strict=True))


def _log(out: Path, name: str) -> list[tuple[str, str]]:
    lines = (out / name).read_text().splitlines()
    return [(entry["id"], entry["reason"]) for entry in map(json.loads, lines)]


def _summary(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["summary"]


def _score(row: dict, answer: str) -> float:
    gold = row["reward_model"]["ground_truth"]
    return compute_score(row["data_source"], f"\\boxed{{{answer}}}", gold, row["extra_info"])["acc"]


def _prompt(row: dict) -> str:
    return row["prompt"][0]["content"]


def test_wemath_sub_steps_share_a_problem_id_and_keep_unparsed_options(kit, tmp_path: Path) -> None:
    """We-Math's testmini.json: `ID` names a problem, `key` its sub-step; image paths start at a separate image
    folder; a few option strings have stray `;` inside option texts."""
    images = tmp_path / "we_math_images"
    rows = []
    for problem, steps in (("2steps_1", ("2steps_1", "2steps_2", "2steps_multi")), ("3steps_4", ("3steps_1",))):
        for n, key in enumerate(steps, 1):
            path = f"{key.split('_')[0]}/image/{problem[-1]}-{n}.png"
            (images / path).parent.mkdir(parents=True, exist_ok=True)
            (images / path).write_bytes(kit.png(30 + n, 30))
            option = "A. 300, 400;B. 400, 300;C. 3000, 4000; D. No correct answer"
            rows.append({"ID": problem, "key": key, "question": f"Step {n}: OA = ( ) m", "option": option,
                         "answer": "C", "image_path": path, "question number": n})  # fmt: skip
    rows[1]["option"] = "A. 45° B. 60° ;C. 120°; D. No correct answer"  # as published; letters not splittable
    data = tmp_path / "We-Math" / "data"
    data.mkdir(parents=True)
    (data / "testmini.json").write_text(json.dumps(rows))

    out = _by_id(_run("wemath", data / "testmini.json", tmp_path / "o", "--image-root", str(images)))
    assert set(out) == {"2steps_1:2steps_1", "2steps_1:2steps_2", "2steps_1:2steps_multi", "3steps_4:3steps_1"}
    assert {k: r["extra_info"]["group"] for k, r in out.items()} == {k: k.split(":")[0] for k in out}
    odd = out["2steps_1:2steps_2"]
    assert odd["extra_info"]["choices"] is None and "Options: A. 45° B. 60° ;C. 120°" in _prompt(odd)
    assert (_score(odd, "C"), _score(odd, "A")) == (1.0, 0.0)
    assert out["2steps_1:2steps_1"]["extra_info"]["choices"] == [
        "300, 400",
        "400, 300",
        "3000, 4000",
        "No correct answer",
    ]
    assert _log(tmp_path / "o", "notes.jsonl") == [("2steps_1:2steps_2", "options_unparsed")]
    assert _summary(tmp_path / "o")["noted"] == {"options_unparsed": 1}


def _mathvision_rows() -> list[dict]:
    """MathVision's rows: numbered tags for one composite image, options drawn in the image, tags inside options."""
    return [
        {"id": "1", "question": "Which number replaces the question mark?\n<image1>", "options": [], "answer": "60"},
        {"id": "2", "question": "How many ducks weigh the same as a crocodile?\n<image1>\n<image2>",
         "options": ["A", "B", "C", "D", "E"], "answer": "B"},
        {"id": "3", "question": "One piece:\n<image1>\nWhat does the other piece look like?\n<image2>",
         "options": ["(A)", "(B)", "(C)", "(D)", "(E)"], "answer": "E"},
        {"id": "4", "question": "Which tile fits <image3>?", "options": ["<image1>", "<image2>", "neither"],
         "answer": "B"},
        {"id": "5", "question": "How many dots are there in total?", "options": [], "answer": "12"},
    ]  # fmt: skip


def _check_mathvision(out: dict[str, dict]) -> None:
    assert set(out) == {"1", "2", "3", "4", "5"}
    assert all(_prompt(r).count("<image>") == len(r["images"]) == 1 for r in out.values())
    assert all("<image1>" not in _prompt(r) and "<image2>" not in _prompt(r) for r in out.values())
    assert _prompt(out["1"]).startswith("Which number replaces the question mark?\n<image>")
    assert "<image>\n(image 2)\nOptions: A, B, C, D, E" in _prompt(out["2"]) and "A. A" not in _prompt(out["2"])
    assert "(image 2)" in _prompt(out["3"]) and "A. (A)" not in _prompt(out["3"])
    assert out["4"]["extra_info"]["choices"] == ["(image 1)", "(image 2)", "neither"]
    assert _prompt(out["4"]).startswith("Which tile fits <image>?\nOptions:\nA. (image 1)\nB. (image 2)")
    assert _prompt(out["5"]).startswith("<image>\nHow many dots")
    scores = (_score(out["2"], "B"), _score(out["2"], "C"), _score(out["3"], "E"), _score(out["4"], "B"))
    assert scores == (1.0, 0.0, 1.0, 1.0) and _score(out["1"], "60") == 1.0


def test_mathvision_parquet_attaches_its_one_image_once(kit, tmp_path: Path) -> None:
    rows = [
        {**row, "image": f"images/{row['id']}.jpg", "decoded_image": {"bytes": kit.jpeg(), "path": "x.jpg"}}
        for row in _mathvision_rows()
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
        ("image", pa.string()), ("decoded_image", IMAGE)]))  # fmt: skip
    (tmp_path / "MathVision" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "MathVision" / "data" / "test-00000-of-00001.parquet")
    _check_mathvision(_by_id(_run("mathvision", tmp_path / "MathVision", tmp_path / "o")))


def test_mathvision_github_layout_finds_images_at_the_repository_root(kit, tmp_path: Path) -> None:
    """MATH-V's repository: `data/test.jsonl` names `images/N.jpg`, relative to the repository root."""
    repo = tmp_path / "MATH-V"
    (repo / "data").mkdir(parents=True)
    (repo / "images").mkdir()
    rows = [{**row, "image": f"images/{row['id']}.jpg"} for row in _mathvision_rows()]
    rows.append({"id": "6", "question": "<image1>Lost?", "options": [], "answer": "1", "image": "images/6.jpg"})
    for row in rows[:-1]:
        (repo / "images" / f"{row['id']}.jpg").write_bytes(kit.jpeg())
    (repo / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    _check_mathvision(_by_id(_run("mathvision", repo / "data" / "test.jsonl", tmp_path / "o")))
    assert _log(tmp_path / "o", "quarantine.jsonl") == [("6", "missing_image")], "a truly missing image still counts"

    missing_root = ["--image-root", str(tmp_path / "nowhere")]
    assert main(["benchmark", "mathvision", "--input", str(repo), "--output", str(tmp_path / "o2"), *missing_root]) == 2


def test_mathvision_image_root_overrides_the_search(kit, tmp_path: Path) -> None:
    repo = tmp_path / "MATH-V"
    (repo / "data").mkdir(parents=True)
    rows = [{**row, "image": f"images/{row['id']}.jpg"} for row in _mathvision_rows()]
    (repo / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dl" / "images").mkdir(parents=True)
    for row in rows:
        (tmp_path / "dl" / "images" / f"{row['id']}.jpg").write_bytes(kit.jpeg())
    _check_mathvision(_by_id(_run("mathvision", repo / "data", tmp_path / "o", "--image-root", str(tmp_path / "dl"))))


def test_mathverse_empty_image_means_text_only_and_vision_only_gets_a_neutral_instruction(kit, tmp_path: Path) -> None:
    """MathVerse's JSON: `image` is "" in `testmini_text_only.json`; the Vision Only version has an empty `question`
    and a `query_wo` carrying MathVerse's own "directly answer" instruction."""
    data = tmp_path / "MathVerse" / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "1.png").write_bytes(kit.png())
    meta = {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry"}
    text_only = [
        {"sample_index": str(i), "problem_index": str(i), "problem_version": "Text Only",
         "question": f"In triangle ABC angle A = {i}0. Find angle B.\nChoices:\nA:40°\nB:60°", "image": "",
         "answer": "B", "question_type": "multi-choice", "metadata": meta,
         "query_wo": "Please directly answer the question and provide the correct option letter.\nQuestion: ..."}
        for i in (1, 2)
    ]  # fmt: skip
    (data / "testmini_text_only.json").write_text(json.dumps(text_only))
    versions = [
        {**text_only[0], "sample_index": "1", "problem_version": "Text Dominant", "image": "images/1.png"},
        {**text_only[0], "sample_index": "5", "problem_version": "Vision Only", "image": "images/1.png",
         "question": "", "query_wo": "According to the question shown in the image, please directly answer."},
    ]  # fmt: skip
    (data / "testmini.json").write_text(json.dumps(versions))

    out = _by_id(_run("mathverse", data, tmp_path / "o"))
    assert set(out) == {"text_only:1", "text_only:2", "1", "5"}, "Text Only numbering collides with testmini's"
    assert out["text_only:1"]["images"] == [] and "<image>" not in _prompt(out["text_only:1"])
    assert {r["extra_info"]["group"] for r in out.values()} == {"1", "2"}
    vision_only = _prompt(out["5"])
    assert vision_only.startswith(f"<image>\n{VISION_ONLY_QUESTION}") and "directly answer" not in vision_only
    assert _summary(tmp_path / "o")["fixed"] == {"vision_only_instruction": 1}
    assert _score(out["text_only:2"], "B") == 1.0


def test_mathverse_parquet_empty_struct_is_no_image(kit, tmp_path: Path) -> None:
    rows = [
        {"sample_index": "1", "problem_index": "1", "question": "Find x.", "answer": "3", "question_type": "free-form",
         "problem_version": "Text Only", "image": {"bytes": None, "path": None}},
        {"sample_index": "2", "problem_index": "1", "question": "Find x.", "answer": "3", "question_type": "free-form",
         "problem_version": "Text Lite", "image": {"bytes": None, "path": "gone.png"}},
    ]  # fmt: skip
    path = tmp_path / "in" / "testmini.parquet"
    path.parent.mkdir()
    schema = pa.schema([(name, pa.string()) for name in rows[0] if name != "image"] + [("image", IMAGE)])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    assert main(["benchmark", "mathverse", "--input", str(path), "--output", str(tmp_path / "o")]) == 0
    assert _log(tmp_path / "o", "quarantine.jsonl") == [("2", "missing_image")], "a named image that is gone is missing"


def test_mmmu_keeps_every_accepted_answer_and_quarantines_hidden_golds(kit, tmp_path: Path) -> None:
    base = {"options": "[]", "question_type": "open", "image_1": {"bytes": kit.png(), "path": None}}
    rows = [
        {**base, "id": "validation_Finance_7", "question": "<image 1> What is the payback period?",
         "answer": "['3.429', '24/7']"},
        {**base, "id": "test_Finance_1", "question": "<image 1> What is the rate?", "answer": "?"},
        {**base, "id": "validation_Math_2", "question": "<image 1> Which?", "options": "['1', '2']",
         "question_type": "multiple-choice", "answer": "A"},
    ]  # fmt: skip
    for n in range(2, 8):
        for row in rows:
            row[f"image_{n}"] = None
    path = tmp_path / "MMMU" / "Finance" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    out = _by_id(_run("mmmu", tmp_path / "MMMU", tmp_path / "o"))
    assert set(out) == {"validation_Finance_7", "validation_Math_2"}
    payback = out["validation_Finance_7"]
    assert payback["reward_model"]["ground_truth"] == "3.429" and payback["extra_info"]["answers"] == ["3.429", "24/7"]
    assert (_score(payback, "24/7"), _score(payback, "3.429"), _score(payback, "3.5")) == (1.0, 1.0, 0.0)
    assert out["validation_Math_2"]["extra_info"]["answers"] is None
    assert _log(tmp_path / "o", "quarantine.jsonl") == [("test_Finance_1", "hidden_answer")]


def test_mathvista_json_layout_reads_the_queries_beside_it(kit, tmp_path: Path) -> None:
    """MathVista's repository: `data/testmini.json` (an object keyed by pid, no `query`), `data/query.json` with the
    hint-carrying prompts, `data/images/`."""
    data = tmp_path / "MathVista" / "data"
    (data / "images").mkdir(parents=True)
    rows = {}
    for pid in ("1", "2"):
        (data / "images" / f"{pid}.jpg").write_bytes(kit.jpeg())
        rows[pid] = {"question": f"Question {pid}?", "image": f"images/{pid}.jpg", "choices": None, "unit": None,
                     "precision": 1.0, "answer": "1.2", "question_type": "free_form", "answer_type": "float",
                     "pid": pid, "metadata": {"split": "testmini"}}  # fmt: skip
    (data / "testmini.json").write_text(json.dumps(rows))
    hint = "Hint: Please answer the question requiring a floating-point number with one decimal place.\n"
    queries = {pid: f"{hint}Question: Question {pid}?" for pid in ("1", "2", "999")}
    (data / "query.json").write_text(json.dumps(queries))
    out = _by_id(_run("mathvista", data / "testmini.json", tmp_path / "o"))
    assert set(out) == {"1", "2"}
    assert _prompt(out["1"]).startswith(f"<image>\n{hint}Question: Question 1?")
    assert _score(out["2"], "1.23") == 1.0


def test_mmfinereason_ids_numbered_per_source_are_keyed_by_source(kit, tmp_path: Path) -> None:
    """Per-source releases number `id` from 0 within each source: only (source, id) is unique."""
    rows = [kit.mmfr_row(i, id=str(i % 4), source=("MMR1", "BMMR", "ScienceQA")[i // 4]) for i in range(12)]
    rows.append(kit.mmfr_row(12, id="0", source="MMR1"))  # a real duplicate: same source, same id
    kit.write_shard(tmp_path / "raw" / "part.parquet", rows)
    assert main(["mmfinereason", "--input", str(tmp_path / "raw"), "--output", str(tmp_path / "o"), "--val-size",
                 "3"]) == 0  # fmt: skip
    out = _by_id([r for f in sorted((tmp_path / "o").glob("*.parquet")) for r in pq.read_table(f).to_pylist()])
    assert len(out) == 12 and "BMMR:3" in out and "ScienceQA:0" in out
    assert {r["extra_info"]["split"] for r in out.values()} == {"train", "val"}
    assert _log(tmp_path / "o", "quarantine.jsonl") == [("MMR1:0", "duplicate_id")]
    assert _summary(tmp_path / "o")["noted"] == {"id_shared_across_sources": 13}
