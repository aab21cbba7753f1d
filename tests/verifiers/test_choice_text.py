"""Multiple choice, yes/no and free text."""

from __future__ import annotations

import pytest

from verifiers import verify

CHOICES = ["10", "12", "\\frac{1}{2}", "a right triangle"]


@pytest.mark.parametrize(
    ("gold", "response", "expected"),
    [
        pytest.param("C", "<answer>C</answer>", True, id="bare-letter"),
        pytest.param("C", "\\boxed{(C)}", True, id="parenthesised"),
        pytest.param("C", "\\boxed{\\text{C}}", True, id="text-wrapped"),
        pytest.param("C", "The correct answer is C. 45", True, id="letter-then-option-text"),
        pytest.param("C", "<answer>(C) 45°</answer>", True, id="parenthesised-then-text"),
        pytest.param("C", "<answer>Option C</answer>", True, id="option-word"),
        pytest.param("C", "<answer>c</answer>", True, id="lower-case"),
        pytest.param("C", "Long reasoning...\n\n**C**", True, id="trailing-bold-letter"),
        pytest.param("(C)", "\\boxed{C}", True, id="gold-parenthesised"),
        pytest.param("C", "<answer>D</answer>", False, id="other-letter"),
        pytest.param("C", "<answer>C and D</answer>", False, id="extra-letter"),
        pytest.param("C", "<answer>45</answer>", False, id="no-letter-no-choices"),
        pytest.param("A, C", "<answer>C, A</answer>", True, id="letter-set"),
        pytest.param("A, C", "<answer>A</answer>", False, id="letter-subset"),
    ],
)
def test_choice_letters(gold: str, response: str, expected: bool) -> None:
    result = verify(response, gold)
    assert result.correct is expected, result
    assert result.answer_type == "choice"


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("B", "B", True, id="letter-with-choices"),
        pytest.param("B", "12", True, id="option-text-gives-letter"),
        pytest.param("12", "B", True, id="gold-option-text"),
        pytest.param("12", "(B) 12", True, id="gold-option-text-pred-both"),
        pytest.param("C", "0.5", True, id="option-value-gives-letter"),
        pytest.param("D", "A right triangle.", True, id="option-text-normalised"),
        pytest.param("B", "10", False, id="other-option-text"),
        pytest.param("B", "13", False, id="no-option-matches"),
        pytest.param("12", "A", False, id="gold-text-other-letter"),
    ],
)
def test_choices_given(gold: str, pred: str, expected: bool) -> None:
    result = verify(f"<answer>{pred}</answer>", gold, choices=CHOICES)
    assert result.correct is expected, result


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("Yes", "yes", True, id="case"),
        pytest.param("Yes", "Yes.", True, id="period"),
        pytest.param("yes", "\\text{Yes}", True, id="text-wrapped"),
        pytest.param("No", "No, the lines are not parallel", True, id="with-explanation"),
        pytest.param("True", "yes", True, id="true-is-yes"),
        pytest.param("Yes", "No", False, id="opposite"),
        pytest.param("No", "Not sure", False, id="no-prefix-word"),
    ],
)
def test_yes_no(gold: str, pred: str, expected: bool) -> None:
    result = verify(f"<answer>{pred}</answer>", gold)
    assert (result.correct, result.answer_type) == (expected, "yesno")


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("Paris", "paris", True, id="case"),
        pytest.param("Paris", "  Paris. ", True, id="edge-punctuation"),
        pytest.param("the circle", "Circle", True, id="article"),
        pytest.param("isosceles triangle", "\\text{Isosceles triangle}", True, id="text-wrapped"),
        pytest.param("Paris", "London", False, id="other-word"),
        pytest.param("Paris", "Paris, France", False, id="substring-needs-a-benchmark-rule"),
    ],
)
def test_free_text(gold: str, pred: str, expected: bool) -> None:
    result = verify(f"<answer>{pred}</answer>", gold)
    assert (result.correct, result.answer_type) == (expected, "text")


def test_declared_answer_type_wins() -> None:
    assert verify("<answer>A</answer>", "A", answer_type="text").answer_type == "text"
    assert verify("<answer>3</answer>", "3", answer_type="integer").answer_type == "number"
    assert verify("<answer>A</answer>", "A", answer_type="multi_choice").answer_type == "choice"


def test_several_accepted_answers() -> None:
    assert verify("\\boxed{0.5}", ["\\frac{1}{2}", "50\\%"]).correct
    assert not verify("\\boxed{0.6}", ["\\frac{1}{2}", "50\\%"]).correct
