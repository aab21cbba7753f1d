"""Guidance injection: put a guide response (NPO's verified-correct near-future one, or any guidance source's) into
rollout groups.

This is the whole of NPO's change to a GRPO step. The batch keeps its size; one (or ``slots_per_group``) slot of a
group whose *on-policy* accuracy is below the gate is overwritten in place with a guide response, its reward is
recomputed, and it is marked in ``is_guide``. The RL objective is untouched: the guide row goes through the same
old-log-prob, advantage and clipped-loss path as every other row, with no importance-sampling correction.

RLEP appends instead of replacing (:func:`generate_with_appended_guides`): its groups are G fresh responses plus M
replays, so the run's ``rollout.n`` is G + M and the M replay rows are never generated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from verl import DataProto

from npo_ext.config import GuidanceConfig, NPOConfig
from npo_ext.guidance import GuidanceSource
from npo_ext.signals import failing_prompts, pass_at_1_q

# (row index, response token ids) -> reward dict with at least "score"; the caller knows the row's ground truth.
RewardFn = Callable[[int, list[int]], dict[str, float]]

IS_GUIDE = "is_guide"
# per response token of a guide row: the log-prob its writer gave it, where the source recorded one (ExGRPO's replay);
# 0 elsewhere. Read by the exgrpo loss shaping (recipes/npo/guided_loss.py).
BEHAVIOUR_LOG_PROBS = "npo_behaviour_log_probs"


@dataclass(frozen=True)
class InjectionSpec:
    """The injection knobs, a subset of :class:`npo_ext.config.NPOConfig` and ``GuidanceConfig`` (defaults theirs)."""

    gate: float = NPOConfig.gate
    slot: str = NPOConfig.slot
    slots_per_group: int = NPOConfig.slots_per_group
    acc_key: str = NPOConfig.acc_key
    gated: bool = GuidanceConfig.gated  # False: every group gets its slots (LUFFY, ExGRPO), whatever its accuracy


def group_rows(uids: Sequence[str]) -> dict[str, list[int]]:
    """Row indices of each rollout group, in first-seen order; GRPO groups are defined by ``uid``."""
    groups: dict[str, list[int]] = {}
    for row, uid in enumerate(uids):
        groups.setdefault(str(uid), []).append(row)
    return groups


def choose_slots(rows: list[int], scores: np.ndarray, policy: str, count: int) -> list[int]:
    """Which rows of a group to overwrite: the last / first ``count`` rows, or the lowest-reward ones."""
    if policy == "last":
        return rows[-count:]
    if policy == "first":
        return rows[:count]
    if policy == "lowest_reward":
        return sorted(rows, key=lambda r: (scores[r], -r))[:count]
    raise ValueError(f"unknown slot policy {policy!r}")


def inject_guidance(
    batch: DataProto,
    source: GuidanceSource,
    prompt_keys: Sequence[str],
    spec: InjectionSpec,
    *,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    reward_fn: RewardFn,
    prompt_fields: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, float]:
    """Overwrite gated slots of ``batch`` (a rollout output with rewards) in place; return ``npo/inject/*`` metrics.

    ``prompt_keys[row]`` is the source's key of that row's prompt. ``eos_token_ids`` are the ids generation stops on
    (the tokenizer's first, then the generation config's); a guide that ends with none of them gets the first
    appended. The batch must carry ``uid`` and the accuracy field ``spec.acc_key`` in ``non_tensor_batch``, and
    ``rm_scores`` with the score on the last response token. A source sees each group's prompt fields: row by row
    ``prompt_fields`` (the generation input's non-tensor fields, e.g. ``extra_info``), or the batch's own.
    """
    nt = batch.non_tensor_batch
    if spec.acc_key not in nt:
        raise KeyError(
            f"rollout batch has no per-response '{spec.acc_key}' field; the reward function must return it "
            f"(available: {sorted(nt)})"
        )
    if len(prompt_keys) != len(batch):
        raise ValueError(f"got {len(prompt_keys)} prompt keys for a batch of {len(batch)} rows")

    fields = nt if prompt_fields is None else prompt_fields
    acc = np.asarray(nt[spec.acc_key], dtype=np.float64)
    scores = batch.batch["rm_scores"].sum(-1).float().numpy()
    is_guide = torch.zeros(len(batch), dtype=torch.bool)
    counts = dict(groups=0, below_gate=0, replaced=0, no_guide=0, guide_rows=0, skipped_no_room=0)

    for rows in group_rows(nt["uid"]).values():
        counts["groups"] += 1
        if spec.gated and acc[rows].mean() >= spec.gate:
            continue
        counts["below_gate"] += 1
        guides = source.guides(prompt_keys[rows[0]], {key: values[rows[0]] for key, values in fields.items()})
        if not guides:
            counts["no_guide"] += 1
            continue
        usable = min(spec.slots_per_group, len(guides), len(rows) - 1)
        written = 0
        for row, guide in zip(choose_slots(rows, scores, spec.slot, usable), guides, strict=False):
            if _write_row(batch, row, list(guide.response_ids), eos_token_ids, pad_token_id, reward_fn):
                is_guide[row] = True
                written += 1
                if guide.behaviour_log_probs is not None:
                    _write_behaviour_log_probs(batch, row, guide.behaviour_log_probs)
            else:
                counts["skipped_no_room"] += 1
        counts["guide_rows"] += written
        counts["replaced"] += int(written > 0)

    batch.batch[IS_GUIDE] = is_guide
    return {f"npo/inject/{k}": float(v) for k, v in counts.items()}


def generate_with_appended_guides(
    prompts: DataProto,
    generate: Callable[[DataProto], DataProto],
    source: GuidanceSource,
    prompt_keys: Sequence[str],
    per_group: int,
    *,
    max_response_length: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    reward_fn: RewardFn,
) -> tuple[DataProto, dict[str, float]]:
    """Append up to ``per_group`` guides to each group (RLEP); returns the full batch and ``npo/inject/*`` metrics.

    ``prompts`` holds rollout.n = G + M rows per group (``uid``). A prompt for which the source has m ≤ M guides that
    fit the response budget gets G + M − m generated responses and m guide rows, so every group keeps rollout.n rows
    and advantages are taken over all of them. Only the rows to generate are passed to ``generate``; a guide row
    starts as a copy of its group's first generated row (prompt, images, positions) whose response is then written.
    """
    nt = prompts.non_tensor_batch
    if len(prompt_keys) != len(prompts):
        raise ValueError(f"got {len(prompt_keys)} prompt keys for a batch of {len(prompts)} rows")
    to_generate: list[int] = []
    guide_of_row: dict[int, list[int]] = {}
    first_of_row: dict[int, int] = {}
    counts = dict(groups=0, below_gate=0, replaced=0, no_guide=0, guide_rows=0, skipped_no_room=0)
    for rows in group_rows(nt["uid"]).values():
        counts["groups"] += 1
        counts["below_gate"] += 1  # ungated: every group is offered guides
        offered = source.guides(prompt_keys[rows[0]], {key: values[rows[0]] for key, values in nt.items()})
        fitting = [
            list(g.response_ids) for g in offered if len(with_eos(g.response_ids, eos_token_ids)) <= max_response_length
        ]
        counts["skipped_no_room"] += len(offered) - len(fitting)
        guides = fitting[: min(per_group, len(rows) - 1)]
        fresh = rows[: len(rows) - len(guides)]
        to_generate += fresh
        for row, ids in zip(rows[len(fresh) :], guides, strict=True):
            guide_of_row[row], first_of_row[row] = ids, fresh[0]
        counts["no_guide"] += int(not guides)
        counts["replaced"] += int(bool(guides))
        counts["guide_rows"] += len(guides)

    generated = generate(prompts.select_idxs(to_generate))
    position = {row: i for i, row in enumerate(to_generate)}
    output = generated.select_idxs([position[first_of_row.get(row, row)] for row in range(len(prompts))])
    for row, ids in guide_of_row.items():
        if not _write_row(output, row, ids, eos_token_ids, pad_token_id, reward_fn):
            raise ValueError(
                f"a guide of {len(with_eos(ids, eos_token_ids))} tokens does not fit the generated responses' "
                f"width {output.batch['responses'].shape[1]} (max_response_length={max_response_length})"
            )
    is_guide = torch.zeros(len(output), dtype=torch.bool)
    is_guide[list(guide_of_row)] = True
    output.batch[IS_GUIDE] = is_guide
    return output, {f"npo/inject/{k}": float(v) for k, v in counts.items()}


def with_eos(ids: Sequence[int], eos_token_ids: Sequence[int]) -> list[int]:
    """The response as it is trained: the first EOS id appended unless it already ends with one of them."""
    return list(ids) if ids and ids[-1] in eos_token_ids else [*ids, eos_token_ids[0]]


def write_response(
    batch: DataProto, row: int, ids: Sequence[int], eos_token_ids: Sequence[int], pad_token_id: int
) -> list[int] | None:
    """Put a response into ``row`` after its prompt (tokens, masks, positions); returns the written ids (EOS
    included), or None if they do not fit the response width. Rewards are the caller's."""
    td = batch.batch
    width = td["responses"].shape[1]
    prompt_width = td["prompts"].shape[1]
    ids = with_eos(ids, eos_token_ids)
    if len(ids) > width:
        return None
    length = len(ids)

    response = torch.full((width,), pad_token_id, dtype=td["responses"].dtype)
    response[:length] = torch.tensor(ids, dtype=td["responses"].dtype)
    valid = torch.zeros(width, dtype=td["attention_mask"].dtype)
    valid[:length] = 1

    td["responses"][row] = response
    td["input_ids"][row, prompt_width:] = response
    td["attention_mask"][row, prompt_width:] = valid
    if "response_mask" in td.keys():
        td["response_mask"][row] = valid.to(td["response_mask"].dtype)
    _continue_positions(td["position_ids"], row, prompt_width)
    return ids


def _write_row(
    batch: DataProto, row: int, ids: list[int], eos_token_ids: Sequence[int], pad_token_id: int, reward_fn: RewardFn
) -> bool:
    """Write one guide response into ``row`` and score it; False if it cannot end with EOS inside the budget."""
    td = batch.batch
    ids = write_response(batch, row, ids, eos_token_ids, pad_token_id)
    if ids is None:
        return False
    length = len(ids)

    reward = reward_fn(row, ids)
    extra_keys = batch.meta_info.get("reward_extra_keys", [])
    missing = [k for k in ["score", *extra_keys] if k not in reward]
    if missing:
        raise KeyError(f"reward function result for the guide row lacks key(s) {missing} (got {sorted(reward)})")
    td["rm_scores"][row] = 0.0
    td["rm_scores"][row, length - 1] = float(reward["score"])
    for key in extra_keys:
        batch.non_tensor_batch[key][row] = reward[key]
    if "rollout_log_probs" in td.keys():
        # Placeholder until the actor's old log-probs exist; see align_guide_rollout_log_probs.
        td["rollout_log_probs"][row] = 0.0
    return True


def _write_behaviour_log_probs(batch: DataProto, row: int, log_probs: Sequence[float]) -> None:
    """The writer's log-probs of a guide row's tokens; an EOS the writer did not produce counts as certain (0)."""
    td = batch.batch
    if BEHAVIOUR_LOG_PROBS not in td.keys():
        td[BEHAVIOUR_LOG_PROBS] = torch.zeros(td["responses"].shape, dtype=torch.float32)
    values = torch.tensor(log_probs[: td["responses"].shape[1]], dtype=torch.float32)
    td[BEHAVIOUR_LOG_PROBS][row] = 0.0
    td[BEHAVIOUR_LOG_PROBS][row, : len(values)] = values


def _continue_positions(position_ids: torch.Tensor, row: int, prompt_width: int) -> None:
    """Response positions continue from the last prompt position, per channel.

    Works for text ``(bs, L)`` and Qwen-VL M-RoPE ``(bs, 3|4, L)`` layouts: after the prompt's last (text) token all
    rope channels advance together by one per token. Prompts are left-padded, so index ``prompt_width - 1`` is
    always a real prompt token. Padding after the response gets the same running positions (it is masked out).
    """
    width = position_ids.shape[-1] - prompt_width
    steps = torch.arange(1, width + 1, dtype=position_ids.dtype)
    if position_ids.dim() == 2:
        position_ids[row, prompt_width:] = position_ids[row, prompt_width - 1] + steps
    elif position_ids.dim() == 3:
        position_ids[row, :, prompt_width:] = position_ids[row, :, prompt_width - 1 : prompt_width] + steps
    else:
        raise ValueError(f"unsupported position_ids shape {tuple(position_ids.shape)}")


def align_guide_rollout_log_probs(batch: DataProto, old_log_probs: torch.Tensor) -> int:
    """Make rollout-correction weights exactly 1 on guide rows; returns how many rows were aligned.

    Guide tokens were never sampled by the rollout engine at the current weights, so any ``rollout_log_probs`` for
    them are meaningless. Setting them to the actor's freshly computed ``old_log_probs`` makes verl's optional
    TIS / rollout-correction weight ``exp(old - rollout)`` equal 1, i.e. no importance weight, as in the paper.
    """
    td = batch.batch
    if IS_GUIDE not in td.keys() or "rollout_log_probs" not in td.keys():
        return 0
    mask = td[IS_GUIDE].bool()
    td["rollout_log_probs"][mask] = old_log_probs[mask].to(td["rollout_log_probs"].dtype)
    return int(mask.sum())


def on_policy_metrics(batch: DataProto, acc_key: str) -> dict[str, float]:
    """Mean reward, accuracy and response length of a rollout batch *before* injection: the curves that compare with
    GRPO, next to verl's own (mixed-batch) ``critic/score/mean``."""
    scores = batch.batch["rm_scores"].sum(-1).float()
    metrics = {
        "npo/onpolicy/score_mean": float(scores.mean()),
        "npo/onpolicy/response_length_mean": float(batch.batch["response_mask"].sum(-1).float().mean()),
    }
    if acc_key in batch.non_tensor_batch:
        metrics["npo/onpolicy/acc_mean"] = float(np.asarray(batch.non_tensor_batch[acc_key], dtype=np.float64).mean())
    return metrics


def source_q_metrics(batch: DataProto, acc_key: str, guide_min_acc: float) -> dict[str, float]:
    """Empirical Q of an external source (teacher, experience file) on one mixed batch, NPO's estimator with k = 1:
    of the groups whose generated responses are all wrong, the fraction given a verified-correct guide.
    ``npo/signal/q_prompts`` counts those groups; Q is left out when there are none (the batch cannot measure it)."""
    td, nt = batch.batch, batch.non_tensor_batch
    if IS_GUIDE not in td.keys():
        return {}
    is_guide = td[IS_GUIDE].bool().tolist()
    acc = np.asarray(nt[acc_key], dtype=np.float64)
    policy_acc, guide_correct = [], []
    for rows in group_rows(nt["uid"]).values():
        generated = [r for r in rows if not is_guide[r]]
        policy_acc.append(float(acc[generated].mean()))
        guide_correct.append(int(any(acc[r] >= guide_min_acc for r in rows if is_guide[r])))
    failing = len(failing_prompts(policy_acc))
    if not failing:
        return {"npo/signal/q_prompts": 0.0}
    return {
        "npo/signal/q": pass_at_1_q(policy_acc, guide_correct),
        "npo/signal/q_k": 1.0,
        "npo/signal/q_prompts": float(failing),
    }


def guide_response_tokens(batch: DataProto) -> int:
    """Response tokens of a mixed batch's guide rows."""
    td = batch.batch
    if IS_GUIDE not in td.keys():
        return 0
    return int((td["response_mask"] * td[IS_GUIDE].unsqueeze(-1)).sum())


def guide_advantage_metrics(batch: DataProto) -> dict[str, float]:
    """Mean (per-row) advantage and mean length of guide rows (only when the batch has any)."""
    td = batch.batch
    if IS_GUIDE not in td.keys() or "advantages" not in td.keys():
        return {}
    mask = td[IS_GUIDE].bool()
    if not bool(mask.any()):
        return {}
    response_mask = td["response_mask"][mask].float()
    lengths = response_mask.sum(-1)
    row_advantage = (td["advantages"][mask].float() * response_mask).sum(-1) / lengths.clamp_min(1)
    return {
        "npo/guide/advantage_mean": float(row_advantage.mean()),
        "npo/guide/response_length_mean": float(lengths.mean()),
        "npo/guide/fraction_of_batch": float(mask.float().mean()),
    }
