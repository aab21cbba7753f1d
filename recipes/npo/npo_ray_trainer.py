"""RayNPOTrainer: verl 0.9.1's RayPPOTrainer with NPO interventions, without copying ``fit()``.

``fit()`` is inherited unchanged. NPO hooks in at the seams ``fit()`` already calls:

* the train dataloader is wrapped (:class:`ReplayableDataLoader`): at each step boundary the fork manager may
  snapshot, finish a look-ahead, collect guides and roll back (rewinding the data stream);
* the rollout manager is wrapped (:class:`GuidedRollout`): during a guided window it injects guide responses into
  low-accuracy groups, right after generation and reward, before anything else sees the batch;
* ``_compute_old_log_prob`` aligns rollout log-probs of guide rows (no importance weight), ``_update_actor`` adds
  the ``npo/*`` metrics, ``_save_checkpoint`` / ``_load_checkpoint`` persist and restore the NPO state, and
  ``_validate`` skips the throw-away look-ahead policy;
* the per-step logger marks look-ahead steps: their metrics are logged as ``npo/lookahead/*`` at the fork step,
  so real steps keep monotonic step numbers after a rollback.

With ``actor_rollout_ref.rollout.name=hf_cpu`` the workers are an actor-only FSDP group that also generates (CPU).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.single_controller.ray import RayClassWithInitArgs
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.trainer.ppo.utils import Role
from verl.utils.fs import copy_to_local
from verl.utils.model import get_generation_config

from npo_ext.compute import ComputeCounter
from npo_ext.config import NPOConfig, NPOConfigError
from npo_ext.fork import ForkManager, Phase
from npo_ext.injection import (
    InjectionSpec,
    align_guide_rollout_log_probs,
    guide_advantage_metrics,
    inject_guidance,
    on_policy_metrics,
)
from npo_ext.persist import NPOStateError, atomic_write_json, read_json
from npo_ext.prompt_keys import check_one_prompt_per_key, prompt_keys
from npo_ext.signals import estimate_q
from recipes.common.reward import RewardScorer
from recipes.cpu.rollout import ROLLOUT_NAME, HFRolloutManager, NoOpWeightSync
from recipes.npo.fork_engine import VerlForkEngine
from recipes.npo.guards import check_npo_mode_is_wired, check_verl_run_supports_npo
from recipes.npo.replay_loader import ReplayableDataLoader

logger = logging.getLogger(__name__)

CHECKPOINT_STATE_FILE = "npo_state.json"
COMPUTE_FILE = "compute.json"
PHASE_CODES = {phase: float(i) for i, phase in enumerate(Phase)}
OVERHEAD_KEY = "npo/time/step_overhead_s"


class GuidedRollout:
    """Wraps the rollout manager ``fit()`` calls; injects guides into training batches of a guided window."""

    def __init__(self, inner, trainer: RayNPOTrainer) -> None:
        self.inner = inner
        self.trainer = trainer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        output = self.inner.generate_sequences(prompts)
        if prompts.meta_info.get("validate", False):
            return output
        start = time.perf_counter()
        self.trainer.record_rollout(output)
        if self.trainer.fork_manager.phase == Phase.GUIDED:
            self.trainer.inject(prompts, output)
        self.trainer.add_overhead(time.perf_counter() - start)
        return output


class RayNPOTrainer(RayPPOTrainer):
    """Near-Future Policy Optimization on top of an unmodified verl 0.9.1 ``RayPPOTrainer.fit()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        raw = OmegaConf.to_container(self.config.get("npo", {}) or {}, resolve=True)
        self.npo = NPOConfig.from_dict(raw)
        check_npo_mode_is_wired(self.npo)
        if self.npo.enable:
            check_verl_run_supports_npo(self.config)
            self.npo.check_against_run(
                rollout_n=self.config.actor_rollout_ref.rollout.n,
                total_steps=self.total_training_steps,
                steps_per_epoch=len(self.train_dataloader),
            )
        state_dir = self.npo.state_dir or os.path.join(self.config.trainer.default_local_dir, "npo")
        self.fork_manager = ForkManager(self.npo.interventions if self.npo.enable else (), state_dir)
        self.compute_path = Path(state_dir) / COMPUTE_FILE
        resuming = self.config.trainer.resume_mode != "disable"
        self.compute = ComputeCounter.load(self.compute_path) if resuming else ComputeCounter()
        self.fork_engine = VerlForkEngine(self)
        self.train_dataloader = ReplayableDataLoader(self.train_dataloader, self._on_step_boundary)
        self.data_state_at_boundary: dict[str, Any] = {}
        self._pending_metrics: dict[str, float] = {}

    # --- workers -------------------------------------------------------------------------------------------------

    def init_workers(self) -> None:
        if self.config.actor_rollout_ref.rollout.name == ROLLOUT_NAME:
            self._init_cpu_workers()
        else:
            super().init_workers()
        self.rollout = self.async_rollout_manager
        self.async_rollout_manager = GuidedRollout(self.rollout, self)

    def _init_cpu_workers(self) -> None:
        """Actor-only FSDP worker group that also generates; no rollout replicas, no reward workers."""
        if self.use_critic or self.use_reference_policy or self.use_rm:
            raise NPOConfigError(
                f"rollout.name={ROLLOUT_NAME} runs actor-only: disable the critic, the KL reference policy "
                "(actor.use_kl_loss=false, algorithm.use_kl_in_reward=false) and reward models"
            )
        self.resource_pool_manager.create_resource_pool()
        pool = self.resource_pool_manager.get_resource_pool(Role.ActorRollout)
        worker = RayClassWithInitArgs(
            cls=self.role_worker_mapping[Role.ActorRollout], config=self.config.actor_rollout_ref, role="actor"
        )
        self.actor_rollout_wg = self.ray_worker_group_cls(
            resource_pool=pool, ray_cls_with_init=worker, device_name=self.device_name
        )
        self.actor_rollout_wg.init_model()
        self.async_rollout_mode = True
        self.reward_loop_manager = None
        self.async_rollout_manager = HFRolloutManager(self.actor_rollout_wg, self.reward_scorer)
        self.checkpoint_manager = NoOpWeightSync()

    @property
    def reward_scorer(self) -> RewardScorer:
        if not hasattr(self, "_reward_scorer"):
            self._reward_scorer = RewardScorer(self.config, self.tokenizer)
        return self._reward_scorer

    # --- the step boundary (called by the dataloader wrapper inside fit) ------------------------------------------

    def _on_step_boundary(self, data_state_before_batch: dict[str, Any], epoch_end: bool) -> None:
        self.data_state_at_boundary = data_state_before_batch
        completed = self.global_steps - 1  # fit() has already advanced to the step it is about to run
        metrics = self.fork_manager.advance(completed, self.fork_engine, can_fork=not epoch_end)
        self._pending_metrics.update(metrics)
        self.fork_engine.wake_rollout()

    def load_actor(self, path: Path, what: str) -> None:
        """Load weights, optimizer, scheduler and RNG; a corrupt checkpoint fails loudly, naming the path."""
        try:
            self.actor_rollout_wg.load_checkpoint(str(path))
        except Exception as e:
            raise NPOStateError(f"could not load the {what} at {path}: {e}") from e

    def restore_folder(self, folder: Path, step: int, what: str) -> None:
        """Load actor state and data position from a checkpoint-layout folder and set the completed-step count."""
        self.load_actor(folder / "actor", what)
        try:
            state = torch.load(folder / "data.pt", weights_only=False)
        except Exception as e:
            raise NPOStateError(f"could not load the {what} data position at {folder / 'data.pt'}: {e}") from e
        self.train_dataloader.load_state_dict(state)
        self.global_steps = step

    # --- injection -----------------------------------------------------------------------------------------------

    def prompt_keys(self, non_tensor_batch: dict[str, Any]) -> list[str]:
        """Stable per-row prompt keys (``npo.prompt_key``)."""
        return prompt_keys(non_tensor_batch, self.npo.prompt_key)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every id generation stops on: the tokenizer's EOS first, then the model's generation config's (vLLM
        stops on both; Qwen-VL lists <|im_end|> and <|endoftext|>)."""
        if not hasattr(self, "_eos_token_ids"):
            ids = [self.tokenizer.eos_token_id]
            generation = get_generation_config(copy_to_local(self.config.actor_rollout_ref.model.path))
            extra = getattr(generation, "eos_token_id", None)
            if extra is not None:
                ids += extra if isinstance(extra, list) else [extra]
            self._eos_token_ids = tuple(dict.fromkeys(i for i in ids if i is not None))
        return self._eos_token_ids

    def record_rollout(self, output: DataProto) -> None:
        """Count a training batch's generated tokens and stage its on-policy metrics (taken before any injection)."""
        self.compute.rollout_tokens += int(output.batch["response_mask"].sum())
        if not self._in_lookahead_step():  # look-ahead steps are logged under npo/lookahead/* by verl's own keys
            self._pending_metrics.update(on_policy_metrics(output, self.npo.acc_key))

    def record_guide_sampling(self, output: DataProto) -> None:
        """Count the tokens generated while sampling guides."""
        self.compute.guide_tokens += int(output.batch["response_mask"].sum())

    def inject(self, prompts: DataProto, output: DataProto) -> None:
        """Inject guides into one generated batch (in place) and stage the ``npo/inject/*`` metrics."""
        nt = prompts.non_tensor_batch
        keys = self.prompt_keys(nt)
        check_one_prompt_per_key(keys, nt["uid"], self.npo.prompt_key)
        output.non_tensor_batch["uid"] = nt["uid"]

        def reward_fn(row: int, response_ids: list[int]) -> dict[str, float]:
            row_fields = {k: nt[k][row] for k in ("data_source", "reward_model", "extra_info")}
            return self.reward_scorer.score(row_fields, response_ids)

        self._pending_metrics.update(self._q_metric(keys, output.non_tensor_batch[self.npo.acc_key]))
        spec = InjectionSpec(self.npo.gate, self.npo.slot, self.npo.slots_per_group, self.npo.acc_key)
        self._pending_metrics.update(
            inject_guidance(
                output,
                self.fork_manager.pool,
                keys,
                spec,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                reward_fn=reward_fn,
            )
        )

    def _q_metric(self, keys: Sequence[str], acc: Sequence[float]) -> dict[str, float]:
        """Empirical Q on this batch: of the prompts the current policy fails (0/n), the fraction the guide solved."""
        n = self.config.actor_rollout_ref.rollout.n
        prompt_keys = keys[::n]
        entries = [self.fork_manager.pool.get(k) for k in prompt_keys]
        policy_acc = [float(sum(acc[i * n : (i + 1) * n])) / n for i in range(len(prompt_keys))]
        seen = [i for i, e in enumerate(entries) if e is not None]
        if not seen:
            return {}
        k = min(self.npo.q_k, *(entries[i].num_samples for i in seen))
        q = estimate_q(
            [policy_acc[i] for i in seen],
            [entries[i].num_samples for i in seen],
            [entries[i].num_correct for i in seen],
            k=k,
        )
        return {"npo/signal/q": q, "npo/signal/q_k": float(k)}

    # --- overridden RayPPOTrainer seams --------------------------------------------------------------------------

    def add_overhead(self, seconds: float) -> None:
        """Accumulate NPO's own work inside a training step (injection, alignment, metrics)."""
        self._pending_metrics[OVERHEAD_KEY] = self._pending_metrics.get(OVERHEAD_KEY, 0.0) + seconds

    def _compute_old_log_prob(self, batch: DataProto):
        old_log_prob, mfu = super()._compute_old_log_prob(batch)
        start = time.perf_counter()
        align_guide_rollout_log_probs(batch, old_log_prob.batch["old_log_probs"])
        self.add_overhead(time.perf_counter() - start)
        return old_log_prob, mfu

    def _update_actor(self, batch: DataProto) -> DataProto:
        output = super()._update_actor(batch)
        start = time.perf_counter()
        npo_metrics = guide_advantage_metrics(batch)
        npo_metrics["npo/phase"] = PHASE_CODES[self.fork_manager.phase]
        npo_metrics["npo/driver/max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if len(self.fork_manager.pool):
            npo_metrics["npo/pool/tokens"] = float(self.fork_manager.pool.num_tokens)
        self.compute.optimizer_steps += 1
        self.compute.lookahead_steps += int(self._in_lookahead_step())
        self.compute.save(self.compute_path)
        npo_metrics.update(self.compute.metrics())
        self.add_overhead(time.perf_counter() - start)
        npo_metrics.update(self._pending_metrics)
        self._pending_metrics = {}
        output.meta_info["metrics"].update(npo_metrics)
        return output

    def _in_lookahead_step(self) -> bool:
        iv = self.fork_manager.state.intervention
        return self.fork_manager.phase == Phase.LOOKAHEAD and self.global_steps > iv.at_step

    def _validate(self, merged: bool = False):
        if self._in_lookahead_step() and not self.npo.validate_during_lookahead:
            return {}
        return super()._validate(merged=merged)

    def _save_checkpoint(self) -> None:
        if self._in_lookahead_step():
            logger.info(
                "NPO: no checkpoint during look-ahead step %d (those weights are thrown away)", self.global_steps
            )
            return
        # Written before verl's tracker file, so a checkpoint verl can find always carries its NPO state.
        self.write_checkpoint_state(self.checkpoint_folder(self.global_steps))
        super()._save_checkpoint()

    def checkpoint_folder(self, step: int) -> Path:
        return Path(self.config.trainer.default_local_dir).absolute() / f"global_step_{step}"

    def write_checkpoint_state(self, folder: Path) -> None:
        atomic_write_json(folder / CHECKPOINT_STATE_FILE, self.fork_manager.checkpoint_state())

    def _load_checkpoint(self):
        if self.config.trainer.resume_mode != "disable":
            snapshot = self.fork_manager.in_flight_snapshot()
            if snapshot is not None:
                step = self.fork_manager.state.intervention.at_step
                print(f"NPO: resuming an in-flight fork ({self.fork_manager.phase.value}) from {snapshot}")
                self.restore_folder(snapshot, step, what="fork snapshot")
                return step
        result = super()._load_checkpoint()
        folder = self._resumed_folder()
        state_file = None if folder is None else folder / CHECKPOINT_STATE_FILE
        raw = read_json(state_file, "NPO checkpoint state") if state_file and state_file.exists() else None
        self.fork_manager.adopt_checkpoint_state(raw, state_file or Path(self.fork_manager.state_dir))
        return result

    def _resumed_folder(self) -> Path | None:
        if self.config.trainer.resume_mode == "disable" or self.global_steps == 0:
            return None
        if self.config.trainer.resume_mode == "resume_path":
            return Path(self.config.trainer.resume_from_path)
        return self.checkpoint_folder(self.global_steps)

    def fit(self) -> None:
        """verl's ``fit()``, with the step logger marking look-ahead steps (see module docstring)."""
        import verl.utils.tracking as tracking

        trainer = self

        class NPOTracking(tracking.Tracking):
            def log(self, data: dict[str, Any], step: int, backend: Any = None) -> None:
                if trainer._in_lookahead_step():
                    fork_step = trainer.fork_manager.state.intervention.at_step
                    data = {k if k.startswith("npo/") else f"npo/lookahead/{k}": v for k, v in data.items()}
                    data["npo/lookahead/offset"] = step - fork_step
                    step = fork_step
                print(npo_summary(step, data), flush=True)
                super().log(data, step, backend)

        with mock.patch.object(tracking, "Tracking", NPOTracking):
            return super().fit()


SUMMARY_KEYS = {
    "critic/score/mean": "score",
    "npo/onpolicy/acc_mean": "onpolicy_acc",
    "npo/lookahead/critic/score/mean": "lookahead_score",
    "npo/lookahead/offset": "lookahead_offset",
    "npo/collect/solved_fraction": "guide_solved",
    "npo/pool/guides": "pool_guides",
    "npo/inject/below_gate": "below_gate",
    "npo/inject/replaced": "replaced",
    "npo/inject/no_guide": "no_guide",
    "npo/guide/advantage_mean": "guide_adv",
    "npo/signal/q": "q",
    "npo/compute/optimizer_steps": "opt_steps",
}


def npo_summary(step: int, data: dict[str, Any]) -> str:
    """One short, greppable line per logged step: phase, events and the main NPO numbers."""
    phase = next((p.value for p, code in PHASE_CODES.items() if code == data.get("npo/phase")), None)
    if "npo/lookahead/offset" in data:
        phase = Phase.LOOKAHEAD.value
    parts = [f"[npo] step={step}", f"phase={phase or '-'}"]
    parts += [key.split("/")[-1] for key in sorted(data) if key.startswith("npo/event/")]
    parts += [f"{label}={float(data[key]):.3g}" for key, label in SUMMARY_KEYS.items() if key in data]
    return " ".join(parts)
