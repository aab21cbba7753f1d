"""Benchmark the MMFineReason conversion: rows/s and peak RSS on generated sets of growing size.

    .venv/bin/python benchmarks/data_prep_bench.py [--sizes 5000,20000] [--workdir DIR] [--keep]

The sets are generated here with the real MMFineReason schema (shards of 2,000 rows in row groups of 100, as the
published shards are laid out): JPEG and PNG images of 96 to 320 px, a 3 KB teacher trace, a caption column the
conversion must skip, and 1% bad rows of every quarantine kind. Each size is converted in a fresh subprocess with the
default settings (validation split of 500, estimated prompt budget of 4096 tokens), which reports its own wall time
and peak RSS (`VmHWM`: unlike `ru_maxrss`, which a child inherits from its parent across fork and exec, it covers
only the converting process). Flat memory means the peak RSS barely moves from the smallest to the largest set.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
SHARD_ROWS, ROW_GROUP = 2000, 100
IMAGE_POOL = 48
SOURCES = ("MMR1", "GameQA-140K", "BMMR", "Euclid30K")
BAD_KINDS = ("corrupt", "missing", "null_answer", "extra_tag", "no_tag", "duplicate")


def _image(rng: random.Random) -> bytes:
    """A chart-like image: shapes and noise, so the codecs do real work."""
    width, height = rng.randint(96, 320), rng.randint(96, 320)
    image = Image.effect_noise((width, height), 40).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x, y = rng.randint(0, width - 20), rng.randint(0, height - 20)
        draw.rectangle((x, y, x + 20, y + 15), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if rng.random() < 0.5 else "PNG")
    return buffer.getvalue()


def _schema() -> pa.Schema:
    return pa.schema(
        [
            ("source", pa.string()),
            ("id", pa.string()),
            ("original_answer", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("qwen3vl_235b_instruct_caption", pa.string()),
            ("qwen3vl_235b_thinking_response", pa.string()),
            ("pass_rate", pa.float64()),
        ]
    )


def _row(i: int, rng: random.Random, pool: list[bytes]) -> dict:
    row = {
        "source": rng.choice(SOURCES),
        "id": f"row-{i}",
        "original_answer": "A worked solution. " * 20,
        "image": {"bytes": pool[i % len(pool)], "path": f"{i}.jpg"},
        "question": f"<image>In the figure, the side AB is {i % 97} cm. What is the area of the triangle ABC?",
        "answer": str(i % 1000),
        "qwen3vl_235b_instruct_caption": "The image shows a triangle with labelled sides. " * 12,
        "qwen3vl_235b_thinking_response": "<think>"
        + "Reasoning about the triangle. " * 100
        + "</think><answer>1</answer>",
        "pass_rate": 0.0,
    }
    if i == 1:
        row["source"] = SOURCES[0]  # the original of every duplicate: rows are keyed by (source, id)
    if i % 100 == 0:  # 1% bad rows, cycling through the kinds
        kind = BAD_KINDS[(i // 100) % len(BAD_KINDS)]
        if kind == "corrupt":
            row["image"] = {"bytes": pool[0][: len(pool[0]) // 2], "path": "cut.jpg"}
        elif kind == "missing":
            row["image"] = None
        elif kind == "null_answer":
            row["answer"] = None
        elif kind == "extra_tag":
            row["question"] = "<image><image>" + row["question"]
        elif kind == "no_tag":
            row["question"] = row["question"].replace("<image>", "")
        else:
            row["id"], row["source"] = "row-1", SOURCES[0]
    return row


def generate(out_dir: Path, rows: int, seed: int = 0) -> Path:
    """`rows` MMFineReason-schema rows in shards of 2,000; deterministic per seed."""
    rng = random.Random(seed)
    pool = [_image(rng) for _ in range(IMAGE_POOL)]
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = _schema()
    for shard, start in enumerate(range(0, rows, SHARD_ROWS)):
        batch = [_row(i, rng, pool) for i in range(start, min(rows, start + SHARD_ROWS))]
        table = pa.Table.from_pylist(batch, schema=schema)
        pq.write_table(table, out_dir / f"train-{shard:05d}.parquet", row_group_size=ROW_GROUP)
    return out_dir


def peak_rss_mb() -> float:
    """This process's own high-water RSS in MB (Linux `VmHWM`)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(input_dir: str, output_dir: str) -> None:
    """Convert in this (fresh) process and print wall time, peak RSS and the summary as JSON."""
    sys.path.insert(0, str(ROOT))
    from data_prep.cli import main

    start = time.perf_counter()
    code = main(["mmfinereason", "--input", input_dir, "--output", output_dir])
    seconds = time.perf_counter() - start
    summary = json.loads((Path(output_dir) / "manifest.json").read_text())["summary"]
    print(json.dumps({"code": code, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "summary": summary}))


def _baseline_rss_mb() -> float:
    """Peak RSS of a process that only imports the conversion (the fixed cost, for reference)."""
    command = [sys.executable, __file__, "--imports-only"]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,20000", help="comma-separated row counts")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--child", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    parser.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.imports_only:
        sys.path.insert(0, str(ROOT))
        import data_prep.cli  # noqa: F401
        import data_prep.mmfinereason  # noqa: F401

        print(peak_rss_mb())
        return
    if args.child:
        child(*args.child)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="data_prep_bench_"))
    results = []
    try:
        for rows in [int(s) for s in args.sizes.split(",")]:
            raw = generate(work / f"raw_{rows}", rows)
            size_mb = sum(p.stat().st_size for p in raw.iterdir()) / 2**20
            command = [sys.executable, __file__, "--child", str(raw), str(work / f"out_{rows}")]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append((rows, size_mb, result))
        baseline = _baseline_rss_mb()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"import-only peak RSS: {baseline:.0f} MB")
    print("| rows | input MB | seconds | rows/s | peak RSS MB | out | quarantined | fixed |")
    print("|---|---|---|---|---|---|---|---|")
    for rows, size_mb, r in results:
        s = r["summary"]
        print(
            f"| {rows} | {size_mb:.0f} | {r['seconds']:.1f} | {rows / r['seconds']:.0f} | {r['peak_rss_mb']:.0f} "
            f"| {s['total_out']} | {sum(s['quarantined'].values())} | {sum(s['fixed'].values())} |"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last[2]["peak_rss_mb"] - first[2]["peak_rss_mb"]
        print(f"peak RSS {first[0]} -> {last[0]} rows: {growth:+.0f} MB for {last[0] / first[0]:.0f}x the rows")


if __name__ == "__main__":
    main()
