"""Guidance injection on hand-built rollout batches (no Ray, no model)."""

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from npo_ext.guide_pool import GuidePool, GuideSample, PromptGuides
from npo_ext.injection import (
    IS_GUIDE,
    InjectionSpec,
    align_guide_rollout_log_probs,
    guide_advantage_metrics,
    inject_guidance,
)

EOS, PAD = 2, 0
P, R = 4, 6  # prompt / response widths


def make_rollout(accs_per_group, n, mrope=False, with_rollout_log_probs=False):
    """A rollout output like verl's agent loop returns: left-padded prompts, right-padded responses."""
    rows = []
    for g, accs in enumerate(accs_per_group):
        assert len(accs) == n
        for a in accs:
            rows.append((g, a))
    bs = len(rows)
    prompts = torch.tensor([[PAD, 10 + g, 11, 12] for g, _ in rows])
    prompt_mask = (prompts != PAD).long()
    responses = torch.tensor([[20, 21, EOS, PAD, PAD, PAD]] * bs)
    response_mask = (torch.arange(R) < 3).long().expand(bs, R).clone()
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    text_pos = torch.clamp(torch.cumsum(attention_mask, dim=1) - 1, min=0)
    if mrope:
        # 1 text row + 3 M-RoPE rows; the vision rows jump (an image inside the prompt), as Qwen-VL does.
        vision = text_pos.clone()
        vision[:, 2:] += 5
        position_ids = torch.stack([text_pos, vision, vision, vision], dim=1)
    else:
        position_ids = text_pos
    rm_scores = torch.zeros(bs, R)
    rm_scores[:, 2] = torch.tensor([a for _, a in rows], dtype=torch.float)
    tensors = {
        "prompts": prompts,
        "responses": responses,
        "input_ids": torch.cat([prompts, responses], dim=1),
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "position_ids": position_ids,
        "rm_scores": rm_scores,
    }
    if with_rollout_log_probs:
        tensors["rollout_log_probs"] = torch.full((bs, R), -1.5)
    non_tensors = {
        "uid": np.array([f"u{g}" for g, _ in rows], dtype=object),
        "acc": np.array([float(a) for _, a in rows]),
        "score": np.array([float(a) for _, a in rows]),
    }
    batch = DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)
    batch.meta_info["reward_extra_keys"] = ["acc", "score"]
    keys = [f"p{g}" for g, _ in rows]
    return batch, keys


def pool_with(key, ids=(30, 31, 32, EOS)):
    pool = GuidePool()
    pool.add(key, PromptGuides(num_samples=8, num_correct=1, samples=[GuideSample(tuple(ids), 1.0, 5)]))
    return pool


def correct_reward(row, ids):
    return {"score": 1.0, "acc": 1.0}


def inject(batch, keys, pool, **spec):
    return inject_guidance(
        batch, pool, keys, InjectionSpec(**spec), eos_token_ids=[EOS], pad_token_id=PAD, reward_fn=correct_reward
    )


def grpo_advantages(batch):
    adv, _ = compute_grpo_outcome_advantage(
        token_level_rewards=batch.batch["rm_scores"],
        response_mask=batch.batch["response_mask"],
        index=batch.non_tensor_batch["uid"],
    )
    return adv


def test_all_wrong_group_gets_a_guide_with_positive_advantage():
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4)
    metrics = inject(batch, keys, pool_with("p0"))
    assert batch.batch[IS_GUIDE].tolist() == [False, False, False, True]
    adv = grpo_advantages(batch)
    guide_adv = adv[3][batch.batch["response_mask"][3].bool()]
    assert (guide_adv > 0).all()
    assert (adv[:3][batch.batch["response_mask"][:3].bool()] < 0).all()
    assert metrics["npo/inject/replaced"] == 1.0
    assert metrics["npo/inject/guide_rows"] == 1.0


