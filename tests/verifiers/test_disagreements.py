"""Pairs on which mathruler and math-verify disagree, with the verdict `verifiers` gives and why.

Each row records what mathruler 0.1.0 and math-verify 0.9.0 answer today (so a library upgrade that changes them
shows up here) and the verdict `verifiers` must give. Both libraries are called on the extracted span, gold first,
exactly as `verifiers.worker` calls them.
"""

from __future__ import annotations

import importlib.util

import pytest

from verifiers import verify

# (gold, prediction, mathruler, math-verify, verifiers)
DISAGREEMENTS = [
    pytest.param("\\frac{13}{46}", "\\dfrac{26}{92}", False, True, True, id="unreduced-fraction"),
    pytest.param("\\frac{1}{2}", "\\frac{2}{4}", False, True, True, id="unreduced-half"),
    pytest.param("\\frac{1}{3}", "0.333333", False, True, True, id="six-decimal-approximation"),
    pytest.param("\\{1,2,3\\}", "\\{3,2,1\\}", False, True, True, id="set-order"),
    pytest.param("3", "\\log_2 8", False, True, True, id="logarithm-value"),
    pytest.param("100", "10^2", False, True, True, id="integer-as-power"),
    pytest.param("1024", "2^{10}", False, True, True, id="integer-as-braced-power"),
    pytest.param("24", "4!", False, True, True, id="factorial-value"),
    pytest.param("10", "\\binom{5}{2}", False, True, True, id="binomial-value"),
    pytest.param("y=2x+1", "2x-y+1=0", False, True, True, id="line-general-form"),
    pytest.param("x+y=1", "2x+2y=2", False, True, True, id="line-scaled"),
    pytest.param("e", "2.718281828", False, True, True, id="euler-decimal"),
    pytest.param("\\sqrt{2}", "1.414214", False, True, True, id="root-decimal"),
    pytest.param("\\dfrac{\\sqrt{5}-1}{2}", "0.618034", False, True, True, id="golden-ratio-decimal"),
    pytest.param("\\frac{31}{4}", "7 3/4", True, False, True, id="plain-mixed-number"),
    pytest.param("2", "2.0000001", True, False, True, id="integer-within-six-places"),
    pytest.param("1e3", "1000", True, False, True, id="scientific-gold"),
    # math-verify's known false positive (issue #14); refused here before any sympy work.
    pytest.param("1/2006!", "1/2004!", False, True, False, id="huge-factorials"),
]

# Pairs both libraries reject but `verifiers` accepts, by a documented rule.
LENIENT = [
    pytest.param("0.5", "50\\%", False, False, True, id="percent-as-ratio"),
    pytest.param("[2,\\infty)", "x\\ge 2", False, False, True, id="interval-as-inequality"),
    pytest.param("3000000", "3 million", False, False, True, id="scale-word"),
]


def _math_verify(gold: str, pred: str) -> bool:
    from math_verify import parse
    from math_verify import verify as mv_verify

    parsed_gold = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    parsed_pred = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    return bool(parsed_gold) and bool(parsed_pred) and bool(mv_verify(parsed_gold, parsed_pred, timeout_seconds=None))


@pytest.mark.parametrize(("gold", "pred", "mathruler", "math_verify", "ours"), DISAGREEMENTS + LENIENT)
def test_recorded_verdicts(gold: str, pred: str, mathruler: bool, math_verify: bool, ours: bool) -> None:
    from mathruler.grader import grade_answer

    assert bool(grade_answer(pred, gold)) is mathruler
    if importlib.util.find_spec("math_verify") is not None:
        assert _math_verify(gold, pred) is math_verify
    assert verify(f"\\boxed{{{pred}}}", gold).correct is ours


def test_the_two_libraries_really_disagree_on_every_listed_pair() -> None:
    assert all(p.values[2] != p.values[3] for p in DISAGREEMENTS)
