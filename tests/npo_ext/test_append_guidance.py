"""RLEP's mixing on hand-built batches: groups of G generated + M appended replays, advantages over all G + M."""

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from npo_ext.guide_pool import GuideSample
from npo_ext.injection import IS_GUIDE, generate_with_appended_guides, source_q_metrics

EOS, PAD = 2, 0
WIDTH = 6  # response width
GROUP = 5  # rollout.n = G + M = 3 + 2


class Source:
    provenance = "earlier_run"

    def __init__(self, guides):
        self.by_key = guides

    def guides(self, key, row):
        return [GuideSample(tuple(ids), 1.0, 9, self.provenance) for ids in self.by_key.get(key, [])]


def prompts_for(groups):
    rows = [g for g in range(groups) for _ in range(GROUP)]
    return DataProto.from_dict(
        non_tensors={
            "uid": np.array([f"u{g}" for g in rows], dtype=object),
            "index": np.array(rows),
            "extra_info": np.array([{"index": g} for g in rows], dtype=object),
        }
    )


def generate(calls, build):
    """The rollout: every generated response is wrong, prompts are [PAD, 10 + group, 11]."""

    def run(subset: DataProto) -> DataProto:
        calls.append(subset.non_tensor_batch["index"].tolist())
        groups = subset.non_tensor_batch["index"].tolist()
        return build(groups, [0.0] * len(groups), WIDTH, {"uid": subset.non_tensor_batch["uid"]})

    return run


def append(prompts, source, calls, build, per_group=2):
    keys = [f"p{i}" for i in prompts.non_tensor_batch["index"]]
    return generate_with_appended_guides(
        prompts,
        generate(calls, build),
        source,
        keys,
        per_group,
        max_response_length=WIDTH,
        eos_token_ids=[EOS],
        pad_token_id=PAD,
        reward_fn=lambda row, ids: {"score": 1.0, "acc": 1.0},
    )


SOURCE = Source({"p0": [[30, 31, EOS], [32, EOS]], "p1": [[33, 34, 35, 36, 37, 38, 39], [35]]})  # p1: one too long


def test_only_the_fresh_rows_are_generated_and_each_group_keeps_its_size(rollout_batch):
    calls = []
    out, metrics = append(prompts_for(3), SOURCE, calls, rollout_batch)
    assert calls == [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]], "p0: 3 + 2 replays, p1: 4 + 1, p2: 5 generated"
    assert len(out) == 3 * GROUP
    assert out.non_tensor_batch["uid"].tolist() == prompts_for(3).non_tensor_batch["uid"].tolist()
    assert out.batch[IS_GUIDE].nonzero().flatten().tolist() == [3, 4, 9]
    assert metrics["npo/inject/guide_rows"] == 3 and metrics["npo/inject/no_guide"] == 1
    assert metrics["npo/inject/skipped_no_room"] == 1, "the 8-token guide does not fit 6 response tokens"


def test_a_replay_row_has_its_groups_prompt_its_response_and_its_reward(rollout_batch):
    out, _ = append(prompts_for(3), SOURCE, [], rollout_batch)
    assert out.batch["responses"][3].tolist() == [30, 31, EOS, PAD, PAD, PAD]
    assert out.batch["responses"][9].tolist() == [35, EOS, PAD, PAD, PAD, PAD], "EOS appended"
    assert torch.equal(out.batch["prompts"][9], out.batch["prompts"][5])
    assert out.batch["position_ids"][9, 3:5].tolist() == [2, 3], "positions continue after the prompt"
    assert out.batch["rm_scores"][9].tolist() == [0, 1, 0, 0, 0, 0]
    assert out.non_tensor_batch["acc"][[3, 4, 9]].tolist() == [1.0, 1.0, 1.0]
    assert out.non_tensor_batch["acc"][[0, 5, 10]].tolist() == [0.0, 0.0, 0.0], "fresh rows keep their reward"


def test_advantages_are_taken_over_the_whole_group_of_g_plus_m(rollout_batch):
    out, _ = append(prompts_for(1), SOURCE, [], rollout_batch)
    advantages, _ = compute_grpo_outcome_advantage(
        out.batch["rm_scores"], out.batch["response_mask"], out.non_tensor_batch["uid"]
    )
    # rewards [0, 0, 0, 1, 1]: mean 0.4, sample std sqrt(0.3)
    std = 0.3**0.5
    assert advantages[:, 0].tolist() == pytest.approx([-0.4 / std] * 3 + [0.6 / std] * 2, rel=1e-4)


def test_a_group_keeps_at_least_one_generated_response(rollout_batch):
    calls = []
    many = Source({"p0": [[30 + i, EOS] for i in range(GROUP)]})
    out, _ = append(prompts_for(1), many, calls, rollout_batch, per_group=GROUP)
    assert calls == [[0]] and int(out.batch[IS_GUIDE].sum()) == GROUP - 1


def test_q_counts_the_failed_groups_that_got_a_verified_guide(rollout_batch):
    out, _ = append(prompts_for(3), SOURCE, [], rollout_batch)  # every generated row is wrong; p0, p1 get replays
    assert source_q_metrics(out, "acc", 1.0) == {
        "npo/signal/q": 2 / 3,
        "npo/signal/q_k": 1.0,
        "npo/signal/q_prompts": 3.0,
    }
    out.non_tensor_batch["acc"][[3, 4]] = 0.0  # p0's replays judged wrong after all
    assert source_q_metrics(out, "acc", 1.0)["npo/signal/q"] == 1 / 3
    out.non_tensor_batch["acc"][0] = 1.0  # p0 no longer fails: it leaves Q's denominator
    assert source_q_metrics(out, "acc", 1.0)["npo/signal/q"] == 1 / 2
    out.non_tensor_batch["acc"][[5, 10]] = 1.0  # every group solves something: nothing to measure Q on
    assert source_q_metrics(out, "acc", 1.0) == {"npo/signal/q_prompts": 0.0}
