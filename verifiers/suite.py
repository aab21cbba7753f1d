"""`python -m verifiers.suite`: a model on a list of benchmarks, one table per benchmark plus the average, the way the
NPO paper's Table 1 reports it; and several such runs side by side.

    python -m verifiers.suite run --model PATH --name NPO --data-dir DIR [--suite FILE] [--output outputs/suite]
        [evaluate's generation and vLLM options]
    python -m verifiers.suite compare outputs/suite/GRPO outputs/suite/NPO [--output DIR]

`--model` is a Hugging Face folder or a verl checkpoint (`global_step_N` or its `actor` folder): a checkpoint is first
merged into `OUTPUT/NAME/merged_hf` with verl's own merger (`python -m verl.model_merger`, run as a command, so this
package still imports no verl). Every benchmark goes through `verifiers.evaluate` with one generator for the whole
suite, so the run resumes where it stopped: finished benchmarks and answered rows are not generated again. The
suite file (default `verifiers/suites/npo_paper.yaml`) lists each benchmark's column name and data.

`run` writes to `OUTPUT/NAME/`: `BENCHMARK.jsonl` (scored answers), `details.md` (n, correct, accuracy and, for
DynaMath, worst case per benchmark), `table.md` / `table.csv` (the paper's layout: one row, a column per benchmark and
the average) and `summary.json`, which `compare` reads.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from verifiers.evaluate import Protocol, make_generator, resolve_backend, run
from verifiers.jsonl import read_rows
from verifiers.report import summarize, to_markdown
from verifiers.vllm_engine import VLLMOptions, add_vllm_arguments, options_from_args

DEFAULT_SUITE = Path(__file__).with_name("suites") / "npo_paper.yaml"
AVERAGE = "Avg"


@dataclasses.dataclass(frozen=True)
class SuiteBenchmark:
    name: str
    data: str
    split: str = ""
    status: str = ""


def load_suite(path: Path) -> list[SuiteBenchmark]:
    """The benchmarks of a suite file; a missing field or a repeated name names the file and the entry."""
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    entries = raw.get("benchmarks")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: needs a non-empty 'benchmarks' list")
    suite = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("data"):
            raise ValueError(f"{path}: benchmarks[{i}] needs 'name' and 'data', got {entry!r}")
        suite.append(SuiteBenchmark(**{k: str(v) for k, v in entry.items() if k in SuiteBenchmark.__annotations__}))
    names = [b.name for b in suite]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: benchmark names repeat: {names}")
    return suite


def data_files(benchmark: SuiteBenchmark, data_dir: Path) -> list[Path]:
    """The benchmark's parquet files: the path itself, or the parquets in that folder."""
    path = data_dir / benchmark.data
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith(".")) if path.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"benchmark {benchmark.name}: no parquet at {path} (convert it with `python -m data_prep benchmark`)"
        )
    return files


def checkpoint_actor(path: Path) -> Path | None:
    """The actor folder of a verl checkpoint (``global_step_N`` or its ``actor``); None for a Hugging Face folder."""
    if (path / "config.json").is_file():
        return None
    for actor in (path / "actor", path):
        if any(actor.glob("model_world_size_*_rank_*.pt")):
            return actor
    raise FileNotFoundError(f"{path}: neither a Hugging Face model folder (config.json) nor a verl FSDP checkpoint")


def merged_model(path: Path, target: Path) -> Path:
    """A Hugging Face folder for ``path``: itself, or its verl checkpoint merged into ``target`` (once)."""
    actor = checkpoint_actor(path)
    if actor is None:
        return path
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    command = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp"]
    command += ["--local_dir", str(actor), "--target_dir", str(partial)]
    print(f"verifiers.suite: merging {actor} with verl's model merger", file=sys.stderr)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"verl's model merger failed on {actor}:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    os.replace(partial, target)  # a kill before this line merges again; after it, the folder is whole
    return target


class LazyGenerator:
    """Builds the generator at the first batch that needs it (a finished suite reruns without loading a model)."""

    def __init__(self, protocol: Protocol, options: VLLMOptions) -> None:
        self.protocol, self.options, self.inner = protocol, options, None

    def generate(self, samples: list[Any]) -> list[str]:
        self.inner = self.inner or make_generator(self.protocol, self.options)
        return self.inner.generate(samples)

    def close(self) -> None:
        if self.inner is not None and hasattr(self.inner, "close"):
            self.inner.close()


