"""The actor worker NPO runs with: verl's ActorRolloutRefWorker plus twelve methods and a linking ``save_checkpoint``.

* ``save_unmanaged_checkpoint``: a fork snapshot or guide through the engine's normal checkpoint save, not recorded
  by its checkpoint manager, so snapshots never count against ``trainer.max_actor_ckpt_to_keep`` and never cause a
  real checkpoint to be rotated out early. A guide holds no optimizer state, and its weights may be saved in the
  rollout's dtype (each rank's shard, ``weights_<dtype>_world_size_<W>_rank_<R>.pt``) beside verl's extra state.
* ``load_weights``: a checkpoint's weights and RNG, no optimizer (verl's ``load_contents``, or the rank's cast shard),
  for sampling and scoring.
* ``keep_snapshot_in_memory`` / ``restore_snapshot_from_memory`` / ``drop_snapshot_from_memory``: the fork snapshot
  held in host memory (:mod:`recipes.npo.memory_snapshot`), so a rollback is a memory copy.
* ``npo_load_teacher`` / ``npo_teacher_log_prob`` / ``npo_drop_teacher``: near-future distillation's teacher,
  θ_{T+Δ}'s weights held in host memory and swapped into the actor for its log-prob forward
  (:mod:`recipes.npo.memory_snapshot`).
* ``link_next_checkpoint``: the next real checkpoint holds the state of a snapshot the actor was just restored from;
  ``save_checkpoint`` then hard-links the snapshot's shards instead of writing them again.
* ``node_address``: where each rank runs, logged at start-up (multi-node placement is otherwise invisible).
* ``generate_sequences_hf``: CPU rollout. Generation runs inside the actor worker on a plain Hugging Face copy of
  the current FSDP weights, so it always uses the latest actor and weight sync is free.
* ``npo_topk_forward``: what V needs of the actor's per-token distribution (top-k, tail draws and tail mass, or its
  log-probs on given ids), through verl's own forward (``recipes.npo.topk_forward``).

Its training loss is verl's ``ppo_loss`` behind :func:`recipes.npo.guided_loss.guided_ppo_loss`, which passes the
batch's guide-token marks to the ``npo_guided`` policy loss when ``guidance.loss_shaping`` asks for it.
"""

from __future__ import annotations

import glob
import os
from functools import partial

import ray
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.engine_workers import ActorRolloutRefWorker
from verl.workers.utils.losses import ppo_loss

from npo_ext.persist import link_or_copy
from recipes.cpu.hf_generation import generate_rollout
from recipes.npo.guided_loss import guided_ppo_loss
from recipes.npo.memory_snapshot import HeldWeights, HostMemorySnapshot, local_shard, weights_kept
from recipes.npo.topk_forward import GIVEN_IDS, TOPK_DRAWS, TOPK_K, TopKCapture

# verl's checkpoint contents of a state that is only sampled from and scored: the weights, and the extra state
# (scheduler and RNG, a few KB) so that sampling after a resume repeats the uninterrupted run's; no optimizer state
WEIGHTS_ONLY = ["model", "extra"]
EXTRA_ONLY = ["extra"]
MODEL_ONLY = ["model"]


def cast_weights_file(local_path: str, dtype: str, world_size: int, rank: int) -> str:
    """Where a rank keeps its shard of a guide's weights saved in ``dtype``."""
    return os.path.join(local_path, f"weights_{dtype}_world_size_{world_size}_rank_{rank}.pt")


class NPOActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl 0.9.1's hybrid worker with an unmanaged snapshot save and an in-worker transformers rollout."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        super().init_model()
        loss_fn = getattr(self, "loss_fn", None)
        if isinstance(loss_fn, partial) and loss_fn.func is ppo_loss:  # not with verl's distillation loss
            self.loss_fn = partial(guided_ppo_loss, **loss_fn.keywords)
            self.actor.set_loss_fn(self.loss_fn)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def node_address(self) -> str:
        """The address of the Ray node this rank runs on (the trainer logs where its ranks were placed)."""
        return ray.util.get_node_ip_address()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_unmanaged_checkpoint(
        self, local_path: str, global_step: int, weights_only: bool = False, dtype: str | None = None
    ) -> None:
        """``weights_only``: no optimizer state (verl's own switch; the few-KB scheduler and RNG state stay). ``dtype``
        (with ``weights_only``): each rank writes its weight shard cast to it, and verl writes only the extra state."""
        manager = self.actor.engine.checkpoint_manager
        tracked, contents = list(manager.previous_saved_paths), manager.checkpoint_save_contents
        if weights_only:
            manager.checkpoint_save_contents = EXTRA_ONLY if dtype else WEIGHTS_ONLY
        try:
            self.actor.save_checkpoint(local_path, None, global_step, max_ckpt_to_keep=None)
        finally:
            manager.checkpoint_save_contents = contents
            manager.previous_saved_paths = tracked
        if weights_only and dtype:
            shards = {
                name: local_shard(p).detach().to("cpu", getattr(torch, dtype))
                for name, p in manager.model.named_parameters()
            }
            torch.save(shards, cast_weights_file(local_path, dtype, manager.world_size, manager.rank))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def link_next_checkpoint(self, source: str) -> None:
        """The next ``save_checkpoint`` saves a state this rank's shards in ``source`` already hold: it links them."""
        self._link_source = source

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        """verl's save; after :meth:`link_next_checkpoint`, verl's checkpoint manager still rotates old checkpoints
        and writes the configs, and this rank's model, optimizer and extra-state shards are hard links."""
        source, self._link_source = getattr(self, "_link_source", None), None
        if source is None:
            return super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep)
        manager = self.actor.engine.checkpoint_manager
        contents = manager.checkpoint_save_contents
        manager.checkpoint_save_contents = []
        try:
            super().save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep)
        finally:
            manager.checkpoint_save_contents = contents
        suffix = f"_world_size_{manager.world_size}_rank_{manager.rank}.pt"
        for name in ("model", "optim", "extra_state"):
            link_or_copy(os.path.join(source, name + suffix), os.path.join(local_path, name + suffix))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_weights(self, local_path: str) -> None:
        """A checkpoint's weights (and its RNG, so sampling from them repeats after a kill), to sample from or score
        with; the optimizer state stays. The snapshot held in host memory is read from there."""
        self._load_weights(local_path)

    def _load_weights(self, local_path: str, extra: bool = True) -> None:
        """``extra=False``: the weights alone (the scheduler and RNG stay as they are)."""
        manager = self.actor.engine.checkpoint_manager
        snapshot = getattr(self, "_host_snapshot", None)
        if snapshot is not None and snapshot.key == local_path and extra:
            snapshot.restore_weights(manager.model, manager.load_rng_state)
            return
        cast = sorted(glob.glob(cast_weights_file(glob.escape(local_path), "*", manager.world_size, manager.rank)))
        contents = manager.checkpoint_load_contents
        load = (EXTRA_ONLY if cast else WEIGHTS_ONLY) if extra else ([] if cast else MODEL_ONLY)
        manager.checkpoint_load_contents = load
        try:
            if load:
                self.actor.load_checkpoint(local_path, None, False)
        finally:
            manager.checkpoint_load_contents = contents
        if cast:
            shards = torch.load(cast[0], map_location="cpu", weights_only=True)
            with torch.no_grad():
                for name, param in manager.model.named_parameters():
                    if name not in shards:
                        raise KeyError(f"{cast[0]} has no weight {name!r}")
                    local_shard(param).copy_(shards[name])

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def keep_snapshot_in_memory(self, key: str) -> int:
        """Hold this rank's current training state in host memory under ``key`` (the snapshot's actor folder);
        returns the bytes held."""
        self._host_snapshot = None  # free the previous fork's copy first
        manager = self.actor.engine.checkpoint_manager
        self._host_snapshot = HostMemorySnapshot(
            key, manager.model, manager.optimizer, manager.lr_scheduler, manager.get_rng_state()
        )
        return self._host_snapshot.nbytes

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def restore_snapshot_from_memory(self, key: str) -> bool:
        """Restore the training state held under ``key``; False (nothing changed) where this rank holds no such copy
        (after a restart), and the caller reads the disk copy instead."""
        snapshot = getattr(self, "_host_snapshot", None)
        if snapshot is None or snapshot.key != key:
            return False
        manager = self.actor.engine.checkpoint_manager
        snapshot.restore(manager.model, manager.optimizer, manager.lr_scheduler, manager.load_rng_state)
        return True

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drop_snapshot_from_memory(self) -> None:
        self._host_snapshot = None

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def npo_load_teacher(self, local_path: str) -> int:
        """Hold the weights of the checkpoint at ``local_path`` in host memory as the distillation teacher (a no-op
        when they are held already); the actor keeps its own weights, scheduler and RNG. Returns the bytes held."""
        held = getattr(self, "_teacher", None)
        if held is not None and held.key == local_path:
            return held.nbytes
        self._teacher = None
        manager = self.actor.engine.checkpoint_manager
        with weights_kept(manager.model):
            self._load_weights(local_path, extra=False)
            self._teacher = HeldWeights(local_path, manager.model)
        return self._teacher.nbytes

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def npo_drop_teacher(self) -> None:
        self._teacher = None

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def npo_teacher_log_prob(self, data: TensorDict) -> TensorDict | None:
        """verl's log-prob forward of the actor with the teacher's weights swapped in (its own restored after)."""
        teacher = getattr(self, "_teacher", None)
        if teacher is None:
            raise RuntimeError("npo_teacher_log_prob before npo_load_teacher: no distillation teacher is held")
        with teacher.swapped_in(self.actor.engine.checkpoint_manager.model):
            output = self.actor.infer_batch(data)
        return output.cpu() if output is not None else None

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def npo_topk_forward(self, data: TensorDict) -> TensorDict | None:
        """verl's log-prob forward with a per-token top-k capture in place of the loss (restored afterwards)."""
        k, draws = (int(tu.get_non_tensor_data(data, key, None)) for key in (TOPK_K, TOPK_DRAWS))
        capture = TopKCapture(k, draws, GIVEN_IDS in data.keys())
        saved, self.actor.loss_fn = self.actor.loss_fn, capture
        try:
            output = self.actor.infer_batch(data)
        finally:
            self.actor.loss_fn = saved
        return output.cpu() if output is not None else None

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def generate_sequences_hf(self, prompts: DataProto) -> DataProto:
        model = self._hf_generation_model()
        rollout = self.config.rollout
        kwargs = rollout.val_kwargs if prompts.meta_info.get("validate", False) else rollout
        do_sample = bool(kwargs.get("do_sample", True))
        sampling = {"do_sample": do_sample}
        if do_sample:
            top_k = int(kwargs.get("top_k", -1))
            sampling.update(
                temperature=float(kwargs.get("temperature", 1.0)),
                top_p=float(kwargs.get("top_p", 1.0)),
                top_k=top_k if top_k > 0 else 0,
            )
        return generate_rollout(
            model,
            self._generation_tokenizer,
            self._generation_processor,
            prompts,
            prompt_length=int(rollout.prompt_length),
            response_length=int(rollout.response_length),
            sampling=sampling,
            suppress_token_ids=self._suppressed_token_ids,
        )

    def _hf_generation_model(self) -> torch.nn.Module:
        """A plain HF model holding the actor's current full weights (refreshed on every call)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if not hasattr(self, "_generation_model"):
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

            model_config = omega_conf_to_dataclass(self.config.model)
            self._generation_tokenizer = model_config.tokenizer
            self._generation_processor = model_config.processor
            auto_cls = AutoModelForImageTextToText if model_config.processor is not None else AutoModelForCausalLM
            # its random initialisation (overwritten below) must not draw from the RNG that checkpoints restore: a
            # resumed process builds it after the restore, a continuing one long before, and both must sample alike
            with torch.random.fork_rng(devices=[]):
                self._generation_model = auto_cls.from_config(model_config.hf_config)
            self._suppressed_token_ids = _vision_token_ids(model_config.tokenizer)
        # every rank generates for its share of the batch, so every rank needs the whole model: with cpu_offload
        # torch hands the full state dict to rank 0 only (the others get an empty one)
        state = get_model_state_dict(
            self.actor.engine.module, options=StateDictOptions(full_state_dict=True, cpu_offload=False)
        )
        self._generation_model.load_state_dict(state, strict=True)
        return self._generation_model


def _vision_token_ids(tokenizer) -> list[int]:
    """Vision placeholder and delimiter tokens: a sampled one breaks Qwen-VL's rope index, so never sample them."""
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    vocab = tokenizer.get_vocab()
    return [vocab[name] for name in names if name in vocab]
