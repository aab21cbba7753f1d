"""Δ* = argmax S over candidate tables, with NaN, Q = 0 and ties handled as documented."""

from __future__ import annotations

import math

from npo_ext.delta_selection import Candidate, select_delta


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
