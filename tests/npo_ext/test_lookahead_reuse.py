"""What the look-ahead saw decides which window prompts are sampled, reused or skipped; its record persists."""

import json

import pytest

from npo_ext.config import NPOConfig, NPOConfigError
from npo_ext.guide_pool import GuideSample
from npo_ext.lookahead_reuse import LookaheadGroup, batch_path, load_batch, plan_collection, write_batch
from npo_ext.persist import NPOStateError

CORRECT = GuideSample((5, 2), 1.0, 3, provenance="lookahead")
SEEN = {
    "passed": LookaheadGroup(0.75, 8, [CORRECT] * 6),
    "sometimes": LookaheadGroup(0.25, 8, [CORRECT, CORRECT]),
    "truncated": LookaheadGroup(0.75, 8, []),  # judged correct, never ended with EOS: nothing to reuse
    "failed": LookaheadGroup(0.0, 8, []),
}
KEYS = ["passed", "sometimes", "truncated", "failed", "unseen"]


def plan(skip: bool, reuse: bool, seen=SEEN):
    return plan_collection(KEYS, seen, 0.6, skip_expected_passes=skip, reuse_lookahead=reuse, max_guides=1)


def test_without_options_every_prompt_is_sampled():
    result = plan(False, False)
    assert (result.sample, result.reused, result.skipped) == ([0, 1, 2, 3, 4], {}, [])


def test_skip_leaves_out_prompts_whose_lookahead_group_passed_the_gate():
    result = plan(True, False)
    assert result.sample == [1, 3, 4] and result.skipped == ["passed", "truncated"] and not result.reused


def test_reuse_gives_a_verified_lookahead_response_and_keeps_the_counts():
    result = plan(False, True)
    assert result.sample == [2, 3, 4] and not result.skipped
    assert sorted(result.reused) == ["passed", "sometimes"]
    entry = result.reused["passed"]
    assert (entry.num_samples, entry.num_correct, entry.samples) == (8, 6, [CORRECT]), "max_guides caps the samples"


def test_reuse_and_skip_together_sample_only_expected_failures():
    result = plan(True, True)
    assert result.sample == [3, 4] and result.skipped == ["truncated"]


def test_a_window_batch_the_lookahead_never_ran_is_sampled_whole():
    assert plan(True, True, seen=None).sample == [0, 1, 2, 3, 4]


def test_the_record_round_trips_and_a_missing_batch_is_none(tmp_path):
    write_batch(tmp_path, 2, SEEN)
    assert load_batch(tmp_path, 2) == SEEN
    assert load_batch(tmp_path, 3) is None


def test_a_corrupt_record_names_its_file(tmp_path):
    path = batch_path(tmp_path, 0)
    path.write_text(json.dumps({"k": {"accuracy": 0.5}}))
    with pytest.raises(NPOStateError, match=str(path)):
        load_batch(tmp_path, 0)


@pytest.mark.parametrize("round_n", [-1, 9])
def test_guide_round_n_must_fit_guide_n(round_n):
    with pytest.raises(NPOConfigError, match="npo.guide_round_n"):
        NPOConfig(guide_n=8, guide_round_n=round_n)
