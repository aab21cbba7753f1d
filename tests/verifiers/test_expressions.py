"""LaTeX expressions and equations, decided by exact rational arithmetic or evaluation at fixed points."""

from __future__ import annotations

import importlib.util

import pytest

from verifiers import verify

NEEDS_MATH_VERIFY = pytest.mark.skipif(
    importlib.util.find_spec("math_verify") is None, reason="accepted only by math-verify, which is not installed"
)


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("2\\sqrt{3}", "\\sqrt{12}", True, id="root-pulled-out"),
        pytest.param("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True, id="root-over-two"),
        pytest.param("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{3}", False, id="root-wrong-denominator"),
        pytest.param("\\sqrt{2}", "1.414214", True, id="root-six-decimals"),
        pytest.param("\\sqrt{2}", "1.41", False, id="root-two-decimals"),
        pytest.param("\\sqrt[3]{-8}", "-2", True, id="odd-root-of-negative"),
        pytest.param("\\sqrt{16}", "4", True, id="perfect-square"),
        pytest.param("\\frac{\\pi}{2}", "\\pi/2", True, id="pi-slash"),
        pytest.param("\\frac{3\\pi}{4}", "\\frac{3}{4}\\pi", True, id="pi-coefficient"),
        pytest.param("\\pi", "3.14", False, id="pi-rounded"),
        pytest.param("e", "2.718282", True, id="euler-six-decimals"),
        pytest.param("e^{\\ln 2}", "2", True, id="exp-log"),
        pytest.param("\\sin^2 x + \\cos^2 x", "1", True, id="pythagorean-identity"),
        pytest.param("\\tan x", "\\frac{\\sin x}{\\cos x}", True, id="tangent-ratio"),
        pytest.param("\\sin(2x)", "2\\sin x\\cos x", True, id="double-angle"),
        pytest.param("\\sin x", "\\cos x", False, id="sin-vs-cos"),
        pytest.param("\\lg 100", "2", True, id="lg-base-ten"),
        pytest.param("\\ln(e^3)", "3", True, id="natural-log"),
        pytest.param("x^2+2x+1", "(x+1)^2", True, id="square-expanded"),
        pytest.param("x^2+2x+1", "(x+2)^2", False, id="square-wrong"),
        pytest.param("a+b", "b+a", True, id="commuted-sum"),
        pytest.param("2x", "x\\cdot 2", True, id="cdot-product"),
        pytest.param("3x", "3\\times x", True, id="times-product"),
        pytest.param("\\frac{x^2-1}{x-1}", "x+1", True, id="cancelled-factor"),
        pytest.param("\\frac{1}{2}\\pi r^2", "\\pi r^2/2", True, id="area-of-half-disc"),
        pytest.param("\\frac{5}{x}", "5x^{-1}", True, id="negative-exponent"),
        pytest.param("|x-1|", "x-1", False, id="absolute-value-kept"),
        pytest.param("x^2", "y^2", False, id="different-variable"),
        pytest.param("2^{100000}", "2^{100000}", True, id="huge-power-identical"),
        pytest.param("10^{20}+1", "10^{20}", False, id="huge-exact-difference"),
        pytest.param("3+2i", "2i+3", True, id="complex-number"),
        pytest.param("\\alpha+\\beta", "\\beta+\\alpha", True, id="greek-variables"),
        pytest.param("x_1+x_2", "x_2+x_1", True, id="subscripted-variables"),
    ],
)
def test_expressions(gold: str, pred: str, expected: bool) -> None:
    result = verify(f"\\boxed{{{pred}}}", gold)
    assert result.correct is expected, result
    assert result.method in {"exact", "normalized", "numeric", "evaluation"}


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("x=3", "3", True, id="solved-gold-bare-pred"),
        pytest.param("3", "x=3", True, id="bare-gold-solved-pred"),
        pytest.param("3", "3=x", True, id="reversed-equation"),
        pytest.param("3", "x = 1 + 2 = 3", True, id="equality-chain"),
        pytest.param("x=3", "x=4", False, id="solved-wrong"),
        pytest.param("x=3", "y=3", False, id="solved-other-variable"),
        pytest.param("y=2x+1", "y=1+2x", True, id="line-reordered"),
        pytest.param("y=2x+1", "2x-y+1=0", True, id="line-general-form"),
        pytest.param("y=2x+1", "2x+1=y", True, id="line-sides-swapped"),
        pytest.param("x+y=1", "2x+2y=2", True, id="line-scaled"),
        pytest.param("y=2x+1", "y=2x-1", False, id="line-other-intercept"),
        pytest.param("y=2x+1", "2x+1", True, id="line-right-side-only"),
        pytest.param("x^2+y^2=4", "y^2+x^2=4", True, id="circle-reordered"),
        pytest.param("x^2+y^2=4", "x^2+y^2=2", False, id="circle-other-radius"),
        pytest.param("x>2", "2<x", True, id="inequality-flipped"),
        pytest.param("x>2", "x\\ge 2", False, id="strict-vs-non-strict"),
        pytest.param("2x<4", "x<2", True, id="inequality-scaled"),
        pytest.param("x<2", "-x<-2", False, id="inequality-negated-without-flip"),
        pytest.param("x \\approx 3.14", "3.14", True, id="approx-as-equal"),
    ],
)
def test_equations(gold: str, pred: str, expected: bool) -> None:
    assert verify(f"\\boxed{{{pred}}}", gold).correct is expected


def test_equation_type() -> None:
    assert verify("\\boxed{y=1+2x}", "y=2x+1").answer_type == "equation"


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("\\lfloor 3.5 \\rfloor", "3", True, id="floor", marks=NEEDS_MATH_VERIFY),
        pytest.param("\\mathbb{R}", "(-\\infty,\\infty)", True, id="all-reals", marks=NEEDS_MATH_VERIFY),
    ],
)
def test_outside_the_grammar_goes_to_the_symbolic_pool(symbolic_pool, gold: str, pred: str, expected: bool) -> None:
    from verifiers import Item, verify_batch

    (result,) = verify_batch([Item(f"\\boxed{{{pred}}}", gold)], pool=symbolic_pool)
    assert result.correct is expected, result
    assert result.method in {"mathruler", "math_verify"}


def test_whitespace_only_difference_needs_no_worker() -> None:
    result = verify("\\boxed{\\pm3}", "\\pm 3")
    assert (result.correct, result.method) == (True, "normalized")
