"""Answer-span extraction from whole responses."""

from __future__ import annotations

import pytest

from verifiers.extract import extract_answer


@pytest.mark.parametrize(
    ("response", "span", "source"),
    [
        pytest.param("<answer>5</answer>", "5", "answer_tag", id="answer-tag"),
        pytest.param("<answer> x = 2 </answer>", "x = 2", "answer_tag", id="answer-tag-stripped"),
        pytest.param("<answer>so \\boxed{7}</answer>", "7", "answer_tag", id="boxed-inside-tag"),
        pytest.param("<answer>The answer is C.</answer>", "C", "answer_tag", id="answer-is-inside-tag"),
        pytest.param("<answer>1</answer> then <answer>2</answer>", "2", "answer_tag", id="last-tag"),
        pytest.param("<think>\\boxed{1}</think><answer>2</answer>", "2", "answer_tag", id="tag-after-thinking"),
        pytest.param("<think>the answer is 1</think> \\boxed{2}", "2", "boxed", id="boxed-after-thinking"),
        pytest.param("<thought>try 1</thought>\nanswer: 3", "3", "answer_is", id="thought-tag"),
        pytest.param("\\boxed{1} and finally \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed", id="last-boxed"),
        pytest.param("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}", "boxed", id="nested-braces"),
        pytest.param("\\fbox{4}", "4", "boxed", id="fbox"),
        pytest.param("so \\boxed 9.", "9", "boxed", id="boxed-without-braces"),
        pytest.param("\\boxed{3} ... \\boxed{unclosed", "3", "boxed", id="skips-unclosed-boxed"),
        pytest.param("Thus, the answer is 12.", "12", "answer_is", id="answer-is"),
        pytest.param("Final Answer: $\\frac{1}{2}$", "$\\frac{1}{2}$", "answer_is", id="final-answer-colon"),
        pytest.param("The answer is:\n\n  x = 5\n", "x = 5", "answer_is", id="answer-on-next-line"),
        pytest.param("The answer is 3.5. Because...", "3.5", "answer_is", id="answer-is-decimal-sentence"),
        pytest.param("The answer is **B**", "B", "answer_is", id="answer-is-bold"),
        pytest.param("long reasoning\n\n(D)", "D", "option_letter", id="trailing-letter"),
        pytest.param("reasoning\nOption B", "B", "option_letter", id="trailing-option-word"),
        pytest.param("42", "42", "whole", id="short-whole-response"),
    ],
)
def test_extraction(response: str, span: str, source: str) -> None:
    extraction = extract_answer(response)
    assert (extraction.span, extraction.source) == (span, source)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param("I am not sure what to do here. " * 10, id="long-without-answer"),
        pytest.param("<answer></answer>", id="empty-tag"),
        pytest.param("<think>the answer is 5, \\boxed{5}</think>", id="answer-only-inside-thinking"),
        pytest.param("first line\nsecond line", id="multi-line-without-answer"),
    ],
)
def test_no_answer(response) -> None:
    assert extract_answer(response).span is None


def test_bytes_and_nul_are_tolerated() -> None:
    assert extract_answer(b"\xff\xfe answer: 5").span == "5"
    assert extract_answer("\\boxed{1\x002}").span == "12"


def test_json_short_answer_only_when_asked() -> None:
    reply = '{"solution": "...", "short answer": "3.14"}'
    assert extract_answer(reply, json_short_answer=True).span == "3.14"
    assert extract_answer(reply).source != "json_short_answer"