def benchmark_line(name: str, scored: Path) -> dict[str, Any]:
    """The benchmark's `all` line of `verifiers.report`, under the suite's name."""
    table = summarize(row for _, row, _ in read_rows(scored) if row is not None)
    total = table[-1]
    worst_case = table[0]["worst_case"] if len(table) == 2 else None  # one data source: its own line has it
    return {**total, "benchmark": name, "worst_case": worst_case}


def paper_row(label: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the paper's table: accuracy per benchmark and their unweighted mean."""
    row: dict[str, Any] = {"model": label}
    row.update({line["benchmark"]: line["accuracy"] for line in lines})
    row[AVERAGE] = round(sum(line["accuracy"] for line in lines) / len(lines), 2)
    return row


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def write_table(rows: list[dict[str, Any]], columns: list[str], out_dir: Path) -> str:
    """`table.md` and `table.csv` in ``out_dir``; returns the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = ["model", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in header) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "table.md").write_text(markdown)
    with open(out_dir / "table.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[_cell(row.get(c)) for c in header] for row in rows])
    return markdown


def run_suite(args: argparse.Namespace) -> str:
    from tqdm import tqdm

    suite = load_suite(Path(args.suite))
    files = {b.name: data_files(b, Path(args.data_dir)) for b in suite}  # every path checked before a model loads
    out_dir = Path(args.output) / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    model = merged_model(Path(args.model), out_dir / "merged_hf")
    options = options_from_args(args)
    base = Protocol(str(model), "", resolve_backend(args.backend), args.max_new_tokens, args.temperature, args.top_p)
    generator = LazyGenerator(base, options)
    lines = []
    try:
        for benchmark in tqdm(suite, desc="suite", unit="benchmark", file=sys.stderr):
            scored = out_dir / f"{benchmark.name}.jsonl"
            for path in files[benchmark.name]:
                protocol = dataclasses.replace(base, data=str(path))
                run(protocol, scored, args.batch_size, None, args.limit, options, generator=generator)
            lines.append(benchmark_line(benchmark.name, scored))
    finally:
        generator.close()
    (out_dir / "details.md").write_text(to_markdown(lines) + "\n")
    row = paper_row(args.name, lines)
    summary = {"name": args.name, "model": str(args.model), "benchmarks": lines, "row": row}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return write_table([row], [b.name for b in suite] + [AVERAGE], out_dir)


def compare(run_dirs: list[Path], out_dir: Path) -> str:
    """The paper's layout for several runs: a row per run, the first run's benchmark order, `–` where one is missing."""
    summaries = []
    for run_dir in run_dirs:
        path = run_dir / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a finished `verifiers.suite run` folder")
        summaries.append(json.loads(path.read_text()))
    columns: list[str] = []
    for summary in summaries:
        columns += [line["benchmark"] for line in summary["benchmarks"] if line["benchmark"] not in columns]
    return write_table([s["row"] for s in summaries], columns + [AVERAGE], out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifiers.suite", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="evaluate one model on every benchmark of a suite")
    run_cmd.add_argument("--model", required=True, help="Hugging Face folder or verl checkpoint (global_step_N)")
    run_cmd.add_argument("--name", required=True, help="the run's row label and output folder name")
    run_cmd.add_argument("--data-dir", required=True, help="folder holding each benchmark's `data` path")
    run_cmd.add_argument("--suite", default=str(DEFAULT_SUITE), help="suite YAML (default: the NPO paper's)")
    run_cmd.add_argument("--output", default="outputs/suite")
    run_cmd.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto")
    run_cmd.add_argument("--max-new-tokens", type=int, default=4096)
    run_cmd.add_argument("--temperature", type=float, default=0.0)
    run_cmd.add_argument("--top-p", type=float, default=1.0)
    run_cmd.add_argument("--batch-size", type=int, default=64)
    run_cmd.add_argument("--limit", type=int, default=None, help="only the first N rows of each parquet")
    add_vllm_arguments(run_cmd)
    compare_cmd = commands.add_parser("compare", help="finished runs side by side in one table")
    compare_cmd.add_argument("runs", nargs="+", type=Path)
    compare_cmd.add_argument("--output", type=Path, default=Path("outputs/suite/compare"))
    args = parser.parse_args(argv)
    try:
        table = run_suite(args) if args.command == "run" else compare(args.runs, args.output)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"verifiers.suite: {error}", file=sys.stderr)
        return 2
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
