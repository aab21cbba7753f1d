"""`python -m data_prep filter`: pass rates from k samples of a filter model, then keep a pass-rate range.

This is the MMFineReason difficulty filter (the paper: Qwen3-VL-4B-Thinking, k = 4; pass rate 0 gives the 123K set)
for data without a pass-rate column. It reads converted shards, generates k answers per question (vLLM on a GPU,
transformers otherwise; both through `verifiers.evaluate`'s generators, imported only here), checks them with
`verifiers`, and writes the same shards with `extra_info.pass_rate` set, keeping `lo <= pass rate <= hi`.

Resuming: every scored batch is appended to `scores.jsonl` (one line per row, in input order) and synced before
the next batch starts. A rerun reads the lines back in step with the input, so rows already scored are never
generated again, and a line cut short by a kill is dropped and re-scored. The output shards are rebuilt from the
input and the scores at the end, so a kill during that step duplicates nothing either. `filter_state.json` records
the model, sampling settings and input files; a rerun with different ones refuses to mix scores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from data_prep.inputs import InputError, parquet_num_rows, parquet_rows
from data_prep.pipeline import Summary, write_manifest
from data_prep.writer import DEFAULT_SHARD_ROWS, ShardWriter, remove_shards
from verifiers import Item, verify_batch
from verifiers.vllm_engine import VLLMOptions, options_from_args

SCORES_FILE = "scores.jsonl"
STATE_FILE = "filter_state.json"
_SLACK = 1e-9


@dataclass(frozen=True)
class FilterConfig:
    """Everything that changes a pass rate; a resumed run must use the same."""

    model: str
    k: int
    backend: str
    max_new_tokens: int
    temperature: float
    top_p: float
    dtype: str = "auto"  # vLLM's weights and activations (bf16 and fp32 answers differ)


class Generator(Protocol):
    """What the filter needs from a generation backend (see `verifiers.evaluate`): one answer per sample."""

    def generate(self, samples: list[Any]) -> list[str]: ...


def make_generator(config: FilterConfig, data: str, vllm_options: VLLMOptions | None = None) -> Generator:
    """`verifiers.evaluate`'s transformers or vLLM generator for the configured backend (vLLM imported lazily)."""
    from verifiers.evaluate import Protocol, make_generator

    protocol = Protocol(config.model, data, config.backend, config.max_new_tokens, config.temperature, config.top_p)
    return make_generator(protocol, vllm_options)


def input_shards(input_dir: Path) -> list[Path]:
    """The converted shards (`prefix-NNNNN.parquet`), in name order."""
    shards = sorted(p for p in input_dir.glob("*-*.parquet") if not p.name.startswith("."))
    if not shards:
        raise FileNotFoundError(f"no converted shards (*-NNNNN.parquet) in {input_dir}")
    return shards


