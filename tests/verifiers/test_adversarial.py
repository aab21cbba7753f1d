"""Hostile predictions: each ends within the deadline as a wrong answer with a reason, and memory stays bounded.

Nothing here asserts on wall time; a hang would show as `timeout` (the pool's 3 s deadline) or as a test that never
returns, and the allowed reasons say which stage must stop each input: `no_answer` (extraction gives up on a
`\\boxed{}` longer than 20,000 characters), `too_long` (span over 1,000 characters), `unparsable`, or a refusal by the
guard before any sympy work.
"""

from __future__ import annotations

import resource

import pytest

from verifiers import Item, verify_batch

MB = 1_000_000
REFUSED = {"too_complex", "too_deep", "too_long"}


def _nested_frac(depth: int) -> str:
    return "\\frac{1}{" * depth + "2" + "}" * depth


def _nested_log(depth: int) -> str:
    return "\\log_{2^{" * depth + "2" + "}}" * depth + " 8"


ADVERSARIAL = [
    pytest.param("\\boxed{9^{9^{9^9}}}", "5", REFUSED, id="exponent-tower-latex"),
    pytest.param("\\boxed{9**9**9}", "5", REFUSED, id="exponent-tower-python"),
    pytest.param("\\boxed{10^{10^{10}}}", "5", REFUSED, id="power-of-power-of-ten"),
    pytest.param("\\boxed{5^(5^(5^(5^5)))}", "5", REFUSED, id="math-verify-issue-65"),
    pytest.param("\\boxed{2^2^2^2^2^2^2^2}", "5", REFUSED, id="unbraced-tower"),
    pytest.param("\\boxed{7^{123456789}}", "5", REFUSED, id="huge-exponent"),
    pytest.param("\\boxed{(10^{7})!}", "5", REFUSED, id="factorial-of-power"),
    pytest.param("\\boxed{(10^{9})!}", "5", REFUSED, id="factorial-of-billion"),
    pytest.param("\\boxed{((10!)!)!}", "5", REFUSED, id="factorial-tower"),
    pytest.param("\\boxed{100000!}", "5", REFUSED, id="big-factorial"),
    pytest.param("\\boxed{\\binom{10^9}{10^5}}", "5", REFUSED, id="huge-binomial"),
    pytest.param("\\boxed{1/2004!}", "1/2006!", REFUSED, id="math-verify-issue-14-factorials"),
    pytest.param(f"\\boxed{{{_nested_frac(200)}}}", "5", REFUSED, id="frac-nested-200"),
    pytest.param(f"\\boxed{{{_nested_frac(30)}}}", "5", {"not_equivalent"}, id="frac-nested-30-evaluated-exactly"),
    pytest.param(
        "\\boxed{" + "\\sqrt{" * 10_000 + "2" + "}" * 10_000 + "}", "5", {"no_answer"}, id="sqrt-nested-10000"
    ),
    pytest.param("\\boxed{" + "(" * 400 + "5" + ")" * 400 + "}", "6", {"unparsable"}, id="parentheses-nested-400"),
    pytest.param(f"\\boxed{{{_nested_log(25)}}}", "5", REFUSED, id="math-verify-issue-63-nested-log"),
    pytest.param("\\boxed{" + "7" * 100_000 + "}", "5", {"no_answer"}, id="hundred-thousand-digits"),
    pytest.param("\\boxed{" + "7" * 5_000 + "}", "5", {"too_long"}, id="five-thousand-digits"),
    pytest.param("\\boxed{" + "+".join(["1"] * 20_000) + "}", "5", {"no_answer"}, id="sum-of-20000-ones"),
    pytest.param("\\boxed{" + "+".join(["1"] * 2_000) + "}", "5", {"too_long"}, id="sum-of-2000-ones"),
    pytest.param("\\boxed{2^{100000}}", "2^{99999}", REFUSED, id="huge-powers-differ"),
    pytest.param("x " * (MB // 2), "5", {"no_answer"}, id="1mb-text-without-answer"),
    pytest.param("$1$ " * (MB // 4), "5", {"no_answer"}, id="1mb-of-inline-math"),
    pytest.param("\\boxed{" + "1" * MB + "}", "5", {"no_answer"}, id="1mb-inside-boxed"),
    pytest.param("\\boxed{" * (MB // 7), "5", {"no_answer"}, id="1mb-of-unclosed-boxed"),
    pytest.param("{" * MB, "5", {"no_answer"}, id="1mb-of-open-braces"),
    pytest.param("\\boxed{1e10000000}", "5", {"unparsable"}, id="huge-scientific-exponent"),
    pytest.param("<answer>" + "x+" * (MB // 2) + "</answer>", "5", {"too_long"}, id="1mb-inside-answer-tag"),
    pytest.param("\x00" * 10_000, "5", {"no_answer"}, id="nul-bytes-only"),
    pytest.param(b"\xff\xfe\xfd" * 300_000, "5", {"no_answer"}, id="invalid-utf8-1mb"),
    pytest.param("\\boxed{\u202e\ufeff6}", "5", {"unparsable"}, id="bidi-and-bom-characters"),
]


@pytest.mark.parametrize(("prediction", "gold", "reasons"), ADVERSARIAL)
def test_adversarial_prediction_is_wrong_with_a_reason(symbolic_pool, prediction, gold, reasons) -> None:
    (result,) = verify_batch([Item(prediction, gold)], pool=symbolic_pool)
    assert result.correct is False
    assert result.reason in reasons, result


def test_whole_adversarial_batch_at_once_with_bounded_memory(symbolic_pool) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    items = [Item(p.values[0], p.values[1]) for p in ADVERSARIAL] + [Item("\\boxed{\\frac{26}{92}}", "\\frac{13}{46}")]
    results = verify_batch(items, pool=symbolic_pool)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [r.correct for r in results] == [False] * len(ADVERSARIAL) + [True]
    assert growth_mb < 300


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        pytest.param("\\boxed{5\x00}", "5", id="nul-inside-answer"),
        pytest.param(b"\\boxed{5}\xff\xfe\xfd", "5", id="invalid-utf8-after-answer"),
        pytest.param("\\boxed{2^{100000}}", "2^{100000}", id="huge-power-identical"),
        pytest.param("\\boxed{" + "\\sqrt{" * 3 + "256" + "}" * 3 + "}", "2", id="shallow-nesting-still-checked"),
    ],
)
def test_noise_around_a_right_answer_is_still_right(prediction, gold) -> None:
    (result,) = verify_batch([Item(prediction, gold)])
    assert result.correct is True, result


@pytest.mark.slow
def test_hostile_gold_is_bounded_by_the_worker_deadline(symbolic_pool) -> None:
    # Gold answers are trusted and not guarded, so this one reaches sympy, which would run for minutes.
    (result,) = verify_batch([Item("\\boxed{\\sqrt{2}}", "(10**7)!")], pool=symbolic_pool)
    assert (result.correct, result.reason) == (False, "timeout")
