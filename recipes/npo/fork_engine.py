"""The verl side of a fork: snapshots, guide sampling and rollback for :class:`npo_ext.fork.ForkManager`.

Every action goes through verl's own machinery: the worker group's checkpoint save/load (weights, optimizer,
LR scheduler, RNG), the ``StatefulDataLoader`` state, the trainer's step counter, and the rollout manager that
``fit()`` itself uses (vLLM replicas on GPU, the in-worker transformers rollout on CPU).

Rollout replicas follow verl 0.9.1's contract (``fit()`` and ``engine_workers.update_weights``): the actor saves and
loads while the replicas sleep, and only ``checkpoint_manager.update_weights`` wakes them, pushing the actor's live
weights. In hybrid mode a sleeping vLLM has discarded its weights and KV cache, so nothing may generate before that
push. ``fit()`` leaves the replicas awake at a step boundary and expects them awake after it: the engine puts them
to sleep before its first save or load, wakes them with the guide weights to collect, puts them to sleep once after
the last guide batch, and :meth:`wake_rollout` (called by the trainer at the end of the boundary) wakes them with
whatever the actor holds then.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

from npo_ext.guide_pool import GuideSample, PromptGuides, select_guides
from npo_ext.prompt_keys import check_one_prompt_per_key

if TYPE_CHECKING:
    from recipes.npo.npo_ray_trainer import RayNPOTrainer

logger = logging.getLogger(__name__)


class VerlForkEngine:
    """Implements ``npo_ext.fork.ForkEngine`` for a :class:`RayNPOTrainer`."""

    def __init__(self, trainer: RayNPOTrainer) -> None:
        self.trainer = trainer
        self._rollout_asleep = False  # fit() leaves the replicas awake at every step boundary

    # --- rollout replicas ----------------------------------------------------------------------------------------

    def _sleep_rollout(self) -> None:
        if not self._rollout_asleep:
            self.trainer.checkpoint_manager.sleep_replicas()
            self._rollout_asleep = True

    def wake_rollout(self) -> None:
        """Push the actor's current weights to the replicas (waking them) if the engine put them to sleep."""
        if self._rollout_asleep:
            self.trainer.checkpoint_manager.update_weights(self.trainer.global_steps - 1)
            self._rollout_asleep = False

    # --- snapshots -----------------------------------------------------------------------------------------------

    def save_snapshot(self, directory: Path, step: int) -> None:
        self._save_actor(directory, step)
        torch.save(self.trainer.data_state_at_boundary, directory / "data.pt")

    def save_guide_checkpoint(self, directory: Path, step: int) -> None:
        self._save_actor(directory, step)

    def _save_actor(self, directory: Path, step: int) -> None:
        self._sleep_rollout()
        directory.mkdir(parents=True, exist_ok=True)
        self.trainer.actor_rollout_wg.save_unmanaged_checkpoint(str(directory / "actor"), step)

    def load_guide_checkpoint(self, directory: Path) -> None:
        self._sleep_rollout()
        self.trainer.load_actor(directory / "actor", "guide checkpoint")

    def rollback(self, snapshot: Path, step: int) -> None:
        self._sleep_rollout()
        self.trainer.restore_folder(snapshot, step, what="fork snapshot")
        self.trainer.global_steps = step + 1  # fit() is between steps: the next one it runs is step + 1

    def on_guided_start(self) -> None:
        """Make a real checkpoint at the fork step carry the GUIDED state, so a kill in the window resumes in it."""
        trainer = self.trainer
        if not trainer.npo.checkpoint_at_rollback or trainer.config.trainer.save_freq <= 0:
            return
        fork_step = trainer.global_steps - 1
        existing = trainer.checkpoint_folder(fork_step)
        if (existing / "actor").is_dir():
            # θ_T was already saved as a real checkpoint before the fork: only its NPO state changes.
            trainer.write_checkpoint_state(existing)
            return
        self._sleep_rollout()
        trainer.global_steps = fork_step  # _save_checkpoint names the folder after global_steps
        try:
            trainer._save_checkpoint()
        finally:
            trainer.global_steps = fork_step + 1

    # --- guide collection ----------------------------------------------------------------------------------------

    def collect_guides(
        self, snapshot: Path, first_batch: int, num_batches: int, guide_step: int
    ) -> Iterator[tuple[int, dict[str, PromptGuides]]]:
        state = torch.load(snapshot / "data.pt", weights_only=False)
        batches = self.trainer.train_dataloader.peek(state, first_batch + num_batches)
        self.wake_rollout()  # the actor holds the guide weights θ_{T+Δ}
        for index, batch_dict in enumerate(batches):
            if index >= first_batch:
                yield index, self._collect_batch(batch_dict, guide_step)
        self._sleep_rollout()

    def _collect_batch(self, batch_dict: dict, guide_step: int) -> dict[str, PromptGuides]:
        trainer, npo = self.trainer, self.trainer.npo
        batch = DataProto.from_single_dict(batch_dict)
        batch.meta_info["temperature"] = trainer.config.actor_rollout_ref.rollout.temperature
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        keys = trainer.prompt_keys(batch.non_tensor_batch)
        check_one_prompt_per_key(keys, batch.non_tensor_batch["uid"], npo.prompt_key)
        gen_batch = trainer._get_gen_batch(batch)
        gen_batch.meta_info["global_steps"] = trainer.global_steps
        # The agent loop splits a batch evenly across its workers: pad as verl's _validate does, then drop the pad.
        padded, pad_size = pad_dataproto_to_divisor(
            gen_batch.repeat(npo.guide_n, interleave=True), trainer.config.actor_rollout_ref.rollout.agent.num_workers
        )
        output = unpad_dataproto(trainer.rollout.generate_sequences(padded), pad_size=pad_size)
        trainer.record_guide_sampling(output)

        acc = np.asarray(output.non_tensor_batch[npo.acc_key], dtype=np.float64)
        scores = output.batch["rm_scores"].sum(-1).tolist()
        lengths = output.batch["response_mask"].sum(-1).tolist()
        eos = trainer.eos_token_ids
        entries: dict[str, PromptGuides] = {}
        for prompt, key in enumerate(keys):
            rows = range(prompt * npo.guide_n, (prompt + 1) * npo.guide_n)
            ids = {r: output.batch["responses"][r, : int(lengths[r])].tolist() for r in rows}
            # verified-correct = judged correct *and* a complete trajectory (ended with an EOS id, not truncated)
            correct = [r for r in rows if acc[r] >= npo.guide_min_acc and ids[r] and ids[r][-1] in eos]
            keep = select_guides([ids[r] for r in correct], npo.guide_select, npo.max_guides_per_prompt)
            samples = [GuideSample(tuple(ids[correct[i]]), float(scores[correct[i]]), guide_step) for i in keep]
            entries[key] = PromptGuides(num_samples=npo.guide_n, num_correct=len(correct), samples=samples)
        return entries
