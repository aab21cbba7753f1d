"""The verl side of a fork: snapshots, guide sampling and rollback for :class:`npo_ext.fork.ForkManager`.

Every action goes through verl's own machinery: the worker group's checkpoint save/load (weights, optimizer,
LR scheduler, RNG), the ``StatefulDataLoader`` state, the trainer's step counter, and the rollout manager that
``fit()`` itself uses (vLLM replicas on GPU, the in-worker transformers rollout on CPU).
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

from npo_ext.guide_pool import GuideSample, PromptGuides, select_guides

if TYPE_CHECKING:
    from recipes.npo.npo_ray_trainer import RayNPOTrainer

logger = logging.getLogger(__name__)


class VerlForkEngine:
    """Implements ``npo_ext.fork.ForkEngine`` for a :class:`RayNPOTrainer`."""

    def __init__(self, trainer: RayNPOTrainer) -> None:
        self.trainer = trainer

    # --- snapshots -----------------------------------------------------------------------------------------------

    def save_snapshot(self, directory: Path, step: int) -> None:
        self._save_actor(directory, step)
        torch.save(self.trainer.data_state_at_boundary, directory / "data.pt")

    def save_guide_checkpoint(self, directory: Path, step: int) -> None:
        self._save_actor(directory, step)

    def _save_actor(self, directory: Path, step: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.trainer.actor_rollout_wg.save_unmanaged_checkpoint(str(directory / "actor"), step)

    def load_guide_checkpoint(self, directory: Path) -> None:
        self.trainer.load_actor(directory / "actor", "guide checkpoint")
        self.trainer.checkpoint_manager.update_weights(self.trainer.global_steps)

    def rollback(self, snapshot: Path, step: int) -> None:
        self.trainer.restore_folder(snapshot, step, what="fork snapshot")
        self.trainer.global_steps = step + 1  # fit() is between steps: the next one it runs is step + 1
        self.trainer.checkpoint_manager.update_weights(step)

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
        for index, batch_dict in enumerate(batches):
            if index >= first_batch:
                yield index, self._collect_batch(batch_dict, guide_step)

    def _collect_batch(self, batch_dict: dict, guide_step: int) -> dict[str, PromptGuides]:
        trainer, npo = self.trainer, self.trainer.npo
        batch = DataProto.from_single_dict(batch_dict)
        batch.meta_info["temperature"] = trainer.config.actor_rollout_ref.rollout.temperature
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        keys = trainer.prompt_keys(batch.non_tensor_batch)
        gen_batch = trainer._get_gen_batch(batch)
        gen_batch.meta_info["global_steps"] = trainer.global_steps
        output = trainer.rollout.generate_sequences(gen_batch.repeat(npo.guide_n, interleave=True))
        trainer.checkpoint_manager.sleep_replicas()

        acc = np.asarray(output.non_tensor_batch[npo.acc_key], dtype=np.float64)
        scores = output.batch["rm_scores"].sum(-1).tolist()
        lengths = output.batch["response_mask"].sum(-1).tolist()
        eos = trainer.tokenizer.eos_token_id
        entries: dict[str, PromptGuides] = {}
        for prompt, key in enumerate(keys):
            rows = range(prompt * npo.guide_n, (prompt + 1) * npo.guide_n)
            ids = {r: output.batch["responses"][r, : int(lengths[r])].tolist() for r in rows}
            # verified-correct = judged correct *and* a complete trajectory (ended with EOS, not truncated)
            correct = [r for r in rows if acc[r] >= npo.guide_min_acc and ids[r] and ids[r][-1] == eos]
            keep = select_guides([ids[r] for r in correct], npo.guide_select, npo.max_guides_per_prompt)
            samples = [GuideSample(tuple(ids[correct[i]]), float(scores[correct[i]]), guide_step) for i in keep]
            entries[key] = PromptGuides(num_samples=npo.guide_n, num_correct=len(correct), samples=samples)
        return entries
