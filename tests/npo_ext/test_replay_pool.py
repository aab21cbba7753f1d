"""ExGRPO's experience pool: admission by success count, retirement, bucket sampling, selection, persistence."""

import json
import math
from collections import Counter

import pytest

from npo_ext.guide_pool import GuideSample
from npo_ext.replay_pool import ReplayPool, ReplaySettings

ROW = {"data_source": "toy", "extra_info": {"index": 1}}


def success(token, log_prob=-0.1):
    return GuideSample((token, 2), 1.0, 3, provenance="replay", behaviour_log_probs=(log_prob, log_prob))


def test_only_partly_solved_prompts_are_stored_and_fully_solved_ones_are_retired():
    pool = ReplayPool(ReplaySettings(n=8))
    pool.observe("none", ROW, [], 0)
    pool.observe("some", ROW, [success(5), success(6)], 2)
    pool.observe("all", ROW, [success(7)] * 8, 8)
    assert set(pool.questions) == {"some"} and pool.retired == {"all"}
    pool.observe("some", ROW, [success(9)] * 8, 8)  # later solved 8/8: retired and dropped
    pool.observe("some", ROW, [success(10)], 1)  # never stored again
    assert len(pool) == 0 and pool.retired == {"all", "some"}


def test_bucket_is_the_latest_success_count_and_responses_are_capped():
    pool = ReplayPool(ReplaySettings(n=8, max_responses_per_question=3))
    pool.observe("q", ROW, [success(1), success(2)], 2)
    pool.observe("q", ROW, [success(3), success(4)], 5)
    assert pool.questions["q"].successes == 5
    assert [r.response_ids[0] for r in pool.questions["q"].responses] == [2, 3, 4]


def test_replay_starts_once_batch_accuracy_exceeds_the_threshold_and_stays_on():
    pool = ReplayPool(ReplaySettings(start_accuracy=0.35))
    assert not pool.update_start(0.35)
    assert pool.update_start(0.36)
    assert pool.update_start(0.0)


def test_buckets_are_weighted_by_a_gaussian_around_n_over_2():
    pool = ReplayPool(ReplaySettings(n=8, sigma=1.0), seed=0)
    for k in (1, 4, 7):
        pool.observe(f"q{k}", ROW, [success(k)], k)
    weights = pool.bucket_weights()
    assert weights[4] == pytest.approx(1.0) and weights[1] == pytest.approx(math.exp(-4.5))
    draws = Counter(pool.sample_questions(1)[0] for _ in range(3000))
    total = sum(weights.values())
    assert draws["q4"] / 3000 == pytest.approx(1 / total, abs=0.03)
    assert draws["q1"] / 3000 == pytest.approx(math.exp(-4.5) / total, abs=0.01)


def test_sampling_returns_distinct_questions_up_to_the_pool_size():
    pool = ReplayPool(ReplaySettings(n=8), seed=1)
    for i in range(5):
        pool.observe(f"q{i}", ROW, [success(i)], 1 + i)
    drawn = pool.sample_questions(10)
    assert sorted(drawn) == [f"q{i}" for i in range(5)]


def test_guides_put_the_lowest_entropy_response_first_and_need_an_entropy_function():
    pool = ReplayPool(ReplaySettings())
    pool.observe("q", ROW, [success(5), success(6), success(7)], 3)
    with pytest.raises(RuntimeError, match="entropy_of"):
        pool.guides("q")
    pool.entropy_of = lambda sample: {5: 0.9, 6: 0.1, 7: 0.5}[sample.response_ids[0]]
    assert [g.response_ids[0] for g in pool.guides("q")] == [6, 7, 5]
    assert pool.guides("unknown") == []


def test_state_round_trips_through_json_including_the_sampler():
    pool = ReplayPool(ReplaySettings(), seed=3)
    for i in range(4):
        pool.observe(f"q{i}", ROW, [success(i, log_prob=-0.5 * i)], 2 + i)
    pool.observe("solved", ROW, [], 8)
    pool.update_start(0.5)
    state = json.loads(json.dumps(pool.state_dict()))
    restored = ReplayPool(ReplaySettings(), seed=99)
    restored.load_state_dict(state)
    assert restored.questions == pool.questions and restored.retired == {"solved"} and restored.started
    assert restored.sample_questions(2) == pool.sample_questions(2)
