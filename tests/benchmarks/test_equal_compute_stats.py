"""The study's reader: the crossing is found in kept steps and its compute read from that step's record, failures
are kept, intervals come from resampling seeds."""

import math

import numpy as np
import pytest

from benchmarks.equal_compute import SPENT_COLUMN, Row, run_key, summarise, target_of
from benchmarks.equal_compute_stats import (
    HELD_OUT,
    SPENT_KEYS,
    acc_within,
    bootstrap_interval,
    ratio_of_means,
    spent_to_target,
    trace,
)
from recipes.demo.rule_task import RuleTask


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


def test_the_target_is_ninety_percent_of_grpos_gain_per_seed_and_a_seed_without_gain_has_none():
    grpo = {0: trace(linear_run(0.05)), 1: trace(linear_run(0.1)), 2: trace(linear_run(-0.02))}
    assert target_of(grpo) == pytest.approx({0: 0.2 + 0.9 * 0.4, 1: 0.2 + 0.9 * 0.8})


def test_a_method_that_fails_on_a_seed_is_counted_not_dropped():
    traces = {
        ("grpo", 0): trace(linear_run(0.05)),
        ("grpo", 1): trace(linear_run(0.05)),
        ("npo", 0): trace(linear_run(0.1)),  # twice as fast
        ("npo", 1): trace(linear_run(0.0)),  # never learns
    }
    (grpo, npo) = summarise(traces, [Row("GRPO", "grpo"), Row("NPO", "npo")], {0: 0.5, 1: 0.5}, seeds=[0, 1])
    assert (grpo["reached"], npo["reached"], npo["seeds"], npo["paired"]) == (2, 1, 2, 1)
    assert grpo["kept steps: ratio"] == 1.0
    assert npo["kept steps: ratio"] == 2.0  # 6 steps / 3 steps on the one paired seed
    assert npo["acc at equal kept steps"] == pytest.approx((1.0 + 0.2) / 2)


def test_a_crashed_run_counts_as_not_reaching_the_target():
    traces = {("grpo", s): trace(linear_run(0.05)) for s in (0, 1, 2)}
    traces |= {("npo", 0): trace(linear_run(0.1)), ("npo", 1): trace(linear_run(0.1))}  # seed 2 crashed
    (npo,) = summarise(traces, [Row("NPO", "npo")], dict.fromkeys((0, 1, 2), 0.5), seeds=[0, 1, 2])
    assert (npo["reached"], npo["seeds"], npo["paired"]) == (2, 3, 2)


def test_the_whole_run_token_column_is_a_ratio_of_means_method_over_grpo():
    traces = {
        ("grpo", 0): trace(records({0: 0.1, 2: 0.6}, {1: 1, 2: 2}, tokens_per_step=100)),
        ("grpo", 1): trace(records({0: 0.1, 2: 0.6}, {1: 1, 2: 2}, tokens_per_step=300)),
        ("npo", 0): trace(records({0: 0.1, 2: 0.6}, {1: 1, 2: 2}, tokens_per_step=300)),
        ("npo", 1): trace(records({0: 0.1, 2: 0.6}, {1: 1, 2: 2}, tokens_per_step=300)),
    }
    (npo,) = summarise(traces, [Row("NPO", "npo")], {0: 0.5, 1: 0.5}, seeds=[0, 1])
    # (600 + 600) / (200 + 600); the mean of per-seed ratios would say (3 + 1) / 2
    assert npo[SPENT_COLUMN] == pytest.approx(1.5)


def test_look_ahead_records_are_skipped_and_paid_for_in_the_next_kept_step():
    # the fork at kept step 1 logs two look-ahead records (no global step); the kept step's counters include them
    rows = records({0: 0.1, 2: 0.5}, {1: 3, 2: 4})
    look_ahead = [{"npo/compute/optimizer_steps": n, "npo/compute/generated_tokens": 100 * n} for n in (1, 2)]
    run = trace([rows[0], *look_ahead, *rows[1:]])
    assert run.evals == [(0, 0.1), (2, 0.5)] and sorted(run.spent) == [1, 2]
    assert spent_to_target(run, 0.3) == {
        "kept_steps": 1.0, "optimizer_steps": 3.0, "generated_tokens": 300.0, "scored_tokens": 0.0,
        "external_tokens": 0.0,
    }  # fmt: skip


def test_a_run_already_at_the_target_before_training_reached_it_at_no_cost():
    run = trace(records({0: 0.6, 2: 0.7}, {1: 1, 2: 2}))
    assert spent_to_target(run, 0.5) == dict.fromkeys(("kept_steps", *SPENT_KEYS), 0.0)


def test_a_teachers_tokens_count_against_the_budget_only_where_the_row_counts_them():
    rows = records({0: 0.1, 2: 0.3, 4: 0.6}, {1: 1, 2: 2, 3: 3, 4: 4})
    for record in rows[1:]:
        record["npo/compute/external_tokens"] = 50 * record["npo/compute/optimizer_steps"]
    run = trace(rows)
    free, counted = Row("LUFFY", "luffy"), Row("LUFFY", "luffy", count_external=True)
    assert acc_within(run, 400, free.tokens) == 0.6  # 400 generated tokens
    assert acc_within(run, 400, counted.tokens) == 0.3  # 600 with the teacher's: only step 2 (300) fits


def test_no_grpo_run_means_no_target():
    with pytest.raises(ValueError, match="no GRPO run finished"):
        target_of({})


def test_a_run_is_reused_only_for_the_same_method_seed_budget_evaluations_overrides_and_task():
    base = dict(method="npo_once", seed=0, steps=24, test_freq=4, overrides=["npo.enable=true"], task=RuleTask())
    changed = [
        {"method": "grpo"}, {"seed": 1}, {"steps": 32}, {"test_freq": 2},
        {"overrides": ["npo.enable=true", "actor_rollout_ref.actor.optim.lr=5e-4"]}, {"task": RuleTask(val_fillers=3)},
    ]  # fmt: skip
    keys = {run_key(**base)} | {run_key(**(base | change)) for change in changed}
    assert len(keys) == 1 + len(changed)
    assert run_key(**base) == run_key(**dict(base))


def test_a_seed_without_a_target_is_not_judged_but_its_accuracy_is_reported():
    traces = {("grpo", 0): trace(linear_run(0.05)), ("grpo", 1): trace(linear_run(-0.01))}
    traces |= {("npo", 0): trace(linear_run(0.1)), ("npo", 1): trace(linear_run(0.1))}
    (npo,) = summarise(traces, [Row("NPO", "npo")], target_of({s: traces[("grpo", s)] for s in (0, 1)}), [0, 1])
    assert (npo["reached"], npo["seeds"], npo["paired"]) == (1, 1, 1)
    assert npo["acc at equal kept steps"] == pytest.approx(1.0)
