"""Teacher traces checked for the LUFFY baseline: do they fit the response budget, and are they right?

LUFFY's own traces were filtered for correctness upstream and fit its budget, so every prompt got one. MMFineReason's
teacher responses are long (about 4K tokens on average) and not all of them end in a checkable answer. Per converted
row this command counts the trace's tokens in the training tokenizer (plus the EOS the trainer appends, as injection
counts it) and checks it against the row's ground truth with `verifiers` (the training reward). It reports the share
that fits and verifies, writes every flagged row to `teacher_flags.jsonl`, and, with `--clear`, writes shards whose
flagged traces are removed (the prompt stays and trains on-policy; nothing is dropped).

    python -m data_prep teacher --input DIR --output DIR --tokenizer MODEL --max-response-length 4096 \
        [--clear too_long,unverified]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.difficulty import input_shards
from data_prep.inputs import InputError, parquet_num_rows, parquet_rows
from data_prep.pipeline import Summary, write_manifest
from data_prep.writer import DEFAULT_SHARD_ROWS, ShardWriter, remove_shards
from verifiers.reward import compute_score_batch

FLAGS = ("missing", "too_long", "unverified")
FLAGS_FILE = "teacher_flags.jsonl"
BATCH_ROWS = 256


def trace_flags(
    rows: Sequence[dict[str, Any]], count_tokens: Callable[[list[str]], list[int]], max_response_length: int
) -> list[list[str]]:
    """Per row, which of :data:`FLAGS` its ``extra_info.teacher_response`` has (empty: it fits and verifies)."""
    traces = [(row.get("extra_info") or {}).get("teacher_response") for row in rows]
    present = [i for i, t in enumerate(traces) if isinstance(t, str) and t.strip()]
    flags: list[list[str]] = [["missing"] for _ in rows]
    for i in present:
        flags[i] = []
    if not present:
        return flags
    lengths = count_tokens([traces[i] for i in present])
    scores = compute_score_batch(
        [rows[i]["data_source"] for i in present],
        [traces[i] for i in present],
        [rows[i]["reward_model"]["ground_truth"] for i in present],
        [rows[i]["extra_info"] for i in present],
    )
    for i, length, score in zip(present, lengths, scores, strict=True):
        if length + 1 > max_response_length:  # the EOS the trainer appends
            flags[i].append("too_long")
        if score["acc"] < 1.0:
            flags[i].append("unverified")
    return flags


def tokenizer_counter(path: str) -> Callable[[list[str]], list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_traces(
    input_dir: Path,
    out_dir: Path,
    count_tokens: Callable[[list[str]], list[int]],
    max_response_length: int,
    clear: frozenset[str] = frozenset(),
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> Summary:
    """Flag every row's trace; with ``clear``, write the rows again with the traces of those flags removed."""
    shards = input_shards(input_dir)
    summary = Summary("teacher")
    writers: dict[str, ShardWriter] = {}
    if clear:
        for prefix in {path.name.rsplit("-", 1)[0] for path in shards}:
            remove_shards(out_dir, prefix)
    total = sum(parquet_num_rows(path) for path in shards)
    with open(out_dir / FLAGS_FILE, "w", encoding="utf-8") as log, tqdm(total=total, unit="row") as bar:
        for path in shards:
            prefix = path.name.rsplit("-", 1)[0]
            for rows in parquet_rows(path, batch_size=BATCH_ROWS):
                for row, flags in zip(rows, trace_flags(rows, count_tokens, max_response_length), strict=True):
                    summary.rows_in += 1
                    summary.scoring.update(f"trace_{flag}" for flag in flags)
                    if not flags:
                        summary.scoring["trace_fits_and_verifies"] += 1
                    else:
                        index = row["extra_info"].get("index")
                        log.write(json.dumps({"file": path.name, "index": index, "flags": flags}) + "\n")
                    if clear:
                        if set(flags) & clear:  # clear never holds "missing" (run_teacher refuses it)
                            row["extra_info"]["teacher_response"] = None
                            summary.fixed["trace_cleared"] += 1
                        if prefix not in writers:
                            writers[prefix] = ShardWriter(out_dir, prefix, shard_rows)
                        writers[prefix].write(row)
                bar.update(len(rows))
    for prefix, writer in writers.items():
        summary.files[prefix] = [str(p) for p in writer.close()]
        summary.rows_out[prefix] = writer.rows_written
    return summary


def run_teacher(args: argparse.Namespace) -> Summary:
    """The CLI command."""
    if args.input.resolve() == args.output.resolve():
        raise InputError("--output must differ from --input (the output shards are rebuilt from the input)")
    unknown = args.clear - {"too_long", "unverified"}
    if unknown:
        raise InputError(f"--clear takes too_long and/or unverified, got {sorted(unknown)}")
    start = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    count_tokens = tokenizer_counter(args.tokenizer)
    summary = check_traces(args.input, args.output, count_tokens, args.max_response_length, args.clear, args.shard_rows)
    summary.seconds = time.perf_counter() - start
    usable = summary.scoring["trace_fits_and_verifies"]
    share = usable / summary.rows_in if summary.rows_in else 0.0
    summary.noted[f"traces that fit {args.max_response_length} tokens and verify: {share:.1%}"] = usable
    write_manifest(args.output, summary, {k: v for k, v in vars(args).items() if k != "func"})
    return summary
