"""ExGRPO's experience pool: admission by success count, retirement, bucket sampling, selection, persistence."""

import json
import math
from collections import Counter

import pytest

from npo_ext.guide_pool import GuideSample
from npo_ext.replay_pool import ReplayPool, ReplaySettings


def success(token, log_prob=-0.1):
    return GuideSample((token, 2), 1.0, 3, provenance="replay", behaviour_log_probs=(log_prob, log_prob))


def test_only_partly_solved_prompts_are_stored_and_fully_solved_ones_are_retired():
    pool = ReplayPool(ReplaySettings(n=8))
    pool.observe("none", 0, [], 0, 8)
    pool.observe("some", 1, [success(5), success(6)], 2, 8)
    pool.observe("all", 2, [success(7)] * 8, 8, 8)
    assert set(pool.questions) == {"some"} and pool.retired == {"all": 2}
    assert pool.questions["some"].dataset_position == 1
    pool.observe("some", 1, [success(9)] * 7, 7, 7)  # a replayed group: 7 generated, all correct: retired
    pool.observe("some", 1, [success(10)], 1, 8)  # never stored again
    assert len(pool) == 0 and pool.retired == {"all": 2, "some": 1}
    assert pool.retired_positions() == {1, 2}, "where later epochs leave them out of the training data"


def test_a_question_is_stored_only_with_a_response_to_replay():
    pool = ReplayPool(ReplaySettings(n=8))
    pool.observe("cut", 0, [], 2, 8)  # two successes, neither replayable (cut off at the length limit)
    assert len(pool) == 0
    pool.observe("cut", 0, [success(5)], 3, 8)
    pool.observe("cut", 0, [], 4, 8)  # the count follows the latest outcome; the stored response stays
    assert pool.questions["cut"].successes == 4 and len(pool.candidates("cut")) == 1


def test_bucket_is_the_latest_success_count_and_responses_are_capped():
    pool = ReplayPool(ReplaySettings(n=8, max_responses_per_question=3))
    pool.observe("q", 4, [success(1), success(2)], 2, 8)
    pool.observe("q", 4, [success(3), success(4)], 5, 8)
    assert pool.questions["q"].successes == 5
    assert [r.response_ids[0] for r in pool.candidates("q")] == [2, 3, 4]


def test_replay_starts_once_batch_accuracy_exceeds_the_threshold_and_stays_on():
    pool = ReplayPool(ReplaySettings(start_accuracy=0.35))
    pool.observe("q", 0, [success(1)], 1, 8)
    assert not pool.update_start(0.35) and pool.draw(4) == []
    assert pool.update_start(0.36)
    assert pool.update_start(0.0) and pool.draw(4) == [("q", 0)]


def test_buckets_are_weighted_by_a_gaussian_around_n_over_2():
    pool = ReplayPool(ReplaySettings(n=8, sigma=1.0), seed=0)
    for k in (1, 4, 7):
        pool.observe(f"q{k}", k, [success(k)], k, 8)
    weights = pool.bucket_weights()
    assert weights[4] == pytest.approx(1.0) and weights[1] == pytest.approx(math.exp(-4.5))
    draws = Counter(pool.sample_questions(1)[0] for _ in range(3000))
    total = sum(weights.values())
    assert draws["q4"] / 3000 == pytest.approx(1 / total, abs=0.03)
    assert draws["q1"] / 3000 == pytest.approx(math.exp(-4.5) / total, abs=0.01)


def test_sampling_returns_distinct_questions_up_to_the_pool_size_and_skips_excluded_ones():
    pool = ReplayPool(ReplaySettings(n=8), seed=1)
    for i in range(5):
        pool.observe(f"q{i}", 10 + i, [success(i)], 1 + i, 8)
    assert sorted(pool.sample_questions(10)) == [f"q{i}" for i in range(5)]
    assert sorted(pool.sample_questions(10, exclude={"q0", "q3"})) == ["q1", "q2", "q4"]
    pool.update_start(1.0)
    assert sorted(pool.draw(2, exclude={"q0", "q1", "q2"})) == [("q3", 13), ("q4", 14)]


def test_the_lowest_entropy_candidate_is_offered_and_only_for_drawn_questions():
    pool = ReplayPool(ReplaySettings())
    pool.observe("q", 0, [success(5), success(6), success(7)], 3, 8)
    pool.observe("other", 1, [success(8)], 3, 8)
    assert pool.guides("q") == []  # not chosen yet
    with pytest.raises(ValueError, match="2 entropies for 3 candidates"):
        pool.choose("q", [0.1, 0.2])
    assert pool.choose("q", [0.9, 0.1, 0.5]).response_ids[0] == 6
    assert [g.response_ids[0] for g in pool.guides("q")] == [6]
    assert pool.guides("other") == [] and pool.guides("unknown") == []
    pool.draw(1)  # a new step forgets the last one's choices
    assert pool.guides("q") == []


def test_state_round_trips_through_json_including_the_sampler():
    pool = ReplayPool(ReplaySettings(), seed=3)
    for i in range(4):
        pool.observe(f"q{i}", i, [success(i, log_prob=-0.5 * i)], 2 + i, 8)
    pool.observe("solved", 9, [], 8, 8)
    pool.update_start(0.5)
    state = json.loads(json.dumps(pool.state_dict()))
    restored = ReplayPool(ReplaySettings(), seed=99)
    restored.load_state_dict(state)
    assert restored.questions == pool.questions and restored.retired == {"solved": 9} and restored.started
    assert restored.draw(2) == pool.draw(2)


def test_a_state_without_retired_positions_is_refused():
    state = ReplayPool(ReplaySettings()).state_dict()
    state["retired"] = ["solved"]  # the layout saved before retired questions left the training data
    with pytest.raises(ValueError, match="without their dataset positions"):
        ReplayPool(ReplaySettings()).load_state_dict(state)
