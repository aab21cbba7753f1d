"""Benchmark `verifiers` against plain mathruler and plain math-verify on one labelled mix, in one run.

    .venv/bin/python benchmarks/verifiers_bench.py [--pairs 10000] [--batch 2048] [--seed 0] [--skip-math-verify]

The mix is generated here (deterministic per seed): whole model responses (reasoning, then `<answer>`, `\\boxed{}` or
"The final answer is …"), gold answers of every answer type, and a label saying whether the response's answer is
mathematically equal to the gold. Equal forms are produced by known-equal rewrites (unreduced fractions, reordered
sets, expanded polynomials, decimals to 6 places, units added, …); wrong ones by changing a value.

All three graders see the same extracted span (`verifiers.extract.extract_answer`), so the comparison is about
checking, not extraction. Reported: accuracy against the labels per answer type, throughput, p50/p99 latency per
answer (verifiers: one `verify()` call each, symbolic pool included), and the wall time of `compute_score_batch` on
one rollout batch (format check included) with cold caches.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifiers import Item, verify, verify_batch  # noqa: E402
from verifiers.check import _math_form  # noqa: E402
from verifiers.extract import extract_answer  # noqa: E402
from verifiers.parse import parse  # noqa: E402
from verifiers.pool import default_pool  # noqa: E402
from verifiers.reward import compute_score_batch  # noqa: E402

Case = tuple[str, str, str, bool]  # (answer type, gold, predicted span, label)
WORDS = "so we get the area of the triangle then by the theorem it follows that hence compute".split()


def _filler(rng: random.Random, chars: int) -> str:
    """Reasoning-like text with numbers and inline math, as a response body would have."""
    out = []
    while sum(len(w) + 1 for w in out) < chars:
        roll = rng.random()
        if roll < 0.1:
            out.append(f"${rng.randint(2, 99)}\\times {rng.randint(2, 9)} = {rng.randint(10, 999)}$")
        elif roll < 0.2:
            out.append(str(rng.randint(0, 500)))
        else:
            out.append(rng.choice(WORDS))
    return " ".join(out)


def _frac(value: Fraction) -> str:
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _integer(rng: random.Random) -> Case:
    n = rng.randint(-50, 5000)
    if rng.random() < 0.5:
        pred = rng.choice([str(n), f"{n}.0", f"{{{n}}}", f"{n:,}" if abs(n) >= 1000 else f" {n} "])
        return ("integer", str(n), pred, True)
    return ("integer", str(n), str(rng.choice([n + rng.randint(1, 9), -n - 1, n * 10 + 1])), False)


def _decimal(rng: random.Random) -> Case:
    value = Fraction(rng.randint(1, 9999), 100)
    gold = f"{float(value):.2f}"
    if rng.random() < 0.5:
        return ("decimal", gold, rng.choice([gold + "0", _frac(value), f"{value.numerator}/{value.denominator}"]), True)
    return ("decimal", gold, f"{float(value) + rng.choice([0.01, -0.1, 1]):.2f}", False)


def _fraction(rng: random.Random) -> Case:
    value = Fraction(rng.randint(1, 60), rng.randint(2, 97))
    while value.denominator == 1:
        value = Fraction(rng.randint(1, 60), rng.randint(2, 97))
    gold = _frac(value)
    k = rng.randint(2, 6)
    if rng.random() < 0.5:
        pred = rng.choice(
            [
                f"\\dfrac{{{value.numerator * k}}}{{{value.denominator * k}}}",
                f"{value.numerator}/{value.denominator}",
                f"{float(value):.6f}",
                f"\\tfrac{{{value.numerator}}}{{{value.denominator}}}",
            ]
        )
        return ("fraction", gold, pred, True)
    wrong = rng.choice([Fraction(value.denominator, value.numerator), value + Fraction(1, value.denominator)])
    if wrong == value:
        wrong = value + 1
    rounded = f"{float(value):.2f}"
    return (
        "fraction",
        gold,
        _frac(wrong) if Fraction(rounded) == value else rng.choice([_frac(wrong), rounded]),
        False,
    )


def _symbolic(rng: random.Random) -> Case:
    """LaTeX outside the in-process grammar (matrices, \\pm, \\mathbb, floor): these reach the worker pool."""
    a, b, c, d = rng.sample(range(1, 30), 4)
    templates = [
        (
            f"\\begin{{pmatrix}}{a}&{b}\\\\{c}&{d}\\end{{pmatrix}}",
            f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {d} \\end{{pmatrix}}",
            f"\\begin{{pmatrix}}{a}&{b}\\\\{d}&{c}\\end{{pmatrix}}",
        ),
        (f"\\pm {a}", f"-{a}, {a}", f"\\pm {a + 1}"),
        (f"\\lfloor {a}.5 \\rfloor", str(a), str(a + 1)),
        ("\\mathbb{R}", "(-\\infty,\\infty)", "(0,\\infty)"),
    ]
    gold, right, wrong = rng.choice(templates)
    return ("symbolic", gold, right, True) if rng.random() < 0.5 else ("symbolic", gold, wrong, False)


def _expression(rng: random.Random) -> Case:
    a, b, c = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7]), rng.randint(1, 9)
    templates = [
        (f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a + 1}\\sqrt{{{b}}}"),
        (f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi", f"\\frac{{{a}\\pi}}{{{b + 1}}}"),
        (f"x^2+{2 * c}x+{c * c}", f"(x+{c})^2", f"(x+{c + 1})^2"),
        (f"{a}x+{c}", f"{c}+{a}x", f"{a}x-{c}"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", "\\frac{\\sqrt{2}}{2}"),
        (f"2^{{{a}}}", str(2**a), str(2**a + 2)),
        (str(a), f"\\log_2 {2**a}", f"\\log_2 {2 ** (a + 1)}"),
        (f"\\frac{{{a}}}{{x}}", f"{a}x^{{-1}}", f"{a}x"),
    ]
    gold, right, wrong = rng.choice(templates)
    return ("expression", gold, right, True) if rng.random() < 0.5 else ("expression", gold, wrong, False)


def _structured(rng: random.Random) -> Case:
    a, b, c = rng.sample(range(-9, 20), 3)
    lo, hi = sorted((a, b))
    hi += lo == hi
    templates = [
        ("equation", f"y={a}x+{b}", f"y={b}+{a}x", f"y={a}x+{b + 1}"),
        ("equation", f"y={a}x+{b}", f"{a}x-y+{b}=0", f"{a}x+y+{b}=0"),
        ("interval", f"({lo},{hi}]", f"( {lo}, {hi} ]", f"({lo},{hi})"),
        ("interval", f"[{lo},\\infty)", f"x\\ge {lo}", f"x>{lo}"),
        ("set", f"\\{{{a},{b},{c}\\}}", f"\\{{{c},{a},{b}\\}}", f"\\{{{a},{b}\\}}"),
        ("tuple", f"({a},{b})", f"({a}, {b})", f"({b},{a})" if a != b else f"({a},{b + 1})"),
    ]
    kind, gold, right, wrong = rng.choice(templates)
    return (kind, gold, right, True) if rng.random() < 0.5 else (kind, gold, wrong, False)


def _choice(rng: random.Random) -> Case:
    letter = rng.choice("ABCDE")
    if rng.random() < 0.5:
        return ("choice", letter, rng.choice([letter, f"({letter})", f"{letter}. 42", f"\\text{{{letter}}}"]), True)
    return ("choice", letter, rng.choice([c for c in "ABCDE" if c != letter]), False)


def _other(rng: random.Random) -> Case:
    roll = rng.random()
    if roll < 0.3:
        gold = rng.choice(["Yes", "No"])
        same = rng.random() < 0.5
        other = "No" if gold == "Yes" else "Yes"
        return ("yesno", gold, rng.choice([gold.lower(), gold + "."]) if same else other, same)
    if roll < 0.65:
        p = rng.randint(1, 99)
        if rng.random() < 0.5:
            return ("percentage", f"{p}\\%", rng.choice([f"{p}%", str(p), f"{p / 100:g}"]), True)
        return ("percentage", f"{p}\\%", f"{p + 1}\\%", False)
    n = rng.randint(1, 300)
    if rng.random() < 0.5:
        return ("quantity", f"{n}\\text{{ cm}}", rng.choice([str(n), f"{n} cm", f"{n}\\,\\mathrm{{cm}}"]), True)
    return ("quantity", f"{n}\\text{{ cm}}", f"{n + 2} cm", False)


MIX = ((_integer, 0.2), (_decimal, 0.1), (_fraction, 0.17), (_expression, 0.18), (_structured, 0.1))
MIX += ((_choice, 0.17), (_other, 0.06), (_symbolic, 0.02))


def make_mix(pairs: int, seed: int) -> list[tuple[Case, str]]:
    """(case, full response) pairs; response length 0.5 to 4 KB, answer in one of three common shapes."""
    rng = random.Random(seed)
    makers = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    out = []
    for _ in range(pairs):
        case = rng.choices(makers, weights)[0](rng)
        body = _filler(rng, rng.randint(500, 4000))
        shape = rng.random()
        if shape < 0.45:
            response = f"<think>{body}</think>\n<answer>{case[2]}</answer>"
        elif shape < 0.9:
            response = f"{body}\n\nTherefore the answer is $\\boxed{{{case[2]}}}$."
        else:
            response = f"{body}\n\nThe final answer is {case[2]}"
        out.append((case, response))
    return out


def _mathruler() -> Callable[[str, str], bool]:
    from mathruler.grader import grade_answer

    return lambda gold, pred: bool(grade_answer(pred, gold))


def _math_verify() -> Callable[[str, str], bool]:
    from math_verify import parse as mv_parse
    from math_verify import verify as mv_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def check(gold: str, pred: str) -> bool:
        parsed_gold = mv_parse("\\boxed{" + gold + "}")
        return bool(mv_verify(parsed_gold, mv_parse("\\boxed{" + pred + "}")))

    return check


def _timed_baseline(check: Callable[[str, str], bool], mix: list[tuple[Case, str]]) -> tuple[list[bool], list[float]]:
    verdicts, latencies = [], []
    for (_, gold, _, _), response in mix:
        start = time.perf_counter()
        span = extract_answer(response).span
        verdicts.append(bool(span) and check(gold, span))
        latencies.append(time.perf_counter() - start)
    return verdicts, latencies


def _clear_caches() -> None:
    parse.cache_clear()
    _math_form.cache_clear()


def _accuracy_table(mix: list[tuple[Case, str]], columns: dict[str, list[bool]]) -> str:
    per_type: dict[str, list[int]] = defaultdict(lambda: [0] * (len(columns) + 1))
    for i, ((kind, _, _, label), _) in enumerate(mix):
        row = per_type[kind]
        row[0] += 1
        for j, verdicts in enumerate(columns.values()):
            row[j + 1] += verdicts[i] == label
    names = list(columns)
    lines = ["| answer type | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    totals = [0] * (len(names) + 1)
    for kind in sorted(per_type):
        row = per_type[kind]
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        lines.append(f"| {kind} | {row[0]} | " + " | ".join(f"{r / row[0]:.1%}" for r in row[1:]) + " |")
    lines.append(f"| **all** | {totals[0]} | " + " | ".join(f"**{t / totals[0]:.1%}**" for t in totals[1:]) + " |")
    return "\n".join(lines)


def _latency_row(name: str, n: int, total: float, latencies: list[float] | None) -> str:
    if latencies is None:  # a whole-batch call has no per-answer latency
        return f"| {name} | {n / total:,.0f} | – | – | – |"
    q = statistics.quantiles(latencies, n=100)
    return f"| {name} | {n / total:,.0f} | {q[49] * 1e3:.3f} | {q[98] * 1e3:.2f} | {max(latencies) * 1e3:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-math-verify", action="store_true", help="math-verify is the slowest (~30 s per 10k)")
    args = parser.parse_args()

    mix = make_mix(args.pairs, args.seed)
    items = [Item(response, gold, benchmark=None) for (_, gold, _, _), response in mix]
    default_pool().start()  # worker start-up and first-call imports are one-off costs, outside the timed runs
    verify_batch([Item(r, c[1]) for c, r in make_mix(500, args.seed + 100)])

    _clear_caches()
    start = time.perf_counter()
    ours_batch = [r.correct for r in verify_batch(items)]
    ours_batch_s = time.perf_counter() - start

    _clear_caches()
    ours_single, ours_lat = [], []
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        ours_single.append(verify(item.prediction, item.answer).correct)
        ours_lat.append(time.perf_counter() - t0)
    ours_single_s = time.perf_counter() - start
    assert ours_single == ours_batch, "batch and per-answer verdicts differ"

    columns = {"verifiers": ours_batch}
    rows = [_latency_row("verifiers, `verify_batch` (whole mix)", len(mix), ours_batch_s, None)]
    rows.append(_latency_row("verifiers, one `verify()` per answer", len(mix), ours_single_s, ours_lat))
    elapsed_by: dict[str, float] = {}
    baselines = [("mathruler", _mathruler)] + ([] if args.skip_math_verify else [("math-verify", _math_verify)])
    for name, factory in baselines:
        check = factory()
        check("1", "1")  # imports and first-call set-up outside the timing
        start = time.perf_counter()
        verdicts, latencies = _timed_baseline(check, mix)
        elapsed = time.perf_counter() - start
        columns[name] = verdicts
        elapsed_by[name] = elapsed
        rows.append(_latency_row(f"plain {name} (same extraction)", len(mix), elapsed, latencies))

    rng = random.Random(args.seed + 1)
    batch = [rng.choice(mix) for _ in range(args.batch)]
    _clear_caches()
    start = time.perf_counter()
    compute_score_batch(["bench"] * len(batch), [r for _, r in batch], [c[1] for c, _ in batch], None)
    rollout_s = time.perf_counter() - start
    symbolic = sum(r.method in ("mathruler", "math_verify") for r in verify_batch(items))

    print(f"mix: {len(mix)} pairs, seed {args.seed}; {symbolic} reached the symbolic pool\n")
    print(_accuracy_table(mix, columns))
    print("\n| grader | pairs/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    print("\n".join(rows))
    ratios = ", ".join(f"{ours_batch_s and seconds / ours_batch_s:.1f}x {name}" for name, seconds in elapsed_by.items())
    print(f"\nverifiers (verify_batch) throughput vs plain: {ratios}")
    print(f"rollout batch of {len(batch)} responses, compute_score_batch, cold caches: {rollout_s:.3f} s")


if __name__ == "__main__":
    main()
