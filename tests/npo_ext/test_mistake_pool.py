"""The mistake pool: admission below the gate, eviction when solved, aged or over capacity, and persistence."""

from __future__ import annotations

import json

from npo_ext.mistake_pool import MistakePool


def test_admits_below_the_gate_and_evicts_a_prompt_once_solved() -> None:
    pool = MistakePool(gate=0.6, capacity=10, max_age=100)
    pool.update(1, [("a", 0.0, {"row": 1}), ("b", 0.5, {"row": 2}), ("c", 0.6, {"row": 3})])
    assert sorted(pool.entries) == ["a", "b"], "0.6 is at the gate: not a mistake"
    pool.update(2, [("a", 0.125, {"row": 1}), ("b", 0.75, {"row": 2})])
    assert sorted(pool.entries) == ["a"] and pool.evicted["solved"] == 1
    assert (pool.entries["a"].first_step, pool.entries["a"].last_step, pool.entries["a"].acc) == (1, 2, 0.125)


def test_age_and_capacity_bound_the_pool() -> None:
    pool = MistakePool(gate=0.6, capacity=3, max_age=5)
    for step, key in enumerate("abcde"):
        pool.update(step, [(key, 0.0, None)])
    assert sorted(pool.entries) == ["c", "d", "e"] and pool.evicted["capacity"] == 2, "the longest-ago failures go"
    pool.update(10, [("e", 0.0, None)])  # c (step 2) and d (step 3) are now more than 5 steps old
    assert sorted(pool.entries) == ["e"] and pool.evicted["aged"] == 2


def test_probe_is_a_seeded_subset() -> None:
    pool = MistakePool(gate=0.6, capacity=100, max_age=100)
    pool.update(0, [(f"k{i}", 0.0, i) for i in range(20)])
    first = [m.key for m in pool.probe(5, seed=3)]
    assert first == [m.key for m in pool.probe(5, seed=3)] and len(set(first)) == 5
    assert first != [m.key for m in pool.probe(5, seed=4)]
    assert len(pool.probe(50, seed=0)) == 20


def test_state_survives_a_json_round_trip() -> None:
    pool = MistakePool(gate=0.6, capacity=4, max_age=3)
    pool.update(0, [("a", 0.0, {"prompt": "x"}), ("b", 0.25, {"prompt": "y"})])
    pool.update(1, [("b", 1.0, None)])
    restored = MistakePool(gate=0.6, capacity=4, max_age=3)
    restored.load_state_dict(json.loads(json.dumps(pool.state_dict())))
    assert restored.entries == pool.entries and restored.evicted == pool.evicted
