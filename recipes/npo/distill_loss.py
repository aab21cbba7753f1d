"""Near-future distillation's loss term (``npo.distill``): coef × a per-token KL estimate of the student against
θ_{T+Δ}, added to verl's PPO loss during a guided window.

The trainer puts θ_{T+Δ}'s log-probs of the sampled tokens (``npo_teacher_log_prob``) and the tokens that carry the
term (``npo_distill_mask``) in the batch, and names the coefficient and estimator in its meta info; the NPO worker's
loss function (:func:`recipes.npo.guided_loss.guided_ppo_loss`) calls :func:`add_distillation` on each micro-batch.
The estimator is verl's ``kl_penalty`` and the aggregation verl's ``agg_loss`` with the update's global token count,
as verl's own reference-KL loss does; the batch keys are our own, so a configured reference KL stays untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import agg_loss, kl_penalty
from verl.utils import tensordict_utils as tu
from verl.utils.metric import Metric
from verl.workers.utils.padding import no_padding_2_padding

from npo_ext.injection import IS_GUIDE

TEACHER_LOG_PROB = "npo_teacher_log_prob"
DISTILL_MASK = "npo_distill_mask"
DISTILL_COEF, DISTILL_ESTIMATOR = "npo_distill_coef", "npo_distill_estimator"
KL_METRIC, COEF_METRIC = "actor/npo_distill_kl", "actor/npo_distill_coef"


def mark_distillation(batch: DataProto, coef: float, estimator: str, skip_guide_rows: bool) -> None:
    """Before the actor update (the teacher's log-probs already in the batch): which tokens carry the term, and
    with what coefficient and estimator."""
    if TEACHER_LOG_PROB not in batch.batch.keys():
        raise RuntimeError(f"a distilled update needs the teacher's log-probs ({TEACHER_LOG_PROB}) in the batch")
    mask = batch.batch["response_mask"].bool()
    if skip_guide_rows and IS_GUIDE in batch.batch.keys():
        mask = mask & ~batch.batch[IS_GUIDE].bool().unsqueeze(-1)
    batch.batch[DISTILL_MASK] = mask
    batch.meta_info[DISTILL_COEF] = float(coef)
    batch.meta_info[DISTILL_ESTIMATOR] = estimator


def add_distillation(
    config: Any, model_output: dict, data: Any, loss: torch.Tensor, metrics: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``loss`` (verl's PPO loss of this micro-batch, which set ``config.global_batch_info``) plus the distillation
    term, when the batch asks for one."""
    coef = tu.get_non_tensor_data(data, DISTILL_COEF, None)
    if coef is None:
        return loss, metrics
    estimator = tu.get_non_tensor_data(data, DISTILL_ESTIMATOR, None)
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    padded = data.select(TEACHER_LOG_PROB, DISTILL_MASK).to_padded_tensor()
    kld = kl_penalty(logprob=log_prob, ref_logprob=padded[TEACHER_LOG_PROB], kl_penalty=estimator)
    kl = agg_loss(
        loss_mat=kld,
        loss_mask=padded[DISTILL_MASK].bool(),
        loss_agg_mode=config.loss_agg_mode,
        **config.global_batch_info,
    )
    metrics[KL_METRIC] = Metric(metrics["actor/pg_loss"].aggregation, kl.detach())
    metrics[COEF_METRIC] = float(coef)
    return loss + float(coef) * kl, metrics


def teacher_kl(old_log_prob: torch.Tensor, teacher_log_prob: torch.Tensor, mask: torch.Tensor) -> float:
    """Token mean of k3 (an unbiased estimate of KL(π_old || teacher) on π_old's samples) over ``mask``."""
    values = kl_penalty(old_log_prob, teacher_log_prob, "k3")
    return float((values * mask).sum() / mask.sum().clamp_min(1))
