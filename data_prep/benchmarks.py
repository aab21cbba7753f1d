"""Evaluation benchmarks from local copies (nothing is downloaded) as conversion sources.

Accepted layouts, as their publishers distribute them (parquet, JSON or JSON lines; images embedded as
{bytes, path} structs or as paths relative to the data file):

- `mathvista`: `pid`/`id`, `query` (else `question` + `choices`), `decoded_image`/`image`, `answer`, `choices`,
  `question_type`, `answer_type`, `precision`;
- `mathverse`: `sample_index`, `question` (else `query_wo`), `image` (null in the text-only version), `answer`,
  `question_type`, `problem_index`;
- `mathvision`: `id`, `question` (with `<image1>` tags), `options`, `decoded_image`/`image`, `answer`;
- `wemath`: `ID`/`id`, `question`, `option` ("A. ...; B. ..."), `image_path`/`image`, `answer`;
- `logicvista`: the repository's `dataset.json` (an object keyed by id), `imagename` (under `images/`), `question`,
  `answer`;
- `dynamath`: `id`, `question`, `decoded_image`/`image`, `ground_truth`, `answer_type`; the variant from the file
  name (`sample_variant3-...`), since the ten variants share their seed question's id;
- `mmmu`: `id`, `question` (with `<image N>` tags), `options` (a list or its string form), `image_1`..`image_7`,
  `answer`, `question_type`.

Answer types and option texts go into `extra_info` for the verifier; `benchmark` picks its matching rule.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.images import image_bytes, is_empty_image, search_bases
from data_prep.inputs import (
    DATA_SUFFIXES,
    InputError,
    SchemaError,
    json_rows,
    parquet_num_rows,
    parquet_rows,
    parquet_schema,
    resolve,
)
from data_prep.record import Record
from verifiers.chat import IMAGE_TAG
from verifiers.choice import LETTERS

_NUMBERED_TAG = re.compile(r"<image[\s_]*(\d+)>", re.IGNORECASE)
_OPTION_SPLIT = re.compile(r"(?:^|;|\n)\s*([A-J])\s*[.:：．]\s*")
_VARIANT = re.compile(r"(?:variant|sample)[_-]?(\d+)", re.IGNORECASE)
_LABEL = re.compile(r"\(?([A-Ja-j])[.)]?")
DYNAMATH_TOLERANCE = 1e-3
MATHVISTA_QUERIES = "query.json"
VISION_ONLY_QUESTION = "Answer the question shown in the image."
VISION_ONLY_FIX = "vision_only_instruction"
TEXT_ONLY_PREFIX = "text_only:"
OPTIONS_UNPARSED = "options_unparsed"


@dataclass(frozen=True)
class Row:
    """Where a raw row came from (file, row number, global index), and where its relative image paths are looked up."""

    path: Path
    number: int
    index: int
    bases: tuple[Path, ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.path.name}:{self.number}"


def first(raw: dict[str, Any], *names: str) -> Any:
    """The first non-null, non-empty value among `names`."""
    for name in names:
        value = raw.get(name)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def place_images(text: str, images: dict[int, bytes | None]) -> tuple[str, list[bytes | None]]:
    """`<image N>`-style tags become `<image>` with the images in tag order (repeats included); images no tag
    names go first. Text without numbered tags gets one leading `<image>` per image unless it already has tags."""
    numbers = [int(m.group(1)) for m in _NUMBERED_TAG.finditer(text)]
    if numbers:
        unnamed = [n for n, data in sorted(images.items()) if n not in numbers and data is not None]
        placed = [images[n] for n in unnamed] + [images.get(n) for n in numbers]
        return IMAGE_TAG * len(unnamed) + _NUMBERED_TAG.sub(IMAGE_TAG, text), placed
    ordered = [data for _, data in sorted(images.items())]
    if IMAGE_TAG in text or not ordered:
        return text, ordered
    return IMAGE_TAG * len(ordered) + "\n" + text, ordered


def options_block(choices: Sequence[str]) -> str:
    """The options appended to a question: one `A. text` line each (the verifier's letters, A to J)."""
    return "\nOptions:\n" + "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, choices, strict=False))


def parse_option_string(text: str | None) -> list[str] | None:
    """`"A. 60°; B. 70°"` or a newline-separated list as option texts, in letter order; None when not lettered."""
    if not text:
        return None
    parts = _OPTION_SPLIT.split(text)
    letters, texts = parts[1::2], [p.strip() for p in parts[2::2]]
    if not letters or "".join(letters) != LETTERS[: len(letters)]:
        return None
    return texts


def parse_options(value: Any) -> list[str] | None:
    """Options stored as a list, or as the string form of a Python list (MMMU); empty means none."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # hostile strings stay harmless
            return None
    if isinstance(value, list | tuple) and value:
        return [str(v) for v in value]
    return None


def _precision(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _image(raw: dict[str, Any], row: Row, *names: str) -> bytes | None:
    return image_bytes(first(raw, *names), row.bases)


def _fields(
    row_id: Any, question: str | None, images: dict[int, bytes | None], answer: Any, **extra: Any
) -> dict[str, Any]:
    """Record fields common to every benchmark, with the images placed where the question's tags name them."""
    placed: list[bytes | None] = []
    if question is not None:
        question, placed = place_images(question, images)
    return {"id": _text(row_id), "question": question, "images": placed, "answer": _text(answer), **extra}


@functools.lru_cache(maxsize=8)
def _sidecar_queries(folder: Path) -> dict[str, str]:
    """MathVista's GitHub layout keeps the prompts (hint + question + choices) in `query.json` beside `testmini.json`,
    keyed by pid; the parquet layout has them in a `query` column."""
    path = folder / MATHVISTA_QUERIES
    if not path.is_file():
        return {}
    try:
        queries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(path, "(file)", f"not JSON ({exc.msg})") from exc
    if not isinstance(queries, dict):
        raise SchemaError(path, "(file)", "expected an object of pid -> query")
    return {str(pid): str(query) for pid, query in queries.items()}


def _mathvista(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    choices = parse_options(raw.get("choices"))
    pid = first(raw, "pid", "id", "_key")
    question = _text(raw.get("query")) or _sidecar_queries(row.path.parent).get(str(pid))
    if not question and raw.get("question"):
        question = str(raw["question"]) + (options_block(choices) if choices else "")
    declared = "multi_choice" if raw.get("question_type") == "multi_choice" else _text(raw.get("answer_type"))
    image = _image(raw, row, "decoded_image", "image")
    return _fields(
        pid,
        question,
        {1: image},
        raw.get("answer"),
        choices=choices,
        answer_type=declared,
        precision=_precision(raw.get("precision")),
    )


def _mathverse(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    image = raw.get("image")
    text_only = is_empty_image(image)  # null, "" or an empty struct: the Text Only version, not a missing image
    images = {} if text_only else {1: image_bytes(image, row.bases)}
    declared = "choice" if raw.get("question_type") == "multi-choice" else None
    question, fixes = _text(raw.get("question")), []
    if not (question or "").strip() and not text_only:
        # Vision Only: the whole question is in the image. `query_wo`/`query_cot` would add MathVerse's own answer
        # instruction, which contradicts the chosen template, so the prompt gets a neutral one.
        question, fixes = VISION_ONLY_QUESTION, [VISION_ONLY_FIX]
    sample = _text(raw.get("sample_index"))
    version = _text(raw.get("problem_version")) or ""
    # The Text Only file numbers its samples 1..788 again, colliding with testmini's 3,940 when both are converted.
    row_id = f"{TEXT_ONLY_PREFIX}{sample}" if sample and version.lower() == "text only" else sample
    fields = _fields(row_id, question, images, raw.get("answer"), answer_type=declared)
    return {**fields, "group": _text(raw.get("problem_index")), "fixes": fixes}


def tags_as_text(text: str) -> str:
    """`<imageN>` tags as plain text (`(image N)`), for a problem whose pictures are parts of one composite image."""
    return _NUMBERED_TAG.sub(lambda m: f"(image {m.group(1)})", text)


def single_image_question(text: str) -> str:
    """The question with one `<image>`: the first numbered tag becomes it, the other tags become text (MathVision
    names `<image1>`…`<image7>` but ships one composite image per problem). Untagged text gets a leading `<image>`."""
    first_tag = _NUMBERED_TAG.search(text)
    if first_tag is None:
        return text if IMAGE_TAG in text else IMAGE_TAG + "\n" + text
    return text[: first_tag.start()] + IMAGE_TAG + tags_as_text(text[first_tag.end() :])


def options_are_labels(choices: Sequence[str]) -> bool:
    """True when each option is only its own letter (`A`, `(A)`, `A)`, `a`): the options are drawn in the image."""
    labels = [_LABEL.fullmatch(c.strip()) for c in choices]
    return all(m is not None and m.group(1).upper() == letter for m, letter in zip(labels, LETTERS, strict=False))


def _mathvision(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    choices = parse_options(raw.get("options"))
    question = _text(raw.get("question"))
    if choices and options_are_labels(choices):
        block, choices = "\nOptions: " + ", ".join(LETTERS[: len(choices)]), None  # no "A. A" lines
    else:
        choices = [tags_as_text(c) for c in choices] if choices else None
        block = options_block(choices) if choices else ""
    return {
        "id": _text(raw.get("id")),
        "question": None if question is None else single_image_question(question) + block,
        "images": [_image(raw, row, "decoded_image", "image")],
        "answer": _text(raw.get("answer")),
        "choices": choices,
        "answer_type": "choice" if block else None,
    }


def _wemath(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    option = _text(raw.get("option"))
    question = _text(raw.get("question"))
    if question and option:
        question += "\nOptions: " + option
    image = _image(raw, row, "image_path", "image")
    choices = parse_option_string(option)
    problem, step = _text(first(raw, "ID", "id")), _text(raw.get("key"))
    # `ID` names a problem; its sub-steps (`key`) share it, and WeMath's four-way scores need every sub-step.
    row_id = f"{problem}:{step}" if problem and step else problem
    fields = _fields(row_id, question, {1: image}, raw.get("answer"), choices=choices, answer_type="choice")
    # An option string that does not split into A, B, C… stays in the prompt as written; the gold is a letter.
    notes = [OPTIONS_UNPARSED] if option and choices is None else []
    return {**fields, "group": problem, "notes": notes}


def _logicvista(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    name = first(raw, "imagename", "image")
    image = image_bytes(name, row.bases) or (
        image_bytes(f"images/{name}", row.bases) if isinstance(name, str) else None
    )
    question = _text(raw.get("question"))
    return _fields(first(raw, "_key", "id"), question, {1: image}, raw.get("answer"), multi_letter=True)


def _dynamath(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    seed_id = _text(raw.get("id"))
    match = _VARIANT.search(row.path.stem)
    variant = first(raw, "variant") or (match.group(1) if match else row.path.stem)
    declared = _text(raw.get("answer_type"))
    image = _image(raw, row, "decoded_image", "image")
    return _fields(
        None if seed_id is None else f"{seed_id}_v{variant}",  # the 10 variants share the seed's id
        _text(raw.get("question")),
        {1: image},
        raw.get("ground_truth"),
        answer_type=declared,
        group=seed_id,
        tolerance=DYNAMATH_TOLERANCE if (declared or "").lower() == "float" else None,
    )


def _mmmu(raw: dict[str, Any], row: Row) -> dict[str, Any]:
    choices = parse_options(raw.get("options"))
    multiple_choice = raw.get("question_type") == "multiple-choice" and bool(choices)
    question = _text(raw.get("question"))
    if question and multiple_choice:
        question += options_block(choices)
    images = {n: image_bytes(raw.get(f"image_{n}"), row.bases) for n in range(1, 8) if raw.get(f"image_{n}")}
    answer = raw.get("answer")
    accepted = parse_options(answer) if isinstance(answer, str) and answer.startswith("[") else None
    return _fields(
        raw.get("id"),
        question,
        images,
        accepted[0] if accepted else answer,
        answers=accepted if accepted and len(accepted) > 1 else None,  # open answers may accept several forms
        choices=choices if multiple_choice else None,
        answer_type="choice" if multiple_choice else None,
    )


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's display name (also `data_source` and the verifier's rule key), columns and row adapter."""

    name: str
    ability: str
    required: tuple[tuple[str, ...], ...]
    adapt: Callable[[dict[str, Any], Row], dict[str, Any]]


BENCHMARKS = {
    "mathvista": Benchmark(
        "MathVista",
        "math",
        (("pid", "id"), ("query", "question"), ("answer",), ("decoded_image", "image")),
        _mathvista,
    ),
    "mathverse": Benchmark(
        "MathVerse", "math", (("sample_index",), ("question", "query_wo", "query_cot"), ("answer",)), _mathverse
    ),
    "mathvision": Benchmark(
        "MathVision", "math", (("id",), ("question",), ("answer",), ("decoded_image", "image")), _mathvision
    ),
    "wemath": Benchmark("WeMath", "math", (("ID", "id"), ("question",), ("answer",), ("image_path", "image")), _wemath),
    "logicvista": Benchmark(
        "LogicVista", "logic", (("_key", "id"), ("question",), ("answer",), ("imagename", "image")), _logicvista
    ),
    "dynamath": Benchmark(
        "DynaMath", "math", (("id",), ("question",), ("ground_truth",), ("decoded_image", "image")), _dynamath
    ),
    "mmmu": Benchmark("MMMU", "multidisciplinary", (("id",), ("question",), ("answer",), ("image_1",)), _mmmu),
}


class BenchmarkSource:
    """One benchmark's files as `Record`s; every file's columns are checked before any row is read.

    Relative image paths are looked up under `image_root` (when given), then the data file's folder and its parents.
    """

    def __init__(self, key: str, spec: str | Path, image_root: Path | None = None) -> None:
        self.benchmark = BENCHMARKS[key]
        self.name = self.benchmark.name
        self.files = resolve(spec, DATA_SUFFIXES)
        if image_root is not None and not image_root.is_dir():
            raise InputError(f"--image-root {image_root}: not a folder")
        self.image_root = image_root
        self.notes: Counter[str] = Counter()
        self.total = 0
        for path in self.files:
            columns, count = self._columns(path)
            for group in self.benchmark.required:
                if not any(name in columns for name in group):
                    also = f" (or {', '.join(group[1:])})" if len(group) > 1 else ""
                    raise SchemaError(path, group[0], f"missing required column{also} for {self.name}")
            self.total += count

    @staticmethod
    def _columns(path: Path) -> tuple[set[str], int]:
        if path.suffix == ".parquet":
            return set(parquet_schema(path).names), parquet_num_rows(path)
        rows = json_rows(path)
        return set().union(*(row.keys() for row in rows)), len(rows)

    def _raw_rows(self) -> Iterator[tuple[dict[str, Any], Row]]:
        index = 0
        for path in self.files:
            bases = tuple(search_bases(path, self.image_root))
            batches = parquet_rows(path) if path.suffix == ".parquet" else [json_rows(path)]
            number = 0
            for batch in batches:
                for raw in batch:
                    yield raw, Row(path, number, index, bases)
                    number += 1
                    index += 1

    def ids(self) -> Iterator[str | None]:
        for raw, row in self._raw_rows():
            yield self.benchmark.adapt(raw, row)["id"]

    def records(self) -> Iterator[Record]:
        for raw, row in self._raw_rows():
            fields = self.benchmark.adapt(raw, row)
            yield Record(
                index=row.index,
                origin=row.origin,
                data_source=self.name,
                ability=self.benchmark.ability,
                benchmark=self.name,
                **fields,
            )
