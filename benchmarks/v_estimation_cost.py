"""What V costs per guide token at the paper's scale: the top-k estimator vs holding full-vocabulary distributions.

    python benchmarks/v_estimation_cost.py [--tokens 4096] [--vocab 151936] [--k 16] [--draws 16] [--repeats 3]

Both methods start from the same two bf16 logit tensors ``(tokens, vocab)`` (one response's logits under the guide
and under the current policy, as verl's forward produces them) and end with V:

* ``full``: the exact Σ_v π_cur² / π_guide with the guide's whole distribution kept per token (what V costs
  without the top-k reduction), computed 64 positions at a time like the top-k path;
* ``topk`` (what the trainer runs, ``npo_ext.topk`` + ``npo_ext.signals``): the guide's top-k ids and log-probs, its
  tail mass and tail draws, the current policy's log-probs on those ids and its own tail mass; positions processed
  64 at a time.

Each method runs in its own process, once to warm up and then timed; its peak memory is the rise of the process's
peak RSS above the resident logits (the peak is reset before each run; glibc is told to map every block of 64 KiB or
more on its own, so freed memory leaves the RSS and it follows live memory). Reported: time and peak per guide
token, bytes kept per token between the guide's pass and the current policy's, and the top-k/full ratios. The
logits are random (seeded): the costs do not depend on their values, and no V value is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from functools import partial
from pathlib import Path

import torch

from npo_ext.signals import TopKScores, chi2_second_moment_topk
from npo_ext.topk import DEFAULT_CHUNK, guide_topk, log_probs_at

ROOT = Path(__file__).resolve().parents[1]
FILL_CHUNK = 256


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def random_logits(tokens: int, vocab: int, seed: int) -> torch.Tensor:
    """bf16 logits filled a chunk of rows at a time, so no float32 copy of the whole tensor ever exists."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.empty(tokens, vocab, dtype=torch.bfloat16)
    for start in range(0, tokens, FILL_CHUNK):
        rows = logits[start : start + FILL_CHUNK]
        rows.copy_(torch.randn(rows.shape, generator=generator) * 3)
    return logits


def full_v(guide: torch.Tensor, current: torch.Tensor) -> int:
    """Exact V with the guide's full distribution kept per token, positions processed as the top-k path does;
    returns the bytes kept per token."""
    guide_lp = torch.empty(guide.shape, dtype=torch.float32)  # what would be kept: vocab float32s per token
    for start in range(0, len(guide), DEFAULT_CHUNK):
        guide_lp[start : start + DEFAULT_CHUNK] = torch.log_softmax(guide[start : start + DEFAULT_CHUNK].float(), -1)
    total = 0.0
    for start in range(0, len(current), DEFAULT_CHUNK):
        current_lp = torch.log_softmax(current[start : start + DEFAULT_CHUNK].float(), -1)
        total += float(torch.exp(2.0 * current_lp - guide_lp[start : start + DEFAULT_CHUNK]).sum(-1).double().sum())
    assert math.isfinite(total / len(guide))
    return guide_lp.element_size() * guide_lp.shape[-1]


def topk_v(guide: torch.Tensor, current: torch.Tensor, k: int, draws: int) -> int:
    """The trainer's top-k V; returns the bytes kept per token."""
    kept = guide_topk(guide, k, draws)  # kept per token: k + draws int64 ids and float32 log-probs, one float32 tail
    ids = torch.cat([kept.ids, kept.draw_ids], -1)
    kept_bytes = (ids.element_size() + kept.log_probs.element_size()) * ids.shape[-1] + kept.tail.element_size()
    values, tail = log_probs_at(current, ids, exclude=k)
    cur = TopKScores(values[:, :k], values[:, k:], tail)
    assert math.isfinite(chi2_second_moment_topk(cur, TopKScores(kept.log_probs, kept.draw_log_probs, kept.tail)))
    return kept_bytes


def measure(
    method: str, tokens: int, vocab: int, k: int, draws: int, repeats: int, queue: multiprocessing.Queue
) -> None:
    """Child process: build the logits, then time the method and record its peak memory above them."""
    guide, current = random_logits(tokens, vocab, 0), random_logits(tokens, vocab, 1)
    method_fn = full_v if method == "full" else partial(topk_v, k=k, draws=draws)
    method_fn(guide, current)  # warm-up: lazy library set-up is not the method's
    seconds, peaks = [], []
    for _ in range(repeats):
        reset_peak_rss()
        before = rss_kib("VmRSS")
        start = time.perf_counter()
        kept = method_fn(guide, current)
        seconds.append(time.perf_counter() - start)
        peaks.append(rss_kib("VmHWM") - before)
    queue.put({"method": method, "kept_bytes_per_token": kept, "s": min(seconds), "peak_kib": max(peaks)})


def run(method: str, args: argparse.Namespace) -> dict:
    # glibc: every allocation of 64 KiB or more is its own mapping, returned to the system when freed, so the RSS
    # follows live memory (by default freed blocks stay resident and a later peak would hide in them)
    os.environ.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    shape = (args.tokens, args.vocab, args.k, args.draws, args.repeats)
    child = context.Process(target=measure, args=(method, *shape, queue))
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"{method} measurement failed with exit code {child.exitcode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="guide tokens (one response of the paper's length)")
    parser.add_argument("--vocab", type=int, default=151936, help="vocabulary (Qwen3-VL's)")
    parser.add_argument("--k", type=int, default=16, help="top-k kept per token (npo.v_topk)")
    parser.add_argument("--draws", type=int, default=16, help="tail draws kept per token (npo.v_tail_draws)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the fastest is reported")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_v" / "results.json")
    args = parser.parse_args()

    results = {method: run(method, args) for method in ("full", "topk")}
    rows = []
    for method, r in results.items():
        rows.append(
            {
                "method": method,
                "us_per_token": r["s"] / args.tokens * 1e6,
                "peak_kib_per_token": r["peak_kib"] / args.tokens,
                "peak_mib": r["peak_kib"] / 1024,
                "kept_bytes_per_token": r["kept_bytes_per_token"],
            }
        )
    full, topk = rows
    columns = ("us_per_token", "peak_mib", "peak_kib_per_token", "kept_bytes_per_token")
    ratios = {key: topk[key] / full[key] for key in columns}
    report = {"tokens": args.tokens, "vocab": args.vocab, "k": args.k, "rows": rows, "topk_over_full": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{args.tokens} guide tokens, vocabulary {args.vocab}, k={args.k}")
    print("| method | µs / token | peak MiB | peak KiB / token | kept bytes / token |\n|---|---|---|---|---|")
    for row in [*rows, {"method": "top-k / full", **ratios}]:
        print(f"| {row['method']} | " + " | ".join(f"{row[key]:.4g}" for key in columns) + " |")


if __name__ == "__main__":
    main()