def _rows(shards: list[Path], batch_size: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in shards:
        prefix = path.name.rsplit("-", 1)[0]
        for batch in parquet_rows(path, batch_size=batch_size):
            for row in batch:
                yield prefix, row


def _drop_partial_line(path: Path) -> None:
    """Cut a line a killed run left unfinished, so it is re-scored instead of misread."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)


def _check_state(out_dir: Path, config: FilterConfig, shards: list[Path]) -> None:
    state = {"config": asdict(config), "inputs": [[p.name, p.stat().st_size] for p in shards]}
    path = out_dir / STATE_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != state:
            raise InputError(
                f"{path}: an earlier run used other settings or inputs ({previous}); "
                f"use another --output or delete {SCORES_FILE} and {STATE_FILE} to start over"
            )
    else:
        path.write_text(json.dumps(state, indent=2) + "\n")


def _sample(row: dict[str, Any]) -> Any:
    from verifiers.evaluate import Sample

    images = [image["bytes"] for image in row.get("images") or []]
    return Sample(str(row["extra_info"]["index"]), list(row["prompt"]), images, {})


def _score_batch(rows: list[dict[str, Any]], generator: Generator, k: int, out: Any) -> None:
    samples = [_sample(row) for row in rows for _ in range(k)]
    predictions = generator.generate(samples)
    items = [
        Item.from_fields(prediction, row["reward_model"]["ground_truth"], row["data_source"], row["extra_info"])
        for row, prediction in zip([row for row in rows for _ in range(k)], predictions, strict=True)
    ]
    verdicts = verify_batch(items)
    for i, row in enumerate(rows):
        correct = sum(v.correct for v in verdicts[i * k : (i + 1) * k])
        line = {"index": row["extra_info"]["index"], "id": row["extra_info"]["id"], "correct": correct, "k": k}
        out.write(json.dumps({**line, "pass_rate": correct / k}) + "\n")
    out.flush()
    os.fsync(out.fileno())


def score(
    shards: list[Path],
    out_dir: Path,
    config: FilterConfig,
    generator_factory: Callable[[], Generator],
    batch_size: int = 64,
) -> Counter[str]:
    """Append a score line for every row not yet in `scores.jsonl`; returns counts of `scored` and `resumed` rows."""
    log = out_dir / SCORES_FILE
    _drop_partial_line(log)
    log.touch()
    counts: Counter[str] = Counter()
    generator: Generator | None = None
    pending: list[dict[str, Any]] = []
    total = sum(parquet_num_rows(p) for p in shards)
    with open(log, encoding="utf-8") as previous, open(log, "a", encoding="utf-8") as out:
        earlier: Iterator[str] | None = iter(previous)
        with tqdm(total=total, desc="filter", unit="row", file=sys.stderr) as bar:
            for _, row in _rows(shards, batch_size):
                line = next(earlier, None) if earlier is not None else None
                if line is not None:
                    if json.loads(line)["index"] != row["extra_info"]["index"]:
                        raise InputError(f"{log} does not follow the input order; delete it to start over")
                    counts["resumed"] += 1
                    bar.update(1)
                    continue
                earlier = None  # from here on every line in the log is one this run appends
                pending.append(row)
                if len(pending) == batch_size:
                    generator = generator or generator_factory()
                    _score_batch(pending, generator, config.k, out)
                    counts["scored"] += len(pending)
                    bar.update(len(pending))
                    pending = []
            if pending:
                generator = generator or generator_factory()
                _score_batch(pending, generator, config.k, out)
                counts["scored"] += len(pending)
                bar.update(len(pending))
    if hasattr(generator, "close"):  # data-parallel vLLM engines run in processes of their own
        generator.close()
    return counts


def write_filtered(
    shards: list[Path], out_dir: Path, pass_rate: tuple[float, float], shard_rows: int = DEFAULT_SHARD_ROWS
) -> Summary:
    """Rebuild the output shards from the input and the scores, keeping rows whose pass rate is in range."""
    lo, hi = pass_rate
    summary = Summary("filter")
    writers: dict[str, ShardWriter] = {}
    for prefix in {path.name.rsplit("-", 1)[0] for path in shards}:
        remove_shards(out_dir, prefix)
    with open(out_dir / SCORES_FILE, encoding="utf-8") as scores:
        for prefix, row in _rows(shards, 256):
            summary.rows_in += 1
            line = next(scores, None)
            if line is None:
                raise InputError(f"{out_dir / SCORES_FILE} has fewer lines than the input has rows")
            rate = json.loads(line)["pass_rate"]
            summary.scoring[f"pass_rate={rate:.2f}"] += 1
            if not lo - _SLACK <= rate <= hi + _SLACK:
                summary.filtered["pass_rate_out_of_range"] += 1
                continue
            if prefix not in writers:
                writers[prefix] = ShardWriter(out_dir, prefix, shard_rows)
            row["extra_info"]["pass_rate"] = rate
            writers[prefix].write(row)
    for prefix, writer in writers.items():
        files = writer.close()
        summary.rows_out[prefix] = writer.rows_written
        summary.files[prefix] = [str(p) for p in files]
    return summary


def run_filter(args: argparse.Namespace) -> Summary:
    """The CLI command: score what is missing, then write the kept rows and the manifest."""
    from verifiers.evaluate import resolve_backend

    start = time.perf_counter()
    if args.input.resolve() == args.output.resolve():
        raise InputError("--output must differ from --input (the output shards are rebuilt from the input)")
    shards = input_shards(args.input)
    args.output.mkdir(parents=True, exist_ok=True)
    backend = resolve_backend(args.backend)
    options = options_from_args(args)
    config = FilterConfig(
        args.model,
        args.k,
        backend,
        args.max_new_tokens,
        args.temperature,
        args.top_p,
        options.dtype if backend == "vllm" else "auto",
    )
    _check_state(args.output, config, shards)
    factory = functools.partial(make_generator, config, str(args.input), options)  # built on first use
    counts = score(shards, args.output, config, factory, args.batch_size)
    summary = write_filtered(shards, args.output, args.pass_rate, args.shard_rows)
    summary.scoring.update(counts)
    summary.seconds = time.perf_counter() - start
    write_manifest(args.output, summary, vars(args))
    return summary
