"""ExGRPO's experience replay inside verl's unmodified ``fit()``: the glue around ``npo_ext.replay_pool.ReplayPool``,
as the recipe's plug-in (``recipes.common.guidance_plugin``; the training dataset carries positions,
``recipes.common.positioned_dataset``, so a question can be asked again by position).

Three seams of the trainer call it:

* the training sampler (:meth:`ExperienceReplay.wrap_sampler`) leaves the questions retired before an epoch out of it;
* the dataloader wrapper hands each batch to :meth:`ExperienceReplay.compose`: once replay has started, up to
  ``guidance.replay_ratio`` of the batch's prompts are replaced by experience questions drawn from the pool, asked
  again from their dataset position (the fresh prompts they displace come back in a later epoch);
* ``_compute_old_log_prob`` first calls :meth:`ExperienceReplay.before_old_log_prob`: each experience question's
  stored responses go through one actor forward, the lowest-entropy one replaces one generated slot of its group.
  This runs there, not right after generation, because the rollout replicas are asleep by then (the forward needs
  the actor's memory);
* then :meth:`ExperienceReplay.after_old_log_prob` stores the step's correct responses with the actor's log-probs
  of them (the behaviour log-probs the exgrpo loss shaping divides by), retires fully solved prompts and may start
  replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Sampler
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from npo_ext.config import GuidanceConfig, NPOConfigError
from npo_ext.guide_pool import GuideSample
from npo_ext.injection import BEHAVIOUR_LOG_PROBS, IS_GUIDE, group_rows, write_response
from npo_ext.replay_pool import ReplayPool, ReplaySettings
from npo_ext.retiring_sampler import RetiringSampler
from npo_ext.signals import effective_signal, sampled_ratio_second_moment
from recipes.common.guidance_plugin import GuidancePlugin
from recipes.common.positioned_dataset import POSITION, PositionedDataset
from recipes.npo.forward_padding import pad_for_forward

if TYPE_CHECKING:
    from recipes.npo.npo_ray_trainer import RayNPOTrainer

PROMPT_KEY = "npo_prompt_key"  # a generated row's prompt key: verl's step batch keeps only the reward fields


def merge_collated(fresh: dict[str, Any], keep: int, experience: dict[str, Any]) -> dict[str, Any]:
    """The first ``keep`` rows of a collated batch followed by the rows of another one with the same fields."""
    if fresh.keys() != experience.keys():
        raise NPOConfigError(
            f"experience questions collate to fields {sorted(experience)}, the training batch to {sorted(fresh)}"
        )
    merged = {}
    for key, value in fresh.items():
        if isinstance(value, torch.Tensor):
            merged[key] = torch.cat([value[:keep], experience[key]])
        else:
            merged[key] = np.concatenate([value[:keep], experience[key]])
    return merged


class ExperienceReplay(GuidancePlugin):
    """One run's experience pool and its three seams (module docstring)."""

    def __init__(self, trainer: RayNPOTrainer) -> None:
        if not isinstance(trainer.train_dataset, PositionedDataset):
            raise NPOConfigError(
                "guidance.source=replay needs the training dataset with positions "
                "(recipes.common.positioned_dataset.PositionedDataset; recipes/npo/main_npo.py wraps it)"
            )
        super().__init__(trainer)
        guidance = trainer.guidance
        self.ratio = guidance.replay_ratio
        settings = ReplaySettings(
            n=trainer.config.actor_rollout_ref.rollout.n,
            start_accuracy=guidance.replay_start_accuracy,
            sigma=guidance.replay_sigma,
            max_responses_per_question=guidance.replay_max_responses,
        )
        self.pool = ReplayPool(settings, seed=guidance.seed)
        if guidance.replay_drop_retired:
            sampler = trainer.train_dataloader.sampler
            if not isinstance(sampler, RetiringSampler):
                raise NPOConfigError(
                    "guidance.replay_drop_retired needs the training sampler wrapped by ExperienceReplay.wrap_sampler "
                    "(recipes/npo/main_npo.py does this for the recipe's plug-in)"
                )
            sampler.retired = self.pool.retired_positions

    def compose(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Replace the batch's last prompts with this step's experience questions (none before replay starts)."""
        keys = self.trainer.prompt_keys(batch)
        drawn = self.pool.draw(int(len(keys) * self.ratio), exclude=set(keys))
        self.trainer.stage_metrics({"npo/replay/questions": float(len(drawn))})
        if not drawn:
            return batch
        dataset, collate = self.trainer.train_dataset, self.trainer.train_dataloader.collate_fn
        experience = collate([dataset[position] for _, position in drawn])
        found = self.trainer.prompt_keys(experience)
        if found != [key for key, _ in drawn]:
            raise NPOConfigError(
                f"the training dataset's rows at positions {[p for _, p in drawn]} have prompt keys {found}, the pool "
                f"stored {[k for k, _ in drawn]}: a resumed run must use the same data files"
            )
        return merge_collated(batch, len(keys) - len(drawn), experience)

    @classmethod
    def wrap_sampler(cls, sampler: Sampler[int], guidance: GuidanceConfig) -> Sampler[int]:
        """Later epochs leave retired questions out (``guidance.replay_drop_retired``)."""
        return RetiringSampler(sampler) if guidance.replay_drop_retired else sampler

    def state(self) -> ReplayPool:
        return self.pool

    def after_generation(self, prompts: DataProto, output: DataProto) -> None:
        """Carry each generated row's prompt key and dataset position into the step's batch."""
        output.non_tensor_batch[PROMPT_KEY] = np.array(self.trainer.prompt_keys(prompts.non_tensor_batch), dtype=object)
        output.non_tensor_batch[POSITION] = prompts.non_tensor_batch[POSITION]

    def before_old_log_prob(self, batch: DataProto) -> None:
        """Choose each experience question's lowest-entropy stored response and put it into its group."""
        if not self.pool.drawn:
            return
        keys = list(batch.non_tensor_batch[PROMPT_KEY])
        first_row = {keys[rows[0]]: rows[0] for rows in group_rows(batch.non_tensor_batch["uid"]).values()}
        candidates = {key: self.pool.candidates(key) for key in self.pool.drawn}
        rows = [first_row[key] for key, samples in candidates.items() for _ in samples]
        entropies = iter(self._mean_entropies(batch, rows, [s for samples in candidates.values() for s in samples]))
        for key, samples in candidates.items():
            self.pool.choose(key, [next(entropies) for _ in samples])
        self.trainer.inject(batch, batch, self.pool, keys)
        batch.meta_info["global_token_num"] = batch.batch["attention_mask"].sum(-1).tolist()

    def _mean_entropies(self, batch: DataProto, rows: list[int], candidates: list[GuideSample]) -> list[float]:
        """Mean token entropy of each candidate response under the current actor, written after its prompt's row."""
        trainer = self.trainer
        probe = batch.select_idxs(rows)
        eos, pad = trainer.eos_token_ids, trainer.tokenizer.pad_token_id
        for i, sample in enumerate(candidates):
            if write_response(probe, i, sample.response_ids, eos, pad) is None:
                raise ValueError(f"a stored response of {len(sample.response_ids)} tokens no longer fits the responses")
        world = trainer.actor_rollout_wg.world_size
        micro = trainer.config.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu or 1
        padded = pad_for_forward(probe, world * micro)
        padded.meta_info["global_token_num"] = padded.batch["attention_mask"].sum(-1).tolist()
        padded.meta_info.pop("images_seqlens", None)  # the step batch's (verl uses it for MFU only)
        output, _ = RayPPOTrainer._compute_old_log_prob(trainer, padded)
        entropy = output.batch["entropys"][: len(rows)]
        mask = probe.batch["response_mask"].float()
        return ((entropy * mask).sum(-1) / mask.sum(-1).clamp_min(1)).tolist()

    def after_old_log_prob(self, batch: DataProto, old_log_probs: torch.Tensor) -> None:
        """Maybe start replay; retire the questions solved n/n; once replay has started (or with
        ``replay_collect_before_start``) store this step's correct generated responses. A question's success count
        is over its whole group, the replayed row included, as ExGRPO's release counts it."""
        trainer = self.trainer
        nt, td = batch.non_tensor_batch, batch.batch
        keys = nt[PROMPT_KEY]
        correct = np.asarray(nt[trainer.npo.acc_key], dtype=np.float64) >= trainer.npo.guide_min_acc
        is_guide = td[IS_GUIDE].bool().tolist() if IS_GUIDE in td.keys() else [False] * len(batch)
        started = self.pool.update_start(float(np.mean([correct[r] for r in range(len(batch)) if not is_guide[r]])))
        collecting = started or trainer.guidance.replay_collect_before_start
        lengths = td["response_mask"].sum(-1).long().tolist()
        scores = td["rm_scores"].sum(-1).tolist()
        # a correct response cut off at the length limit counts as a success but is not replayed: written back, it
        # would need an EOS it never had, one token past the budget
        last_tokens = [int(td["responses"][r, length - 1]) if length else None for r, length in enumerate(lengths)]
        finished = [token in trainer.eos_token_ids for token in last_tokens]
        unfinished = 0
        for rows in group_rows(nt["uid"]).values():
            generated_correct = [r for r in rows if not is_guide[r] and correct[r]]
            successes = [
                GuideSample(
                    tuple(td["responses"][r, : lengths[r]].tolist()),
                    float(scores[r]),
                    trainer.global_steps,
                    provenance=self.pool.provenance,
                    behaviour_log_probs=tuple(old_log_probs[r, : lengths[r]].tolist()),
                )
                for r in generated_correct
                if finished[r] and collecting
            ]
            unfinished += sum(not finished[r] for r in generated_correct) if collecting else 0
            num_correct = sum(bool(correct[r]) for r in rows)
            self.pool.observe(keys[rows[0]], int(nt[POSITION][rows[0]]), successes, num_correct, len(rows))
        metrics = {
            "npo/replay/unfinished_successes": float(unfinished),
            "npo/replay/pool_questions": float(len(self.pool)),
            "npo/replay/retired": float(len(self.pool.retired)),
            "npo/replay/started": float(started),
        }
        replayed = [r for r in range(len(batch)) if is_guide[r]]
        if replayed:  # V from the recorded log-probs: NPO's sampled_w2 estimator, E_past[(π_cur / π_past)²] per token
            v = sampled_ratio_second_moment(
                old_log_probs[replayed], td[BEHAVIOUR_LOG_PROBS][replayed], td["response_mask"][replayed]
            )
            metrics["npo/signal/v"] = v
            q = trainer.staged_metric("npo/signal/q")
            if q is not None:
                metrics["npo/signal/s"] = effective_signal(q, v)
        trainer.stage_metrics(metrics)
