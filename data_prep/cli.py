"""`python -m data_prep`: MMFineReason and benchmark conversion into verl's RL parquet, and difficulty filtering.

    python -m data_prep mmfinereason --input DIR_OR_GLOB --output DIR [--pass-rate LO,HI] [--val-size N]
        [--template NAME] [--max-prompt-length N] [--processor PATH] [--exclude-types T1,T2] [--no-teacher]
    python -m data_prep filter --input DIR --model PATH --k 4 --output DIR [--pass-rate LO,HI] [--backend B]
    python -m data_prep benchmark NAME --input PATH --output DIR [--image-root DIR] [--template NAME]
    python -m data_prep teacher --input DIR --output DIR --tokenizer PATH --max-response-length N [--clear FLAGS]

Exit status: 0 when rows were written, 1 when no row survived, 2 for a schema or input error (the message names
the file and the column) or an unreadable path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from data_prep.budget import PromptBudget
from data_prep.inputs import InputError
from data_prep.pipeline import Settings, Summary, convert, write_manifest
from data_prep.templates import DEFAULT_TEMPLATE, TEMPLATES
from data_prep.writer import DEFAULT_SHARD_ROWS
from verifiers.vllm_engine import add_vllm_arguments

DEFAULT_MAX_PROMPT_LENGTH = 4096  # the paper's prompt budget (4096 prompt + 4096 response)


def pass_rate_range(text: str) -> tuple[float, float]:
    """`LO,HI` (inclusive) or a single value; both within [0, 1]."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 0.0 <= parts[0] <= parts[1] <= 1.0:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 <= LO <= HI <= 1, got {text!r}")
    return parts[0], parts[1]


def _types(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def _conversion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, help="output folder for shards and logs")
    parser.add_argument("--template", choices=sorted(TEMPLATES), default=DEFAULT_TEMPLATE)
    parser.add_argument(
        "--max-prompt-length",
        type=int,
        default=DEFAULT_MAX_PROMPT_LENGTH,
        help="quarantine prompts over this many tokens, images included (0: no check)",
    )
    parser.add_argument("--processor", default=None, help="training model folder: exact token counts")
    parser.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS)
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="threads for the row checks (image decoding)"
    )


def _parser() -> argparse.ArgumentParser:
    from data_prep.benchmarks import BENCHMARKS

    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    mm = commands.add_parser("mmfinereason", help="convert MMFineReason shards")
    mm.add_argument("--input", required=True, help="folder, glob or file of MMFineReason parquet shards")
    mm.add_argument("--pass-rate", type=pass_rate_range, default=None, help="keep LO <= pass_rate <= HI")
    mm.add_argument("--val-size", type=int, default=500, help="validation rows (0: no split)")
    mm.add_argument("--seed", type=int, default=0, help="picks the validation rows")
    mm.add_argument("--exclude-types", type=_types, default=frozenset(), help="answer types to leave out, e.g. text")
    mm.add_argument("--no-teacher", action="store_true", help="leave out the 235B teacher trace")
    _conversion_options(mm)

    bench = commands.add_parser("benchmark", help="convert a local copy of an evaluation benchmark")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--input", required=True, help="file, folder or glob (parquet, json, jsonl)")
    bench.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="folder relative image paths start from (default: the data file's folder, then its parents)",
    )
    _conversion_options(bench)

    flt = commands.add_parser("filter", help="score pass rates with a filter model and keep a range")
    flt.add_argument("--input", required=True, type=Path, help="folder of converted shards")
    flt.add_argument("--output", required=True, type=Path)
    flt.add_argument("--model", required=True, help="local model folder (paper: Qwen3-VL-4B-Thinking)")
    flt.add_argument("--k", type=int, default=4, help="samples per question")
    flt.add_argument("--pass-rate", type=pass_rate_range, default=(0.0, 0.0), help="keep LO <= pass rate <= HI")
    flt.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto")
    flt.add_argument("--batch-size", type=int, default=64, help="questions per generation call")
    flt.add_argument("--max-new-tokens", type=int, default=4096)
    flt.add_argument("--temperature", type=float, default=1.0)
    flt.add_argument("--top-p", type=float, default=1.0)
    flt.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS)
    add_vllm_arguments(flt)

    teacher = commands.add_parser("teacher", help="check teacher traces (LUFFY) against the budget and the answer")
    teacher.add_argument("--input", required=True, type=Path, help="folder of converted shards")
    teacher.add_argument("--output", required=True, type=Path, help="report folder (and shards, with --clear)")
    teacher.add_argument("--tokenizer", required=True, help="the training model's folder: its tokenizer counts")
    teacher.add_argument("--max-response-length", type=int, required=True, help="the recipe's data.max_response_length")
    teacher.add_argument(
        "--clear",
        type=lambda text: frozenset(t.strip() for t in text.split(",") if t.strip()),
        default=frozenset(),
        help="too_long and/or unverified: write the shards again with those traces removed (prompts kept)",
    )
    teacher.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS)
    return parser


def _convert(args: argparse.Namespace) -> Summary:
    budget = PromptBudget(args.max_prompt_length, args.processor)
    if args.command == "mmfinereason":
        from data_prep.mmfinereason import MMFineReasonSource

        need_pass_rate = args.pass_rate is not None
        source: Any = MMFineReasonSource(args.input, need_pass_rate=need_pass_rate, teacher=not args.no_teacher)
        settings = Settings(
            args.template,
            budget,
            args.val_size,
            args.seed,
            args.shard_rows,
            args.pass_rate,
            args.exclude_types,
            workers=args.workers,
        )
    else:
        from data_prep.benchmarks import BenchmarkSource

        source = BenchmarkSource(args.name, args.input, args.image_root)
        prefix = source.name.lower()
        settings = Settings(
            args.template, budget, shard_rows=args.shard_rows, prefix=prefix, split="test", workers=args.workers
        )
    summary = convert(source, args.output, settings)
    write_manifest(args.output, summary, {k: v for k, v in vars(args).items() if k != "func"})
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "filter":
            from data_prep.difficulty import run_filter

            summary = run_filter(args)
        elif args.command == "teacher":
            from data_prep.teacher_traces import run_teacher

            summary = run_teacher(args)
        else:
            summary = _convert(args)
    except (InputError, OSError) as exc:  # a schema error, or a path that cannot be read or written
        print(f"data_prep: {exc}", file=sys.stderr)
        return 2
    print(summary.format())
    if summary.total_out == 0 and (args.command != "teacher" or args.clear):
        print("data_prep: no row survived", file=sys.stderr)
        return 1
    return 0
