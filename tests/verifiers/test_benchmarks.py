"""Benchmark-specific rules: what each benchmark's public harness does differently from the default."""

from __future__ import annotations

import pytest

from verifiers import Tolerance, verify
from verifiers.benchmarks import DEFAULT, rule_for


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        pytest.param("MathVista_MINI", "mathvista", id="vlmevalkit-name"),
        pytest.param("AI4Math/MathVista", "mathvista", id="hub-id"),
        pytest.param("mmmu_val", "mmmu", id="split-suffix"),
        pytest.param("DynaMath", "dynamath", id="dynamath"),
        pytest.param("LogicVista", "logicvista", id="logicvista"),
        pytest.param("We-Math", "wemath", id="punctuation"),
        pytest.param("MathVerse_MINI_Vision_Only", "mathverse", id="mathverse"),
        pytest.param("MathVision", "mathvision", id="mathvision"),
    ],
)
def test_rule_lookup(name: str, rule: str) -> None:
    assert rule_for(name).name == rule


def test_unknown_benchmark_uses_default() -> None:
    assert rule_for("hiyouga/geometry3k") is DEFAULT
    assert rule_for(None) is DEFAULT


def test_mathvista_option_text_and_precision() -> None:
    choices = ["2", "4", "6", "8"]
    assert verify("<answer>(B)</answer>", "4", choices=choices, benchmark="MathVista").correct
    assert verify("\\boxed{1.449}", "1.4", benchmark="MathVista", tolerance=Tolerance(precision=1)).correct
    assert not verify("\\boxed{1.46}", "1.4", benchmark="MathVista", tolerance=Tolerance(precision=1)).correct


def test_logicvista_letter_sets() -> None:
    assert verify("<answer>AC</answer>", "A, C", benchmark="LogicVista").correct
    assert verify("<answer>C, A</answer>", "AC", benchmark="LogicVista").correct
    assert not verify("<answer>A</answer>", "A, C", benchmark="LogicVista").correct


def test_letter_runs_are_not_letter_sets_elsewhere() -> None:
    result = verify("<answer>AC</answer>", "A, C")
    assert (result.correct, result.reason) == (False, "no_choice")


def test_dynamath_json_answer_tolerance_and_substring() -> None:
    reply = '{"solution": "the area is about 3.14", "short answer": "3.1416"}'
    assert verify(reply, "3.142", benchmark="DynaMath").correct
    assert not verify(reply, "3.142").correct  # default: 6-place agreement needed, and no JSON field extraction
    assert verify('{"short answer": "3.1425"}', "3.142", benchmark="DynaMath").correct
    assert not verify('{"short answer": "3.15"}', "3.142", benchmark="DynaMath").correct
    assert verify('{"short answer": "a red square"}', "square", benchmark="DynaMath", answer_type="text").correct


def test_mmmu_open_answer_substring() -> None:
    assert verify("<answer>Mitochondria.</answer>", "mitochondria", benchmark="MMMU").correct
    assert verify("<answer>The mitochondria organelle</answer>", "mitochondria", benchmark="mmmu_val").correct
    assert not verify("<answer>The mitochondria organelle</answer>", "mitochondria").correct


def test_wemath_and_mathverse_letters() -> None:
    assert verify("<answer>G</answer>", "G", benchmark="WeMath").correct
    assert verify("Answer: (B)", "B", benchmark="MathVerse").correct
