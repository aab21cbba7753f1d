"""Numbers, fractions, percentages and quantities: decided in-process, without the symbolic pool."""

from __future__ import annotations

import pytest

from verifiers import Tolerance, verify

IN_PROCESS = {"exact", "normalized", "numeric", "evaluation"}


def check(gold: str, pred: str, **kwargs):
    result = verify(f"\\boxed{{{pred}}}", gold, **kwargs)
    assert result.method in IN_PROCESS, result
    return result


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("42", "42", True, id="int-same"),
        pytest.param("42", "42.0", True, id="int-trailing-zero"),
        pytest.param("42", "{42}", True, id="int-braced"),
        pytest.param("42", "042", True, id="int-leading-zero"),
        pytest.param("1000", "1,000", True, id="int-thousands-comma"),
        pytest.param("1000", "1{,}000", True, id="int-latex-thousands"),
        pytest.param("-7", "-7", True, id="int-negative"),
        pytest.param("100", "10^2", True, id="int-as-power"),
        pytest.param("1024", "2^{10}", True, id="int-as-braced-power"),
        pytest.param("24", "4!", True, id="int-as-factorial"),
        pytest.param("10", "\\binom{5}{2}", True, id="int-as-binomial"),
        pytest.param("3", "\\log_2 8", True, id="int-as-log"),
        pytest.param("1500", "1.5e3", True, id="int-scientific"),
        pytest.param("1500", "1.5\\times10^{3}", True, id="int-times-ten-power"),
        pytest.param("3000000", "3 million", True, id="int-million-word"),
        pytest.param("42", "43", False, id="int-off-by-one"),
        pytest.param("42", "-42", False, id="int-sign"),
        pytest.param("42", "4.2", False, id="int-decimal-shift"),
        pytest.param("100000000000000000001", "100000000000000000000", False, id="int-huge-exact"),
        pytest.param("3.25", "3.250", True, id="dec-trailing-zero"),
        pytest.param("3.25", "\\frac{13}{4}", True, id="dec-as-fraction"),
        pytest.param("0.5", "\\frac12", True, id="dec-frac-shorthand"),
        pytest.param("-0.5", "-\\frac{1}{2}", True, id="dec-negative-fraction"),
        pytest.param(".5", "0.5", True, id="dec-no-leading-zero"),
        pytest.param("3.25", "3.26", False, id="dec-off"),
        pytest.param("3.25", "3.2", False, id="dec-truncated"),
        pytest.param("2", "2.0000001", True, id="dec-agrees-at-6-places"),
        pytest.param("2", "2.00001", False, id="dec-differs-at-5th-place"),
        pytest.param("\\frac{13}{46}", "\\dfrac{26}{92}", True, id="frac-unreduced"),
        pytest.param("\\frac{13}{46}", "13/46", True, id="frac-slash"),
        pytest.param("\\frac{13}{46}", "\\tfrac{13}{46}", True, id="frac-tfrac"),
        pytest.param("\\frac{1}{3}", "0.333333", True, id="frac-six-decimals"),
        pytest.param("\\frac{1}{3}", "0.33", False, id="frac-two-decimals"),
        pytest.param("\\frac{1}{3}", "\\frac{3}{1}", False, id="frac-inverted"),
        pytest.param("\\frac{5}{2}", "2\\frac{1}{2}", True, id="frac-latex-mixed-number"),
        pytest.param("\\frac{31}{4}", "7 3/4", True, id="frac-plain-mixed-number"),
        pytest.param("-\\frac{31}{4}", "-7 3/4", True, id="frac-negative-mixed-number"),
        pytest.param("\\frac{1}{2}", "\\frac{2}{4}", True, id="frac-equal-unreduced-both"),
        pytest.param("\\frac{2}{3}", "\\frac{3}{2}", False, id="frac-swapped"),
        pytest.param("50\\%", "50%", True, id="pct-unescaped"),
        pytest.param("50\\%", "50", True, id="pct-number-read-as-percent"),
        pytest.param("50\\%", "0.5", True, id="pct-as-ratio"),
        pytest.param("0.2", "20\\%", True, id="pct-pred-as-ratio"),
        pytest.param("50\\%", "51\\%", False, id="pct-off"),
        pytest.param("50\\%", "5", False, id="pct-wrong-scale"),
        pytest.param("5\\text{ cm}", "5", True, id="unit-dropped"),
        pytest.param("5\\text{ cm}", "5 cm", True, id="unit-plain"),
        pytest.param("5", "5\\,\\mathrm{cm}", True, id="unit-mathrm-in-pred"),
        pytest.param("12", "12 \\text{cm}^2", True, id="unit-squared"),
        pytest.param("30^\\circ", "30", True, id="unit-degrees"),
        pytest.param("30", "30°", True, id="unit-degree-sign"),
        pytest.param("5\\text{ cm}", "6 cm", False, id="unit-wrong-value"),
        pytest.param("500", "5 m", False, id="unit-not-converted"),
    ],
)
def test_numeric_answers(gold: str, pred: str, expected: bool) -> None:
    assert check(gold, pred).correct is expected


def test_number_types_are_classified() -> None:
    assert check("42", "42").answer_type == "number"
    assert check("\\frac{1}{2}", "0.5").answer_type == "fraction"
    assert check("50\\%", "50").answer_type == "percentage"
    assert check("5\\text{ cm}", "5").answer_type == "quantity"


@pytest.mark.parametrize(
    ("tolerance", "pred", "expected"),
    [
        pytest.param(Tolerance(abs=1e-3), "3.1421", True, id="abs-inside"),
        pytest.param(Tolerance(abs=1e-3), "3.144", False, id="abs-outside"),
        pytest.param(Tolerance(rel=0.01), "3.12", True, id="rel-inside"),
        pytest.param(Tolerance(rel=0.01), "3.2", False, id="rel-outside"),
        pytest.param(Tolerance(precision=1), "3.14159", True, id="precision-rounds"),
        pytest.param(Tolerance(precision=2), "3.15", False, id="precision-differs"),
    ],
)
def test_tolerance(tolerance: Tolerance, pred: str, expected: bool) -> None:
    assert check("3.142", pred, tolerance=tolerance).correct is expected


def test_numeric_prediction_that_is_text_is_wrong_without_symbolic_work() -> None:
    result = verify("\\boxed{seven}", "7")
    assert (result.correct, result.reason) == (False, "unparsable")
