"""Δ* = argmax S over candidate tables, with NaN, Q = 0 and ties handled as documented."""

from __future__ import annotations

import math

import pytest

from npo_ext.delta_selection import Candidate, candidate_table, select_delta


def test_argmax_of_q_over_v_not_of_q() -> None:
    table = [Candidate(10, 0.2, 1.1), Candidate(20, 0.4, 1.3), Candidate(40, 0.6, 3.0)]
    assert [round(c.s, 3) for c in table] == [0.182, 0.308, 0.2]
    assert select_delta(table).delta == 20


def test_ties_go_to_the_smaller_delta() -> None:
    decision = select_delta([Candidate(30, 0.6, 2.0), Candidate(10, 0.3, 1.0), Candidate(20, 0.1, 1.0)])
    assert decision.delta == 10 and "tie of 2" in decision.reason


def test_no_solving_candidate_means_no_intervention() -> None:
    decision = select_delta([Candidate(10, 0.0, 1.0), Candidate(20, 0.0, 1.5)])
    assert decision.delta is None and "solves" in decision.reason


def test_undefined_candidates_are_skipped() -> None:
    nan = math.nan
    assert select_delta([Candidate(10, nan, 1.0), Candidate(20, 0.3, 1.5)]).delta == 20
    assert select_delta([Candidate(10, 0.3, nan)]).delta is None
    assert select_delta([]).delta is None


def test_candidate_table_measures_q_only_on_the_prompts_theta_t_fails():
    # 4 prompts, k = 4: θ_T solves prompt 0 once (so it does not fail it) and fails prompts 1..3 (0 of 4)
    anchor = [1, 0, 0, 0]
    candidates = {20: [4, 4, 0, 0], 10: [4, 0, 0, 0]}
    rows = candidate_table(anchor, 4, candidates, {10: 1.5, 20: 2.0}, q_k=4)
    assert [r.delta for r in rows] == [10, 20]
    assert rows[0].q == 0.0, "solving a prompt θ_T already solves is not counted"
    assert rows[1].q == pytest.approx(1 / 3) and rows[1].v == 2.0
    # pass@min(q_k, k): one correct of 4 samples is pass@1 = 1/4
    assert candidate_table([0], 4, {5: [1]}, {5: 1.0}, q_k=1)[0].q == pytest.approx(0.25)
    assert math.isnan(candidate_table([2], 4, {5: [4]}, {5: 1.0}, q_k=4)[0].q), "no failed prompt: Q undefined"
    with pytest.raises(ValueError, match="delta=5 was probed on 2 prompts, θ_T on 1"):
        candidate_table([0], 4, {5: [1, 1]}, {5: 1.0}, q_k=1)
