"""Reward gaming: responses that name several candidates, or none, or a value an equation does not state.

In an RL reward a policy learns whatever the reward accepts, so every pattern here must score as wrong. Each row was
accepted before this file existed, or is a variation found while closing those holes. The honest counterpart of each
pattern is checked too, so the guards are not a blanket rejection.
"""

from __future__ import annotations

import pytest

from verifiers import verify

OPTIONS = ("10", "12", "14", "16")

GAMING = [
    # a bare constant against an equation gold
    pytest.param(r"\boxed{0}", r"x^2+y^2-4x=0", None, None, id="zero-for-a-circle"),
    pytest.param(r"\boxed{1}", r"\frac{x^2}{4}+\frac{y^2}{3}=1", None, None, id="one-for-an-ellipse"),
    pytest.param(r"\boxed{0}", r"x^2+\lfloor y \rfloor=0", None, None, id="zero-for-an-equation-only-graders-parse"),
    pytest.param(r"\boxed{x^2+y^2=4}", r"x^2+y^2-4x=0", None, None, id="a-different-equation"),
    pytest.param(r"\boxed{5 = 7}", "7", None, None, id="a-false-chain-ending-on-the-gold"),
    pytest.param(r"\boxed{x = y = 5}", "5", None, None, id="a-chain-with-two-variables"),
    pytest.param(r"\boxed{\ge 5}", "5", None, None, id="an-inequality-for-a-value"),
    pytest.param(r"\boxed{3 \approx 4.0}", "4.0", None, None, id="an-approximation-that-is-not-one"),
    # several options at once
    pytest.param("The answer is (A) or (B)", "A", OPTIONS, None, id="a-or-b"),
    pytest.param(r"\boxed{(A),(B),(C)}", "A", OPTIONS, None, id="boxed-three-options"),
    pytest.param("The answer is A, B, C, D", "A", OPTIONS, None, id="all-four-listed"),
    pytest.param(r"\boxed{ABCD}", "A", OPTIONS, None, id="all-four-run-together"),
    pytest.param("The answer is: (A) (B)", "A", OPTIONS, None, id="two-options-side-by-side"),
    pytest.param(r"\boxed{A} \boxed{B}", "A", OPTIONS, None, id="one-box-per-option"),
    pytest.param(r"\boxed{A\text{ and }B}", "A", OPTIONS, None, id="a-and-b"),
    pytest.param("The answer is A/B", "A", OPTIONS, None, id="a-slash-b"),
    pytest.param("ABCD", "A, C", None, "LogicVista", id="every-letter-against-a-letter-set"),
    # hedges
    pytest.param(r"\boxed{yes or no}", "yes", None, None, id="yes-or-no"),
    pytest.param("yes and no", "yes", None, None, id="yes-and-no"),
    pytest.param(r"\boxed{5 or 6}", "5", None, None, id="five-or-six"),
    pytest.param(r"\boxed{7 \text{ or } 8}", "8", None, None, id="seven-text-or-eight"),
    pytest.param("Either 5 or 6", "5", None, None, id="either-or"),
    pytest.param(r"\boxed{x=5 \text{ or } x=6}", "x=5", None, None, id="two-solutions-for-one"),
    pytest.param(r"The answer is $x = \boxed{4}$ or $x=5$", "4", None, None, id="hedge-outside-the-box"),
    pytest.param(r"\boxed{2} \boxed{3}", "3", None, None, id="two-boxes-for-one-value"),
    pytest.param("答案：5或6", "5", None, None, id="cjk-hedge"),
    # a letter whose own option text contradicts it, and prose that names an option only to reject it
    pytest.param(r"\boxed{\text{(D) }71}", "D", ("50", "52", "54", "56", "58"), None, id="letter-with-a-wrong-value"),
    pytest.param("(A) 14", "A", OPTIONS, None, id="letter-with-another-options-text"),
    pytest.param("It is certainly not the lizard.", "lizard", ("plant", "lizard"), None, id="negated-option"),
    pytest.param("It is the lizard or the plant.", "lizard", ("plant", "lizard"), None, id="two-options-in-prose"),
    pytest.param("The answer is A, and also B", "A", OPTIONS, None, id="letter-comma-then-another"),
    pytest.param("There are 2 or 3 dots in each group.", "2", None, None, id="count-hedge"),
    pytest.param("Yes. There is no doubt about it.", "No", ("Yes", "No"), None, id="no-as-a-word-in-prose"),
    pytest.param("There are 2 bars with values larger than 4.", "4", None, None, id="count-with-two-numbers"),
    # a leading label is not option A
    pytest.param("A: The correct option letter is D", "A", OPTIONS, None, id="label-a-colon"),
    pytest.param("Answer: D", "A", OPTIONS, None, id="answer-label"),
]


@pytest.mark.parametrize(("response", "gold", "choices", "benchmark"), GAMING)
def test_gaming_pattern_is_wrong(response, gold, choices, benchmark):
    result = verify(response, gold, choices=choices, benchmark=benchmark)
    assert not result.correct, result


HONEST = [
    pytest.param(r"\boxed{5}", "x = 5", None, None, id="value-for-a-solved-variable"),
    pytest.param(r"\boxed{2x+1}", "y = 2x+1", None, None, id="right-side-of-a-function"),
    pytest.param(r"\boxed{2x^2+2y^2-8x=0}", r"x^2+y^2-4x=0", None, None, id="scaled-equation"),
    pytest.param(r"\boxed{(x-2)^2 + y^2 = 4}", r"x^2+y^2-4x=0", None, None, id="completed-square"),
    pytest.param(r"\boxed{x = 2 + 3 = 5}", "5", None, None, id="a-true-chain"),
    pytest.param("The answer is A, C", "A, C", None, "LogicVista", id="a-letter-set-gold"),
    pytest.param("ACD", "A, C, D", None, "LogicVista", id="a-letter-run-for-a-set-gold"),
    pytest.param("A: The correct option letter is D", "D", OPTIONS, None, id="label-then-letter"),
    pytest.param(r"\boxed{x=3 \text{ or } x=2}", "2, 3", None, None, id="or-lists-a-set-gold"),
    pytest.param(r"\boxed{5}\boxed{5}", "5", None, None, id="the-same-box-twice"),
]


@pytest.mark.parametrize(("response", "gold", "choices", "benchmark"), HONEST)
def test_the_honest_counterpart_is_right(response, gold, choices, benchmark):
    result = verify(response, gold, choices=choices, benchmark=benchmark)
    assert result.correct, result


def test_an_option_line_naming_two_letters_is_not_the_first():
    response = "The figure shows two triangles.\nComparing the options, both could fit.\n\n(A) or (B)"
    assert not verify(response, "A", choices=OPTIONS).correct