def test_accuracy_exactly_at_gate_is_not_injected():
    # 3 of 5 correct = 0.6: the gate is strict (< 0.6).
    batch, keys = make_rollout([[1, 1, 1, 0, 0]], n=5)
    before = batch.batch["responses"].clone()
    metrics = inject(batch, keys, pool_with("p0"))
    assert torch.equal(batch.batch["responses"], before)
    assert not batch.batch[IS_GUIDE].any()
    assert metrics["npo/inject/below_gate"] == 0.0


def test_just_below_gate_is_injected():
    batch, keys = make_rollout([[1, 1, 0, 0, 0]], n=5)  # 0.4
    inject(batch, keys, pool_with("p0"))
    assert batch.batch[IS_GUIDE].sum() == 1


def test_group_without_guide_is_untouched():
    batch, keys = make_rollout([[0, 0, 0, 0], [0, 0, 0, 0]], n=4)
    before = {k: v.clone() for k, v in batch.batch.items()}
    metrics = inject(batch, keys, pool_with("p0"))
    for k in ("responses", "input_ids", "attention_mask", "position_ids", "rm_scores"):
        assert torch.equal(batch.batch[k][4:], before[k][4:]), k
    assert metrics["npo/inject/no_guide"] == 1.0
    assert metrics["npo/inject/replaced"] == 1.0


def test_batch_size_and_shapes_unchanged():
    batch, keys = make_rollout([[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], n=4)
    shapes = {k: tuple(v.shape) for k, v in batch.batch.items()}
    pool = pool_with("p0")
    pool.add("p2", PromptGuides(8, 2, [GuideSample((40, EOS), 1.0, 5)]))
    inject(batch, keys, pool)
    assert len(batch) == 12
    for k, shape in shapes.items():
        assert tuple(batch.batch[k].shape) == shape, k
    assert batch.batch[IS_GUIDE].tolist() == [False] * 3 + [True] + [False] * 7 + [True]


@pytest.mark.parametrize("mrope", [False, True])
def test_guide_row_is_consistent_and_positions_continue(mrope):
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4, mrope=mrope)
    guide = (30, 31, 32, 33)  # stored without EOS: injection must append it
    inject(batch, keys, pool_with("p0", guide))
    row = 3
    td = batch.batch
    expected = list(guide) + [EOS]
    assert td["responses"][row, : len(expected)].tolist() == expected
    assert td["responses"][row, len(expected) :].tolist() == [PAD] * (R - len(expected))
    assert td["responses"][row, td["response_mask"][row].bool()][-1].item() == EOS
    assert torch.equal(td["input_ids"][row, P:], td["responses"][row])
    assert torch.equal(td["input_ids"][row, :P], td["prompts"][row])
    assert td["attention_mask"][row, P:].tolist() == [1] * 5 + [0]
    assert td["response_mask"][row].tolist() == [1] * 5 + [0]
    positions = td["position_ids"][row]
    channels = positions if mrope else positions.unsqueeze(0)
    valid = td["attention_mask"][row].bool()
    for channel in channels:
        seq = channel[valid]
        last_prompt = channel[P - 1]
        assert torch.equal(channel[P : P + 5], last_prompt + torch.arange(1, 6)), "response continues the prompt"
        assert (seq[1:] - seq[:-1] >= 1).all(), "positions strictly increase over valid tokens"
    # the reward is recomputed and sits on the last valid response token
    assert td["rm_scores"][row].tolist() == [0, 0, 0, 0, 1.0, 0]
    assert batch.non_tensor_batch["acc"][row] == 1.0


def test_gate_uses_on_policy_accuracy_before_replacement():
    # 2 of 5 right (0.4) is below the gate; one correct guide would lift the group to 0.6, which is not. Gating on the
    # on-policy accuracy fills both allowed slots; re-checking the gate after each replacement would stop at one.
    batch, keys = make_rollout([[1, 1, 0, 0, 0]], n=5)
    pool = GuidePool()
    pool.add("p0", PromptGuides(8, 2, [GuideSample((30, EOS), 1.0, 5), GuideSample((31, EOS), 1.0, 5)]))
    metrics = inject(batch, keys, pool, slots_per_group=2)
    assert batch.batch[IS_GUIDE].tolist() == [False, False, False, True, True]
    assert metrics["npo/inject/below_gate"] == 1.0 and metrics["npo/inject/guide_rows"] == 2.0


