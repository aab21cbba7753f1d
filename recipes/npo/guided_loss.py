"""Guide-token loss shaping (``guidance.loss_shaping``) through verl's policy-loss registry: ``loss_mode=npo_guided``.

verl 0.9.1 calls a registered policy loss with the standard per-token tensors only, so the trainer marks the guide
tokens in the batch (``npo_off_policy``; for ``behaviour_ratio`` also the replayed tokens' recorded log-probs) and
names the shaping and its γ in the batch's meta info; the NPO worker's loss function, :func:`guided_ppo_loss`, reads
them for each micro-batch, hands them to the registered loss, and otherwise runs verl's own ``ppo_loss`` (entropy,
KL, aggregation, metrics). The per-token formulas are ``npo_ext.loss_shaping``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss

from npo_ext.config import GuidanceConfig
from npo_ext.injection import BEHAVIOUR_LOG_PROBS, IS_GUIDE
from npo_ext.loss_shaping import guided_policy_loss, shaped_weight
from recipes.npo.distill_loss import add_distillation

LOSS_MODE = "npo_guided"
OFF_POLICY = "npo_off_policy"
SHAPING, GAMMA = "npo_loss_shaping", "npo_shaping_gamma"
# the shaped weight's sum and the guide-token count of a micro-batch, summed by verl over micro-batches (and averaged
# over ranks, the same for both): their ratio is the token mean over the whole update (shaped_weight_mean)
WEIGHT_SUM, GUIDE_TOKENS = "actor/npo_shaped_weight_sum", "actor/npo_guide_tokens"
SHAPED_WEIGHT_MEAN = "actor/npo_shaped_weight_mean"

_micro_batch: dict[str, Any] = {}  # the guide tokens of the micro-batch whose loss is being computed


def mark_guide_tokens(batch: DataProto, guidance: GuidanceConfig) -> None:
    """Before the actor update: mark the response tokens of guide rows and name the shaping for the loss."""
    mask = batch.batch["response_mask"].bool()
    is_guide = batch.batch[IS_GUIDE] if IS_GUIDE in batch.batch.keys() else torch.zeros(len(batch), dtype=torch.bool)
    batch.batch[OFF_POLICY] = mask & is_guide.bool().unsqueeze(-1)
    if guidance.loss_shaping == "behaviour_ratio" and BEHAVIOUR_LOG_PROBS not in batch.batch.keys():
        batch.batch[BEHAVIOUR_LOG_PROBS] = torch.zeros(mask.shape)  # no replayed rows this step
    batch.meta_info[SHAPING] = guidance.loss_shaping
    batch.meta_info[GAMMA] = guidance.gamma


def guided_ppo_loss(config: Any, model_output: dict, data: Any, dp_group: Any = None) -> Any:
    """verl's ``ppo_loss`` with this micro-batch's guide tokens made visible to the ``npo_guided`` policy loss, plus
    near-future distillation's KL term when the batch carries one (:mod:`recipes.npo.distill_loss`)."""
    shaping = tu.get_non_tensor_data(data, SHAPING, None)
    if shaping is None:
        return add_distillation(config, model_output, data, *ppo_loss(config, model_output, data, dp_group))
    _micro_batch.update(
        shaping=shaping,
        gamma=float(tu.get_non_tensor_data(data, GAMMA, 0.1)),
        off_policy=data.select(OFF_POLICY).to_padded_tensor()[OFF_POLICY].bool(),
        behaviour_log_prob=(
            data.select(BEHAVIOUR_LOG_PROBS).to_padded_tensor()[BEHAVIOUR_LOG_PROBS]
            if shaping == "behaviour_ratio"
            else None
        ),
    )
    try:
        loss, metrics = ppo_loss(config, model_output, data, dp_group)
    finally:
        _micro_batch.clear()
    for key in (WEIGHT_SUM, GUIDE_TOKENS):  # ppo_loss makes every policy-loss metric a mean over micro-batches
        metrics[key] = Metric(AggregationType.SUM, metrics[key].values[0])
    return add_distillation(config, model_output, data, loss, metrics)


@register_policy_loss(LOSS_MODE)
def npo_guided_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clipped PPO (verl's vanilla, dual clip included) on on-policy tokens, the shaped loss on guide tokens."""
    if not _micro_batch:
        raise RuntimeError(
            f"policy_loss.loss_mode={LOSS_MODE} needs the guide-token marks the NPO trainer adds when "
            "guidance.loss_shaping is not 'none' (and the NPO worker's loss function)"
        )
    off_policy = _micro_batch["off_policy"] & response_mask.bool()
    loss_mat = guided_policy_loss(
        log_prob,
        old_log_prob,
        advantages,
        off_policy,
        _micro_batch["shaping"],
        behaviour_log_prob=_micro_batch["behaviour_log_prob"],
        gamma=_micro_batch["gamma"],
        clip_low=config.clip_ratio_low,
        clip_high=config.clip_ratio_high,
        dual_clip=config.get("clip_ratio_c", 3.0),
    )
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    loss = agg_loss(loss_mat, response_mask, loss_agg_mode, **config.global_batch_info)
    guide_tokens = off_policy.sum()
    weight = shaped_weight(log_prob.detach(), _micro_batch["behaviour_log_prob"], _micro_batch["gamma"])
    metrics = {
        "actor/npo_guide_token_frac": (guide_tokens / response_mask.sum().clamp_min(1)).item(),
        WEIGHT_SUM: (weight * off_policy).sum().item(),
        GUIDE_TOKENS: float(guide_tokens),
    }
    return loss, metrics


def shaped_weight_mean(metrics: dict[str, Any]) -> None:
    """After the update: the token mean of the shaped weight over every guide token (absent without guide tokens),
    from the per-mini-batch sums verl collected."""
    weights, tokens = metrics.pop(WEIGHT_SUM, None), metrics.get(GUIDE_TOKENS)
    if weights is not None and float(np.sum(tokens)) > 0:
        metrics[SHAPED_WEIGHT_MEAN] = [float(np.sum(weights) / np.sum(tokens))]
