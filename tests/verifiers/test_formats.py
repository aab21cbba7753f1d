"""Format templates; the default must not pin Qwen3-VL-Instruct's untagged answers at 0 (EasyR1 #597)."""

from __future__ import annotations

import pytest

from verifiers.formats import format_ok

THINK_ANSWER = "<think>2+2 is 4</think>\n<answer>4</answer>"
THOUGHT_ANSWER = "<thought>2+2 is 4</thought> <answer>4</answer>"
INSTRUCT_BOXED = "We add the two numbers: 2 + 2 = 4.\n\nTherefore the answer is $\\boxed{4}$."
THINKING_MODEL = "2+2 is 4, since the opening tag was in the prompt.</think>\n\nThe answer is \\boxed{4}."


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(THINK_ANSWER, True, id="think-answer"),
        pytest.param(THOUGHT_ANSWER, True, id="thought-answer"),
        pytest.param(INSTRUCT_BOXED, True, id="qwen3-vl-instruct-untagged-boxed"),
        pytest.param("Reasoning.\n<answer>4</answer>", True, id="untagged-answer-tag"),
        pytest.param(THINKING_MODEL, True, id="closing-tag-only"),
        pytest.param("<think>a</think><think>b</think><answer>4</answer>", False, id="two-think-blocks"),
        pytest.param("<think>unclosed reasoning <answer>4</answer>", False, id="unclosed-think"),
        pytest.param("<think>a</thought><answer>4</answer>", False, id="mismatched-tags"),
        pytest.param("<think>a</think><answer></answer>", False, id="empty-answer"),
        pytest.param("<think>a</think>The answer is 4.", False, id="no-final-answer-marker"),
        pytest.param("<answer>4</answer><answer>5</answer>", False, id="two-answer-tags"),
        pytest.param("The answer is \\boxed{4", False, id="unbalanced-boxed"),
        pytest.param("", False, id="empty"),
    ],
)
def test_auto(response: str, expected: bool) -> None:
    assert format_ok(response) is expected


@pytest.mark.parametrize(
    ("template", "response", "expected"),
    [
        pytest.param("think_answer", THINK_ANSWER, True, id="r1-ok"),
        pytest.param("think_answer", THOUGHT_ANSWER, False, id="r1-rejects-thought"),
        pytest.param("think_answer", INSTRUCT_BOXED, False, id="r1-rejects-untagged"),
        pytest.param("think_answer", THINK_ANSWER + " trailing", False, id="r1-rejects-trailing-text"),
        pytest.param("thought_answer", THOUGHT_ANSWER, True, id="remind-ok"),
        pytest.param("thought_answer", THINK_ANSWER, False, id="remind-rejects-think"),
        pytest.param("think_boxed", "<think>x</think> so \\boxed{4}.", True, id="geo3k-ok"),
        pytest.param("think_boxed", INSTRUCT_BOXED, False, id="geo3k-rejects-untagged"),
        pytest.param("boxed", INSTRUCT_BOXED, True, id="boxed-ok"),
        pytest.param("boxed", THINK_ANSWER, False, id="boxed-rejects-tag"),
        pytest.param("answer_tag", THINK_ANSWER, True, id="answer-tag-ok"),
        pytest.param("answer_tag", INSTRUCT_BOXED, False, id="answer-tag-rejects-boxed"),
        pytest.param(r".*\\boxed\{.*\}.*", INSTRUCT_BOXED, True, id="custom-regex"),
        pytest.param(r"<answer>.*</answer>", THINK_ANSWER, False, id="custom-regex-full-match"),
    ],
)
def test_named_templates(template: str, response: str, expected: bool) -> None:
    assert format_ok(response, template) is expected


def test_megabyte_reasoning_block() -> None:
    response = "<think>" + "x" * 1_000_000 + "</think><answer>4</answer>"
    assert format_ok(response)
    assert format_ok(response, "think_answer")
