"""The study's reader: the crossing is found in kept steps and its compute read from that step's record, failures
are kept, intervals come from resampling seeds."""

import math

import numpy as np
import pytest

from benchmarks.equal_compute import Row, summarise, target_of
from benchmarks.equal_compute_stats import (
    HELD_OUT,
    acc_within,
    bootstrap_interval,
    ratio_of_means,
    spent_to_target,
    trace,
)


def records(accs: dict[int, float], optimizer: dict[int, int], tokens_per_step: int = 100) -> list[dict]:
    """Step records as verl's file logger writes them: validation before training, then one record per kept step
    with cumulative counters and, at evaluations, held-out accuracy."""
    out = [{HELD_OUT: accs[0]}]
    for step in sorted(optimizer):
        record = {
            "training/global_step": step,
            "npo/compute/optimizer_steps": optimizer[step],
            "npo/compute/generated_tokens": tokens_per_step * optimizer[step],
            "npo/compute/scored_tokens": 0,
            "npo/compute/external_tokens": 0,
        }
        if step in accs:
            record[HELD_OUT] = accs[step]
        out.append(record)
    return out


def test_the_crossing_right_after_a_fork_is_charged_the_forks_look_ahead():
    # a fork at step 2 trains 4 look-ahead steps inside that step: its record says 6 optimizer steps; linear
    # interpolation of optimizer steps between the evaluations (0 at step 0, 8 at step 4) would say 4
    run = trace(records({0: 0.1, 4: 0.5}, {1: 1, 2: 6, 3: 7, 4: 8}))
    spent = spent_to_target(run, target=0.3)
    assert spent["kept_steps"] == 2 and spent["optimizer_steps"] == 6 and spent["generated_tokens"] == 600


def test_a_crossing_between_steps_is_rounded_up_to_the_whole_step():
    run = trace(records({0: 0.1, 4: 0.5}, {1: 1, 2: 2, 3: 3, 4: 4}))
    assert spent_to_target(run, target=0.35)["kept_steps"] == 3  # linear: 2.5 kept steps


def test_a_run_that_never_reaches_the_target_has_no_crossing():
    assert spent_to_target(trace(records({0: 0.1, 4: 0.2}, {s: s for s in range(1, 5)})), 0.3) is None


def test_accuracy_within_a_budget_is_the_last_evaluation_it_pays_for():
    run = trace(records({0: 0.1, 2: 0.3, 4: 0.6}, {1: 2, 2: 4, 3: 6, 4: 8}))
    tokens = lambda spent: spent["generated_tokens"]  # noqa: E731
    assert acc_within(run, 500, tokens) == 0.3 and acc_within(run, 800, tokens) == 0.6
    assert acc_within(run, 0, tokens) == 0.1, "the evaluation before training costs nothing"


def test_the_bootstrap_interval_holds_the_statistic_and_is_nan_for_one_seed():
    ref, own = [4.0, 6.0, 5.0, 7.0], [2.0, 4.0, 2.0, 3.0]
    low, high = bootstrap_interval(ratio_of_means, ref, own)
    assert low < ratio_of_means(ref, own) < high
    assert bootstrap_interval(np.mean, [3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert all(math.isnan(x) for x in bootstrap_interval(np.mean, [1.0]))


def linear_run(slope: float, steps: int = 8, start: float = 0.2) -> list[dict]:
    return records({s: start + slope * s for s in range(0, steps + 1, 2)}, {s: s for s in range(1, steps + 1)})


def test_the_target_leaves_out_a_collapsed_grpo_seed_and_says_so():
    grpo = {0: trace(linear_run(0.05)), 1: trace(linear_run(0.05)), 2: trace(linear_run(-0.02))}
    target, collapsed = target_of(grpo)
    assert collapsed == [2] and target == pytest.approx(0.9 * 0.6)


def test_a_method_that_fails_on_a_seed_is_counted_not_dropped():
    traces = {
        ("grpo", 0): trace(linear_run(0.05)),
        ("grpo", 1): trace(linear_run(0.05)),
        ("npo", 0): trace(linear_run(0.1)),  # twice as fast
        ("npo", 1): trace(linear_run(0.0)),  # never learns
    }
    (grpo, npo) = summarise(traces, [Row("GRPO", "grpo"), Row("NPO", "npo")], target=0.5)
    assert (grpo["reached"], npo["reached"], npo["seeds"], npo["paired"]) == (2, 1, 2, 1)
    assert grpo["kept steps: ratio"] == 1.0
    assert npo["kept steps: ratio"] == 2.0  # 6 steps / 3 steps on the one paired seed
    assert npo["acc at equal kept steps"] == pytest.approx((1.0 + 0.2) / 2)


def test_when_every_grpo_seed_collapsed_all_of_them_set_the_target():
    grpo = {0: trace(linear_run(-0.01)), 1: trace(linear_run(-0.02))}
    target, collapsed = target_of(grpo)
    assert collapsed == [] and target == pytest.approx(0.9 * (0.12 + 0.04) / 2)
