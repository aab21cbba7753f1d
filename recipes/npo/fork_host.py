"""What the fork engine needs of the trainer that hosts it, and nothing more.

:class:`recipes.npo.fork_engine.VerlForkEngine` and V's forward (``recipes.npo.topk_forward``) act on verl through
this protocol: settings, the step counter (read only; a rollback or a checkpoint moves it through a method),
save/load, generation, scoring and the compute accounting. :class:`recipes.npo.npo_ray_trainer.RayNPOTrainer`
implements it; a test checks that the engine touches no other member and no private one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig
from verl import DataProto

from npo_ext.config import NPOConfig
from npo_ext.fork import ForkManager


class ForkHost(Protocol):
    npo: NPOConfig
    config: DictConfig
    fork_manager: ForkManager  # where a fork's look-ahead records live
    actor_rollout_wg: Any  # verl's actor worker group: checkpoints and forward passes
    checkpoint_manager: Any  # verl's weight sync: puts rollout replicas to sleep, wakes them with the actor's weights
    rollout: Any  # the rollout manager fit() generates with
    train_dataloader: Any  # recipes.npo.replay_loader.ReplayableDataLoader
    data_state_at_boundary: dict[str, Any]

    @property
    def global_steps(self) -> int:
        """The step fit() runs next."""

    @property
    def eos_token_ids(self) -> tuple[int, ...]: ...

    def resume_at(self, step: int) -> None:
        """fit() continues after kept step ``step`` (a rollback moved it back)."""

    def save_kept_checkpoint(self, step: int) -> None:
        """verl's checkpoint of kept step ``step``, written from a step boundary."""

    def checkpoint_folder(self, step: int) -> Path: ...

    def write_checkpoint_state(self, folder: Path) -> None:
        """The NPO state (fork phase, AutoNPO, the plug-in's) into a verl checkpoint folder."""

    def load_actor(self, path: Path, what: str, weights_only: bool = False) -> None: ...

    def restore_folder(self, folder: Path, step: int, what: str, load_actor: bool = True) -> None:
        """Actor state and data position from a checkpoint-layout folder."""

    def gen_batch_of(self, batch: DataProto) -> DataProto:
        """What the rollout generates from, as fit() derives it from a training batch."""

    def gen_batch_at(self, positions: list[int], keys: list[str]) -> DataProto:
        """The rollout's input for the training prompts at ``positions`` (whose keys must be ``keys``)."""

    def prompt_keys(self, non_tensor_batch: dict[str, Any]) -> list[str]: ...

    def record_guide_sampling(self, output: DataProto) -> None: ...

    def record_scoring(self, batch: DataProto) -> None: ...

    def add_collect_metrics(self, sampled: int, reused: int, skipped: int) -> None: ...

    def stage_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics logged with the next actor update (the fork's I/O, the host-memory snapshot)."""
