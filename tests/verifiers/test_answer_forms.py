"""Answer forms that are equal (decimal commas, display math, ±, matrices, labelled golds, ...) and their dishonest or
merely different counterparts, all decided in-process."""

from __future__ import annotations

import pytest

from verifiers import verify


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param("1000,99", "1000.99", True, id="decimal-comma-pred"),
        pytest.param("1.22", "1,22", True, id="decimal-comma-gold"),
        pytest.param("0.111", "0,111", True, id="zero-comma-is-no-digit-group"),
        pytest.param("1000,98", "1000.99", False, id="decimal-comma-other-number"),
        pytest.param("1,2", "1.2", True, id="list-read-as-decimal-against-a-decimal"),
        pytest.param("1,2", "12", False, id="list-is-no-number"),
        pytest.param("1,2", "1, 2", True, id="list-stays-a-list"),
        pytest.param("1.2", "1, 2", False, id="decimal-is-no-list"),
        pytest.param("1,000", "1000", True, id="digit-groups-still-joined"),
        pytest.param("the number is not 10 which is 1,000.99€", "1000.99", True, id="euro-amount"),
        pytest.param("the number is not 10 which is 1,000.98€", "1000.99", False, id="euro-amount-other-number"),
        pytest.param("so the number is 10 which is 1,000.99m²", "1000.99", True, id="square-metres"),
        pytest.param("not it's not 10 it's 1,000.99m²", "1000.99", True, id="its-value"),
        pytest.param("\\boxed{14 {, }916}", "14{,}916", True, id="spaced-brace-digit-group"),
        pytest.param("\\boxed{28 percentage}", "28\\%", True, id="percentage-word"),
        pytest.param("\\boxed{27 percentage}", "28\\%", False, id="percentage-word-other-number"),
    ],
)
def test_number_forms(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param("Answer \\[ \n 9 \n \\]", "9", True, id="display-brackets-after-answer"),
        pytest.param("Answer $$ \n 9 \n $$", "9", True, id="display-dollars-after-answer"),
        pytest.param("Answer $$ \n 8 \n $$", "9", False, id="display-math-other-number"),
        pytest.param("We find that $x \\lt 3$.", "x < 3", True, id="one-math-span-in-prose"),
        pytest.param("We find that $x \\gt 3$.", "x < 3", False, id="one-math-span-flipped-inequality"),
        pytest.param("Thus $x <= 2$ is our answer.", "x \\leq 2", True, id="plain-less-equal"),
        pytest.param("Thus $x < 2$ is our answer.", "x \\leq 2", False, id="strict-for-non-strict"),
        pytest.param("We find that $x \\neq 3$.", "x != 3", True, id="not-equal"),
        pytest.param("We find that $x \\neq 4$.", "x != 3", False, id="not-equal-other-value"),
        pytest.param("It is not $5$.", "5", False, id="negated-math-span"),
        pytest.param("Either $5$ or something else.", "5", False, id="hedged-math-span"),
        pytest.param("It is $5$ and $6$.", "5", False, id="two-math-spans"),
        pytest.param("So the probability is 2/3. <|im_start|>user\nNext question", "2/3", True, id="turn-debris"),
        pytest.param("So the probability is 1/3. <|im_start|>user\nIt is 2/3", "2/3", False, id="answer-after-debris"),
        pytest.param("Thus the pair is $(7, 6)$. <|im_start|>user", "(7,6)", True, id="stated-pair-before-debris"),
    ],
)
def test_extraction_forms(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param(
            "Then $x^2 - 2x - 48 = -30,$ or $x^2 - 2x - 18 = 0.$ By the quadratic formula, "
            "$x = \\boxed{1 \\pm \\sqrt{19}}.$",
            "1 \\pm \\sqrt{19}",
            True,
            id="plus-minus-after-an-or-in-another-sentence",
        ),
        pytest.param("\\boxed{1 \\pm \\sqrt{17}}", "1 \\pm \\sqrt{19}", False, id="plus-minus-wrong-root"),
        pytest.param("\\boxed{1 + \\sqrt{19}}", "1 \\pm \\sqrt{19}", False, id="plus-minus-one-root-only"),
        pytest.param("\\boxed{\\pm 3}", "3", False, id="plus-minus-for-one-value"),
        pytest.param("\\boxed{1-\\sqrt{19}, 1+\\sqrt{19}}", "1 \\pm \\sqrt{19}", True, id="plus-minus-as-list"),
        pytest.param("\\boxed{x = \\pm 2}", "x=2, x=-2", True, id="plus-minus-solutions"),
        pytest.param("\\boxed{\\pm 3}", "\\pm 4", False, id="plus-minus-wrong"),
        pytest.param("\\boxed{x = 4}$ or $x = 5$", "4", False, id="hedge-in-the-same-sentence-still-caught"),
    ],
)
def test_plus_minus(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected


ZERO = "\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}"
ONE_TO_FOUR = "\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}"


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param("\\boxed{\\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix}}", ZERO, True, id="pmatrix-for-bmatrix"),
        pytest.param("\\boxed{\\begin{pmatrix}0 & 0 \\\\0 & 1\\end{pmatrix}}", ZERO, False, id="other-entry"),
        pytest.param("\\boxed{\\begin{pmatrix}0 & 0 & 0\\\\0 & 0 & 0\\end{pmatrix}}", ZERO, False, id="other-shape"),
        pytest.param("\\boxed{\\begin{pmatrix}0 \\\\ 0 \\\\ 0 \\\\ 0\\end{pmatrix}}", ZERO, False, id="column-of-four"),
        pytest.param("\\boxed{(0, 0, 0, 0)}", ZERO, False, id="tuple-for-matrix"),
        pytest.param(
            "$\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]$", ONE_TO_FOUR, True, id="array-in-brackets"
        ),
        pytest.param("\\boxed{\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}}", ONE_TO_FOUR, False, id="swapped-entries"),
        pytest.param(
            "\\boxed{\\begin{pmatrix}1 & 2 \\\\3 & 4 \\\\ \\end{pmatrix}}", ONE_TO_FOUR, True, id="trailing-row-break"
        ),
        pytest.param(
            "$\\begin{pmatrix}0.33\\\\0.2 \\end{pmatrix}$",
            "(\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix})",
            True,
            id="rounded-entries",
        ),
        pytest.param(
            "$\\begin{pmatrix}0.34\\\\0.2 \\end{pmatrix}$",
            "\\begin{pmatrix}\\frac{1}{3}\\\\ \\frac{1}{5} \\end{pmatrix}",
            False,
            id="badly-rounded-entry",
        ),
        pytest.param("\\boxed{(0.6,2.6667]}", "(\\frac{3}{5},\\frac{8}{3}]", True, id="interval-rounded-end"),
        pytest.param("\\boxed{(0.6,2.6666]}", "(\\frac{3}{5},\\frac{8}{3}]", False, id="interval-truncated-end"),
        pytest.param("\\boxed{(0.6,2.6667)}", "(\\frac{3}{5},\\frac{8}{3}]", False, id="interval-other-closure"),
        pytest.param("\\boxed{(0.7,2.6667]}", "(\\frac{3}{5},\\frac{8}{3}]", False, id="interval-other-start"),
        pytest.param("\\boxed{(0.3, 1)}", "(\\frac{1}{3}, 1)", False, id="one-decimal-place-is-too-coarse"),
    ],
)
def test_matrices_and_rounded_entries(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected


def test_a_determinant_is_no_matrix_and_goes_to_the_symbolic_graders() -> None:
    result = verify("\\boxed{\\begin{vmatrix}1 & 2 \\\\3 & 4\\end{vmatrix}}", "5")
    assert (result.correct, result.method in {"mathruler", "math_verify"}) == (False, True), result


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param("$$1$$", "$$|AB|=1$$", True, id="segment-length"),
        pytest.param("$$2$$", "$$|AB|=1$$", False, id="segment-length-other-value"),
        pytest.param("$$1$$", "$$f(x)=1$$", True, id="function-value"),
        pytest.param("$$1$$", "$$A:B=1$$", True, id="ratio-name"),
        pytest.param("$11:21$", "$V_{1}:V_{2}=11:21$", True, id="ratio-of-indexed-names"),
        pytest.param("$11:12$", "$V_{1}:V_{2}=11:21$", False, id="ratio-other-value"),
        pytest.param("\\boxed{7:32}", "$S_{MBCN}:S=7:32$", True, id="area-ratio"),
        pytest.param(
            "$\\frac{1}{\\sqrt{6}}$", "$\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}$", True, id="quotient-of-segments"
        ),
        pytest.param(
            "$\\frac{1}{\\sqrt{5}}$", "$\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}$", False, id="quotient-other-value"
        ),
        pytest.param("\\boxed{4, 5}", "$AB=4,CD=5$", True, id="several-segments"),
        pytest.param("\\boxed{4, 6}", "$AB=4,CD=5$", False, id="several-segments-one-wrong"),
        pytest.param("\\boxed{25}", "x^2+y^2=25", False, id="equation-right-side-is-no-value"),
        pytest.param("\\boxed{6}", "xy=6", False, id="product-of-variables-is-no-name"),
        pytest.param("\\boxed{2x+1}", "f(x)=2x+1", False, id="non-constant-right-side-keeps-the-equation"),
        pytest.param("\\boxed{|AB| = 1}", "|AB|=1", True, id="labelled-pred-still-equal"),
    ],
)
def test_labelled_golds(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        pytest.param(
            "$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$", "(3, 3), (1, 1)", True, id="two"
        ),
        pytest.param(
            "$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 2)}$$", "(3, 3), (1, 1)", False, id="one-off"
        ),
        pytest.param(
            "$$\\boxed{(3, 3)} \\text{ or maybe } \\boxed{(1, 1)}$$", "(3, 3), (1, 1)", False, id="or-between"
        ),
        pytest.param("\\boxed{1} first, \\boxed{2} then, \\boxed{3} last", "2, 3", False, id="more-boxes-than-values"),
        pytest.param("\\boxed{2} is not right; it is \\boxed{3}", "2, 3", False, id="box-taken-back"),
        pytest.param("$\\boxed{(3, 3)}$ for part (a) and $\\boxed{(1, 1)}$", "(1, 1)", True, id="single-gold-last-box"),
        pytest.param(
            "\\( y_1 = \\boxed{-2(x - 1)^2 + 5} \\) and \\( y_2 = \\boxed{3(x + 2)^2 - 2} \\)",
            "y_{1}=-2 x^{2}+4 x+3, y_{2}=3 x^{2}+12 x+10",
            True,
            id="two-expressions",
        ),
    ],
)
def test_several_boxes_for_several_values(response: str, gold: str, expected: bool) -> None:
    assert verify(response, gold).correct is expected
