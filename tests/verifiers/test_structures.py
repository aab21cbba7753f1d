"""Intervals, sets, tuples and lists of answers."""

from __future__ import annotations

import pytest

from verifiers import verify


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        pytest.param("(1,3]", "( 1 , 3 ]", True, id="interval-spaces"),
        pytest.param("(1,3]", "(1,3)", False, id="interval-bracket-differs"),
        pytest.param("(1,3]", "(1,4]", False, id="interval-endpoint-differs"),
        pytest.param("(1,3]", "1 < x \\le 3", True, id="interval-as-chain"),
        pytest.param("(1,3]", "3 \\ge x > 1", True, id="interval-as-reversed-chain"),
        pytest.param("1<x<3", "(1,3)", True, id="chain-gold-interval-pred"),
        pytest.param("[2,\\infty)", "x\\ge 2", True, id="ray-as-inequality"),
        pytest.param("[2,\\infty)", "x>2", False, id="ray-strictness"),
        pytest.param("(-\\infty,3)", "x<3", True, id="ray-below"),
        pytest.param("[2,\\infty)", "x \\in [2, +\\infty)", True, id="membership"),
        pytest.param("(-\\infty,0)\\cup(1,\\infty)", "(1,\\infty)\\cup(-\\infty,0)", True, id="union-reordered"),
        pytest.param("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty,0)\\cup[1,\\infty)", False, id="union-bracket"),
        pytest.param("\\{1,2,3\\}", "\\{3,2,1\\}", True, id="set-reordered"),
        pytest.param("\\{1,2,3\\}", "3, 1, 2", True, id="set-as-bare-list"),
        pytest.param("\\{1,2,3\\}", "\\{1,2\\}", False, id="set-missing-element"),
        pytest.param("\\{1,2\\}", "\\{1,2,2\\}", False, id="set-extra-element"),
        pytest.param("\\{\\frac{1}{2}, 2\\}", "\\{2, 0.5\\}", True, id="set-equivalent-elements"),
        pytest.param("\\emptyset", "\\varnothing", True, id="empty-set"),
        pytest.param("(5,9)", "(5, 9)", True, id="tuple-spaces"),
        pytest.param("(5,9)", "(9,5)", False, id="tuple-order-matters"),
        pytest.param("(5,9)", "(\\frac{10}{2}, 9)", True, id="tuple-equivalent-elements"),
        pytest.param("(5,9)", "5, 9", False, id="tuple-needs-brackets"),
        pytest.param("(1,2,3)", "(1,2)", False, id="tuple-length"),
        pytest.param("2, 3", "3, 2", True, id="list-unordered"),
        pytest.param("2, 3", "x=3 or x=2", True, id="list-as-solutions"),
        pytest.param("x=1, x=2", "x=2, x=1", True, id="solutions-reordered"),
        pytest.param("1331 and 1728", "1728", False, id="list-partial-answer"),
        pytest.param("1728", "1331, 1728", False, id="list-extra-answer"),
    ],
)
def test_structures(gold: str, pred: str, expected: bool) -> None:
    result = verify(f"\\boxed{{{pred}}}", gold)
    assert result.correct is expected, result
    assert result.method in {"exact", "normalized", "numeric", "evaluation"}


@pytest.mark.parametrize(
    ("gold", "answer_type"),
    [
        pytest.param("(1,3]", "interval", id="interval"),
        pytest.param("(-\\infty,0)\\cup(1,\\infty)", "interval", id="union"),
        pytest.param("\\{1,2\\}", "set", id="set"),
        pytest.param("1, 2", "set", id="bare-list"),
        pytest.param("(5,9)", "tuple", id="tuple"),
    ],
)
def test_structure_types(gold: str, answer_type: str) -> None:
    assert verify(f"\\boxed{{{gold}}}", gold).answer_type == answer_type