def test_only_one_slot_per_group_when_the_prompt_has_one_guide():
    batch, keys = make_rollout([[1, 0, 0, 0], [1, 0, 0, 0]], n=4)
    pool = pool_with("p0")
    pool.add("p1", PromptGuides(8, 1, [GuideSample((50, EOS), 1.0, 5)]))
    metrics = inject(batch, keys, pool, slots_per_group=2)
    assert metrics["npo/inject/below_gate"] == 2.0
    assert batch.batch[IS_GUIDE].sum() == 2


def test_slot_policies_and_slot_count():
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4)
    pool = GuidePool()
    pool.add("p0", PromptGuides(8, 3, [GuideSample((30 + i, EOS), 1.0, 5) for i in range(3)]))
    inject(batch, keys, pool, slot="first", slots_per_group=2)
    assert batch.batch[IS_GUIDE].tolist() == [True, True, False, False]

    batch, keys = make_rollout([[0, 1, 0, 1]], n=4)
    inject(batch, keys, pool, slot="lowest_reward", slots_per_group=1)
    assert batch.batch[IS_GUIDE].tolist() == [False, False, True, False]


def test_a_group_always_keeps_one_on_policy_response():
    batch, keys = make_rollout([[0, 0]], n=2)
    pool = GuidePool()
    pool.add("p0", PromptGuides(8, 2, [GuideSample((30, EOS), 1.0, 5), GuideSample((31, EOS), 1.0, 5)]))
    inject(batch, keys, pool, slots_per_group=5)
    assert batch.batch[IS_GUIDE].sum() == 1


def test_guide_too_long_for_budget_is_skipped_not_truncated():
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4)
    before = batch.batch["responses"].clone()
    metrics = inject(batch, keys, pool_with("p0", tuple(range(30, 30 + R))))  # R tokens + EOS do not fit
    assert torch.equal(batch.batch["responses"], before)
    assert metrics["npo/inject/skipped_no_room"] == 1.0
    assert metrics["npo/inject/replaced"] == 0.0


def test_missing_accuracy_field_is_a_clear_error():
    batch, keys = make_rollout([[0, 0]], n=2)
    batch.non_tensor_batch.pop("acc")
    with pytest.raises(KeyError, match="'acc'"):
        inject(batch, keys, pool_with("p0"))


def only_score(row, ids):
    return {"score": 1.0}


def test_reward_function_missing_a_key_is_a_clear_error():
    batch, keys = make_rollout([[0, 0]], n=2)
    spec = InjectionSpec()
    with pytest.raises(KeyError, match=r"lacks key\(s\) \['acc'\]"):
        inject_guidance(batch, pool_with("p0"), keys, spec, eos_token_ids=[EOS], pad_token_id=PAD, reward_fn=only_score)


def test_rollout_log_probs_aligned_so_no_importance_weight():
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4, with_rollout_log_probs=True)
    inject(batch, keys, pool_with("p0"))
    old_log_probs = torch.full((4, R), -0.7)
    assert align_guide_rollout_log_probs(batch, old_log_probs) == 1
    td = batch.batch
    weight = torch.exp(old_log_probs - td["rollout_log_probs"])
    assert torch.allclose(weight[3], torch.ones(R))
    assert torch.allclose(td["rollout_log_probs"][:3], torch.full((3, R), -1.5)), "on-policy rows untouched"


def test_guide_advantage_metrics():
    batch, keys = make_rollout([[0, 0, 0, 0]], n=4)
    inject(batch, keys, pool_with("p0"))
    batch.batch["advantages"] = grpo_advantages(batch)
    metrics = guide_advantage_metrics(batch)
    assert metrics["npo/guide/advantage_mean"] == pytest.approx(1.5, rel=1e-3)  # (1 - 0.25) / std(0,0,0,1)
    assert metrics["npo/guide/response_length_mean"] == 4.0
    assert metrics["npo/guide/fraction_of_batch"] == 0.25
