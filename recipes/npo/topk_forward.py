"""What V needs of the actor's distribution at response tokens, through verl's own forward pass.

V (``npo_ext.signals.chi2_topk_terms``) needs, per guide token, the guide policy's top-k ids and log-probs, ids drawn
from its tail with their log-probs, and its tail mass (``npo_ext.topk.guide_topk``); later the current policy's
log-probs on those same ids and its own mass outside the top-k ids (``npo_ext.topk.log_probs_at``). Both come from
one forward of the actor over the stored sequences, with verl 0.9.1's top-k distillation hook: the engine hands each
micro-batch's logits to a "logits processor" that returns per-token values, and packs per-position ``teacher_ids`` /
``teacher_logprobs`` the same way as the input ids (``left_right_2_no_padding``). The processor here keeps a few
numbers per token (chunked over positions), so besides the logits verl's forward already holds, the peak is a few
``chunk × vocab`` floats. Multimodal inputs, remove-padding and micro-batching are verl's; Ulysses sequence
parallelism is not supported (the per-token ids would need verl's slicing).
"""

from __future__ import annotations

from typing import Any

import torch
from verl import DataProto
from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

from npo_ext.topk import DRAW_SEED, GuideTopK, guide_topk, log_probs_at
from recipes.npo.fork_host import ForkHost
from recipes.npo.forward_padding import pad_for_forward

GIVEN_IDS, GIVEN_LOG_PROBS = "teacher_ids", "teacher_logprobs"  # the keys verl packs per position
TOPK_K, TOPK_DRAWS = "npo_topk_k", "npo_topk_draws"
ID_KEY, LOG_PROB_KEY, TAIL_KEY = "npo_topk_id_{}", "npo_topk_log_prob_{}", "npo_topk_tail"
MAX_EXACT_ID = 2**24
SEQUENCE_TENSORS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "prompts",
    "responses",
    "response_mask",
)  # ids travel as float32 per-token values, exact below this


class TopKCapture:
    """A verl engine "loss function" that only records per-token values from the logits and returns no loss.

    Without given ids it records what the guide keeps (top-k ids and log-probs, then the tail draws' ids and
    log-probs, as columns k.. of the same keys, and the tail mass); with ``teacher_ids`` in the micro-batch, the
    log-probs of those ids and the mass outside the first k of them.
    """

    def __init__(self, k: int, draws: int, score_given_ids: bool) -> None:
        self.k, self.draws, self.score_given_ids = k, draws, score_given_ids
        self.generator: torch.Generator | None = None

    def __call__(self, student_logits: torch.Tensor | None = None, data: Any = None, **_: Any):
        if student_logits is None:  # the loss call that follows the forward: nothing to optimise
            return torch.zeros(()), {}
        logits = student_logits.squeeze(0)
        if logits.shape[-1] > MAX_EXACT_ID:
            raise ValueError(f"vocabulary of {logits.shape[-1]} ids is too large for float32 id transport")
        if self.score_given_ids:
            ids = data[GIVEN_IDS].values().long()
            if ids.shape[0] != logits.shape[0]:
                raise NotImplementedError(
                    f"per-token ids ({ids.shape[0]}) do not line up with the logits ({logits.shape[0]}): "
                    "V measurement does not support Ulysses sequence parallelism"
                )
            values, tail = log_probs_at(logits, ids, exclude=self.k)
            out = {LOG_PROB_KEY.format(j): values[:, j].unsqueeze(0) for j in range(ids.shape[1])}
            return {**out, TAIL_KEY: tail.unsqueeze(0)}
        if self.generator is None:
            self.generator = torch.Generator(device=logits.device).manual_seed(DRAW_SEED)
        kept = guide_topk(logits, self.k, self.draws, generator=self.generator)
        ids = torch.cat([kept.ids, kept.draw_ids], -1)
        values = torch.cat([kept.log_probs, kept.draw_log_probs], -1)
        out = {ID_KEY.format(j): ids[:, j].float().unsqueeze(0) for j in range(ids.shape[1])}
        out.update({LOG_PROB_KEY.format(j): values[:, j].unsqueeze(0) for j in range(ids.shape[1])})
        return {**out, TAIL_KEY: kept.tail.unsqueeze(0)}


def _forward(trainer: ForkHost, batch: DataProto, k: int, draws: int, given_ids: torch.Tensor | None) -> dict[str, Any]:
    """One actor forward over ``batch`` (padded to the worker count); returns the per-token outputs, unpadded."""
    size = len(batch)
    columns = k + draws if given_ids is None else given_ids.shape[-1]
    tensors = {key: batch.batch[key] for key in SEQUENCE_TENSORS}
    if given_ids is not None:
        # response token t is predicted at sequence position prompt_width - 1 + t (prompts are left-padded)
        full = torch.zeros((size, tensors["input_ids"].shape[1], columns), dtype=torch.long)
        start = tensors["prompts"].shape[1] - 1
        full[:, start : start + given_ids.shape[1]] = given_ids
        tensors[GIVEN_IDS] = full
        tensors[GIVEN_LOG_PROBS] = torch.zeros(full.shape)
    non_tensors = {key: batch.non_tensor_batch[key] for key in ("multi_modal_inputs",) if key in batch.non_tensor_batch}
    # without dynamic batch sizes verl's engine needs every rank's rows to be a whole number of micro-batches
    world = trainer.actor_rollout_wg.world_size
    micro = min(trainer.config.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu or size, -(-size // world))
    padded = pad_for_forward(DataProto.from_dict(tensors=tensors, non_tensors=non_tensors), world * micro)
    padded.meta_info = {
        "temperature": trainer.config.actor_rollout_ref.rollout.temperature,
        "global_token_num": padded.batch["attention_mask"].sum(-1).tolist(),
    }
    data = padded.to_tensordict()
    data = left_right_2_no_padding(data)
    tu.assign_non_tensor(
        data,
        calculate_entropy=False,
        compute_loss=True,
        distillation_use_topk=True,
        distillation_only=True,
        micro_batch_size_per_gpu=micro,
        **{TOPK_K: k, TOPK_DRAWS: draws},
    )
    output = trainer.actor_rollout_wg.npo_topk_forward(data)
    keys = [TAIL_KEY, *(LOG_PROB_KEY.format(j) for j in range(columns))]
    if given_ids is None:
        keys += [ID_KEY.format(j) for j in range(columns)]
    return {key: no_padding_2_padding(tu.get(output, key), data)[:size] for key in keys}


def actor_topk(trainer: ForkHost, batch: DataProto, k: int, draws: int) -> GuideTopK:
    """What the guide keeps for V per response token (``npo_ext.topk.guide_topk``): ``(rows, response_len, ...)``."""
    out = _forward(trainer, batch, k, draws, None)
    ids = torch.stack([out[ID_KEY.format(j)] for j in range(k + draws)], -1).round().long()
    values = torch.stack([out[LOG_PROB_KEY.format(j)] for j in range(k + draws)], -1).float()
    return GuideTopK(ids[..., :k], values[..., :k], ids[..., k:], values[..., k:], out[TAIL_KEY].float())


def actor_log_probs_at(
    trainer: ForkHost, batch: DataProto, ids: torch.Tensor, exclude: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The actor's log-probs of the given ``(rows, response_len, n)`` ids, same shape, and its log-mass outside the
    first ``exclude`` of them ``(rows, response_len)``."""
    n = ids.shape[-1]
    out = _forward(trainer, batch, exclude, 0, ids)
    return torch.stack([out[LOG_PROB_KEY.format(j)] for j in range(n)], -1).float(), out[TAIL_KEY].float()
