"""RayNPOTrainer: verl 0.9.1's RayPPOTrainer with NPO interventions, without copying ``fit()``.

``fit()`` is verl's, called with NPO's step logger in place (``recipes/npo/step_logger.py``). NPO hooks in at the
seams ``fit()`` already calls:

* the train dataloader is wrapped (:class:`ReplayableDataLoader`): at each step boundary the fork manager may
  snapshot, finish a look-ahead, collect guides and roll back (rewinding the data stream);
* the rollout manager is wrapped (:class:`GuidedRollout`): during a guided window it injects guide responses into
  low-accuracy groups, right after generation and reward, before anything else sees the batch;
* ``_compute_old_log_prob`` aligns rollout log-probs of guide rows (no importance weight), ``_update_actor`` adds
  the ``npo/*`` metrics, ``_save_checkpoint`` / ``_load_checkpoint`` persist and restore the NPO state, and
  ``_validate`` skips the throw-away look-ahead policy;
* with ``npo.mode=auto`` an :class:`AutoController` is fed every kept step (on-policy reward, token entropy, group
  accuracies for the mistake pool) and decides at the step boundary when the fork manager forks;
* the per-step logger marks look-ahead steps (metrics renamed ``npo/lookahead/*``, with ``npo/lookahead/offset``)
  and hands every logger the cumulative optimizer-step count as its step: distinct and increasing across
  look-ahead and rollback, so no logger drops or overwrites a step. The kept step is ``training/global_step``.

With ``actor_rollout_ref.rollout.name=hf_cpu`` the workers are an actor-only FSDP group that also generates (CPU).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.single_controller.ray import RayClassWithInitArgs
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.trainer.ppo.utils import Role
from verl.utils import tensordict_utils as tu
from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path
from verl.utils.fs import copy_to_local
from verl.utils.model import get_generation_config
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

from npo_ext.auto import AutoController
from npo_ext.compute import ComputeCounter
from npo_ext.config import GuidanceConfig, NPOConfig, NPOConfigError
from npo_ext.fork import IN_FLIGHT, ForkInterrupted, ForkManager, Phase
from npo_ext.guidance import GuidanceSource
from npo_ext.injection import (
    InjectionSpec,
    align_guide_rollout_log_probs,
    generate_with_appended_guides,
    guide_advantage_metrics,
    guide_response_tokens,
    inject_guidance,
    on_policy_metrics,
    source_q_metrics,
)
from npo_ext.persist import NPOStateError, atomic_torch_save, atomic_write_json, read_json
from npo_ext.prompt_keys import check_one_prompt_per_key, prompt_keys
from npo_ext.signals import effective_signal, estimate_q, failing_prompts
from recipes.common.guidance_plugin import GuidancePlugin, plugin_class
from recipes.common.positioned_dataset import POSITION
from recipes.common.reward import RewardScorer
from recipes.cpu.rollout import ROLLOUT_NAME, HFRolloutManager, NoOpWeightSync
from recipes.npo.distill_loss import TEACHER_LOG_PROB, mark_distillation, teacher_kl
from recipes.npo.fork_engine import VerlForkEngine, generate_in_whole_chunks
from recipes.npo.guards import check_batch_layout, check_image_budget, check_verl_run_supports_npo
from recipes.npo.guided_loss import mark_guide_tokens, shaped_weight_mean
from recipes.npo.preemption import StoppedForRequeue, clear_stop_request, stop_requested
from recipes.npo.replay_loader import ReplayableDataLoader
from recipes.npo.step_logger import logging_with

logger = logging.getLogger(__name__)

CHECKPOINT_STATE_FILE = "npo_state.json"
AUTO_STATE_FILE = "npo_auto.pt"
SOURCE_STATE_FILE = "guidance_source.json"
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
        if prompts.meta_info.get("validate", False):
            return self.inner.generate_sequences(prompts)
        source = self.trainer.guidance_source()
        if source is not None and self.trainer.guidance.mixing == "append":
            return self.trainer.generate_appended(prompts, source, self.inner)
        output = self.inner.generate_sequences(prompts)
        start = time.perf_counter()
        self.trainer.record_rollout(prompts, output)
        if self.trainer.plugin is not None:
            self.trainer.plugin.after_generation(prompts, output)
        if source is not None:
            self.trainer.inject(prompts, output, source)
        self.trainer.add_overhead(time.perf_counter() - start)
        return output


class RayNPOTrainer(RayPPOTrainer):
    """Near-Future Policy Optimization on top of an unmodified verl 0.9.1 ``RayPPOTrainer.fit()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        raw = OmegaConf.to_container(self.config.get("npo", {}) or {}, resolve=True)
        self.npo = NPOConfig.from_dict(raw)
        self.guidance = GuidanceConfig.from_dict(
            OmegaConf.to_container(self.config.get("guidance", {}) or {}, resolve=True)
        )
        if self.guidance.source != "near_future" and self.npo.enable:
            raise NPOConfigError(
                f"guidance.source={self.guidance.source} replaces NPO's near-future guides: set npo.enable=false"
            )
        check_batch_layout(self.config)
        image_warning = check_image_budget(self.config, self.processor)
        if image_warning:
            logger.warning(image_warning)
            print(f"[npo] warning: {image_warning}", flush=True)
        if self.npo.enable or self.guidance.source != "near_future":
            check_verl_run_supports_npo(self.config)
        if self.npo.enable:
            self.npo.check_against_run(
                rollout_n=self.config.actor_rollout_ref.rollout.n,
                total_steps=self.total_training_steps,
                steps_per_epoch=len(self.train_dataloader),
            )
        state_dir = self.npo.state_dir or os.path.join(self.config.trainer.default_local_dir, "npo")
        self.auto: AutoController | None = None
        if self.npo.enable and self.npo.mode == "auto":
            self.auto = AutoController(
                self.npo.auto,
                self.npo.gate,
                total_steps=self.total_training_steps,
                steps_per_epoch=len(self.train_dataloader),
            )
        self.fork_manager = ForkManager(
            self.npo.interventions if self.npo.enable else (),
            state_dir,
            auto=self.auto,
            q_k=self.npo.q_k,
            distill=self.npo.distill.enable,
            collect_guides=self.npo.distill.inject_guides,
        )
        self.compute_path = Path(state_dir) / COMPUTE_FILE
        resuming = self.config.trainer.resume_mode != "disable"
        self.compute = ComputeCounter.load(self.compute_path) if resuming else ComputeCounter()
        self.fork_engine = VerlForkEngine(self)
        plugin = plugin_class(self.guidance)
        self.plugin: GuidancePlugin | None = None if plugin is None else plugin(self)
        self.train_dataloader = ReplayableDataLoader(
            self.train_dataloader, self._on_step_boundary, compose=self.plugin.compose if self.plugin else None
        )
        self.data_state_at_boundary: dict[str, Any] = {}
        self._pending_metrics: dict[str, float] = {}
        self._onpolicy_score = self._entropy = float("nan")

    # --- workers -------------------------------------------------------------------------------------------------

    def init_workers(self) -> None:
        if self.config.actor_rollout_ref.rollout.name == ROLLOUT_NAME:
            self._init_cpu_workers()
        else:
            super().init_workers()
        self.rollout = self.async_rollout_manager
        self.async_rollout_manager = GuidedRollout(self.rollout, self)
        ranks = " ".join(f"{rank}@{address}" for rank, address in enumerate(self.actor_rollout_wg.node_address()))
        print(f"[npo] training ranks: {ranks}", flush=True)

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
        checkpoint_dir = self.config.trainer.default_local_dir
        try:
            metrics = self.fork_manager.advance(
                completed, self.fork_engine, can_fork=not epoch_end, should_stop=lambda: stop_requested(checkpoint_dir)
            )
        except ForkInterrupted as interrupted:
            self._stop_for_requeue(str(interrupted))
        self._pending_metrics.update(metrics)
        # not at an epoch's end: the next epoch's first boundary holds the data position a resume needs
        if not epoch_end and stop_requested(checkpoint_dir):
            self._stop_for_requeue(f"stop requested at the step boundary ({self.fork_manager.phase.value})")
        self.fork_engine.wake_rollout()

    def _stop_for_requeue(self, where: str) -> NoReturn:
        """Make the run resumable here, then stop. Inside a fork nothing is saved: its snapshot and persisted phase
        already resume it (a look-ahead restarts from the snapshot, a collection or a probe after its last persisted
        unit; no kept step is lost). Otherwise a real checkpoint of the last kept step is written."""
        if self.fork_manager.phase in IN_FLIGHT:
            completed = self.fork_manager.state.intervention.at_step
        else:
            completed = self.global_steps - 1  # a rollback in this boundary may have moved the step back
            self.train_dataloader.load_state_dict(self.data_state_at_boundary)  # the next batch stays unconsumed
            self.fork_engine.save_real_checkpoint(completed)
        clear_stop_request(self.config.trainer.default_local_dir)
        print(f"[npo] {where}: stopping after kept step {completed} for requeue", flush=True)
        raise StoppedForRequeue(completed)

    def load_actor(self, path: Path, what: str, weights_only: bool = False) -> None:
        """Load weights, optimizer, scheduler and RNG (``weights_only``: the weights alone, to sample from or score
        with); a corrupt checkpoint fails loudly, naming the path."""
        try:
            if weights_only:
                self.actor_rollout_wg.load_weights(str(path))
            else:
                self.actor_rollout_wg.load_checkpoint(str(path))
        except Exception as e:
            raise NPOStateError(f"could not load the {what} at {path}: {e}") from e

    def restore_folder(self, folder: Path, step: int, what: str, load_actor: bool = True) -> None:
        """Load actor state (unless the actor holds it already) and data position from a checkpoint-layout folder and
        set the completed-step count."""
        if load_actor:
            self.load_actor(folder / "actor", what)
        try:
            state = torch.load(folder / "data.pt", weights_only=False)
        except Exception as e:
            raise NPOStateError(f"could not load the {what} data position at {folder / 'data.pt'}: {e}") from e
        self.train_dataloader.load_state_dict(state)
        self.data_state_at_boundary = state  # the restored position is this boundary's now
        self.global_steps = step

    def resume_at(self, step: int) -> None:
        """fit() is between steps: after a rollback to kept step ``step`` the next one it runs is ``step + 1``."""
        self.global_steps = step + 1

    def save_kept_checkpoint(self, step: int) -> None:
        """verl's checkpoint of kept step ``step`` from a step boundary (verl names the folder after the counter)."""
        self.global_steps = step
        try:
            self._save_checkpoint()
        finally:
            self.resume_at(step)

    def gen_batch_of(self, batch: DataProto) -> DataProto:
        """What the rollout generates from, as verl 0.9.1's fit() derives it from a training batch."""
        return self._get_gen_batch(batch)

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

    def record_rollout(self, prompts: DataProto, output: DataProto) -> None:
        """Count a training batch's generated tokens and stage its on-policy metrics (taken before any injection);
        AutoNPO's mistake pool sees every batch the current policy generated (kept steps, and the first look-ahead
        step, which θ_T generates: at a bootstrap fork that is all the pool has)."""
        self.compute.rollout_tokens += int(output.batch["response_mask"].sum())
        lookahead = self._in_lookahead_step()
        if not lookahead:  # look-ahead steps are logged under npo/lookahead/* by verl's own keys
            onpolicy = on_policy_metrics(output, self.npo.acc_key)
            self._pending_metrics.update(onpolicy)
            self._onpolicy_score = onpolicy["npo/onpolicy/score_mean"]
        if lookahead and (self.npo.collect_skip_expected_passes or self.npo.collect_reuse_lookahead):
            window_batch = self.global_steps - self.fork_manager.state.intervention.at_step - 1
            self.fork_engine.record_lookahead(prompts, output, window_batch)
        generated_by_current = not lookahead or self.global_steps == self.fork_manager.state.intervention.at_step + 1
        if self.auto is not None and generated_by_current:
            self.auto.observe_prompts(self.global_steps, self._group_accuracies(prompts, output))

    def _group_accuracies(self, prompts: DataProto, output: DataProto) -> list[tuple[str, float, int]]:
        """Per prompt of a generated batch: key, on-policy group accuracy, and its position in the training data (the
        mistake pool keeps the position, not the row and its images; :meth:`gen_batch_at` reads the row again)."""
        n = self.config.actor_rollout_ref.rollout.n
        nt = prompts.non_tensor_batch
        keys = self.prompt_keys(nt)
        acc = np.asarray(output.non_tensor_batch[self.npo.acc_key], dtype=np.float64)
        return [(keys[row], float(acc[row : row + n].mean()), int(nt[POSITION][row])) for row in range(0, len(keys), n)]

    def gen_batch_at(self, positions: list[int], keys: list[str]) -> DataProto:
        """The rollout's input for the training prompts at ``positions``, read again from the dataset; their keys must
        be ``keys`` (a resumed run must use the same data files)."""
        rows = [self.train_dataset[position] for position in positions]
        batch = DataProto.from_single_dict(self.train_dataloader.collate_fn(rows))
        found = self.prompt_keys(batch.non_tensor_batch)
        if found != list(keys):
            raise NPOStateError(
                f"the training data rows at positions {positions} have prompt keys {found}, the mistake pool stored "
                f"{list(keys)}: a resumed run must use the same data files"
            )
        return self.gen_batch_of(batch)

    def record_guide_sampling(self, output: DataProto) -> None:
        """Count the tokens generated while sampling guides (saved now: sampling happens between actor updates, and a
        stop or kill before the next update must not lose it)."""
        self.compute.guide_tokens += int(output.batch["response_mask"].sum())
        self.compute.save(self.compute_path)

    def record_scoring(self, batch: DataProto) -> None:
        """Count the response tokens of an extra forward-only pass (V's), saved now like guide sampling."""
        self.compute.scored_tokens += int(batch.batch["response_mask"].sum())
        self.compute.save(self.compute_path)

    def record_external(self, output: DataProto) -> None:
        """Count the response tokens of guides the run did not generate (a teacher's, an experience file's)."""
        if self.plugin is not None and self.plugin.counts_external_tokens:
            self.compute.external_tokens += guide_response_tokens(output)

    def stage_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics logged with the next actor update."""
        self._pending_metrics.update(metrics)

    def staged_metric(self, key: str) -> float | None:
        return self._pending_metrics.get(key)

    def add_collect_metrics(self, sampled: int, reused: int, skipped: int) -> None:
        """Per window batch collected: prompts sampled from the guide, given a look-ahead guide, or skipped."""
        for name, count in (("sampled", sampled), ("reused", reused), ("skipped", skipped)):
            key = f"npo/collect/{name}_prompts"
            self._pending_metrics[key] = self._pending_metrics.get(key, 0.0) + count

    def guidance_source(self) -> GuidanceSource | None:
        """Where this training batch's guides come from: the recipe's plug-in (a teacher's traces, an experience file;
        every step), or the near-future pool during a guided window."""
        if self.plugin is not None:
            return self.plugin.source()
        return self.fork_manager.pool if self.fork_manager.phase == Phase.GUIDED else None

    def row_reward_fn(self, prompt_fields: dict[str, Any]) -> Callable[[int, list[int]], dict[str, float]]:
        """The reward of a response written into row ``row``, scored against that row's prompt fields."""

        def reward_fn(row: int, response_ids: list[int]) -> dict[str, float]:
            row_fields = {k: prompt_fields[k][row] for k in ("data_source", "reward_model", "extra_info")}
            return self.reward_scorer.score(row_fields, response_ids)

        return reward_fn

    def inject(
        self, prompts: DataProto, output: DataProto, source: GuidanceSource, keys: Sequence[str] | None = None
    ) -> None:
        """Inject guides into one generated batch (in place) and stage the ``npo/inject/*`` metrics; ``keys``: the
        rows' prompt keys when ``prompts`` no longer carries the ``npo.prompt_key`` fields."""
        nt = prompts.non_tensor_batch
        keys = self.prompt_keys(nt) if keys is None else list(keys)
        check_one_prompt_per_key(keys, nt["uid"], self.npo.prompt_key)
        output.non_tensor_batch["uid"] = nt["uid"]
        if source is self.fork_manager.pool:
            self._pending_metrics.update(self._q_metric(keys, output.non_tensor_batch[self.npo.acc_key]))
        spec = InjectionSpec(
            self.npo.gate, self.npo.slot, self.npo.slots_per_group, self.npo.acc_key, gated=self.guidance.gated
        )
        self._pending_metrics.update(
            inject_guidance(
                output,
                source,
                keys,
                spec,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                reward_fn=self.row_reward_fn(nt),
                prompt_fields=nt,
            )
        )
        if source is not self.fork_manager.pool:
            self._pending_metrics.update(source_q_metrics(output, self.npo.acc_key, self.npo.guide_min_acc))
        self.record_external(output)

    def generate_appended(self, prompts: DataProto, source: GuidanceSource, rollout: Any) -> DataProto:
        """``guidance.mixing=append``: generate only each group's fresh rows, then append its guides (see
        ``npo_ext.injection.generate_with_appended_guides``)."""
        nt = prompts.non_tensor_batch
        keys = self.prompt_keys(nt)
        check_one_prompt_per_key(keys, nt["uid"], self.npo.prompt_key)

        def generate(fresh: DataProto) -> DataProto:
            output = generate_in_whole_chunks(rollout, fresh, self.config.actor_rollout_ref.rollout.agent.num_workers)
            self.record_rollout(fresh, output)
            return output

        output, metrics = generate_with_appended_guides(
            prompts,
            generate,
            source,
            keys,
            self.npo.slots_per_group,
            max_response_length=self.config.data.max_response_length,
            eos_token_ids=self.eos_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            reward_fn=self.row_reward_fn(nt),
        )
        output.non_tensor_batch["uid"] = nt["uid"]
        self._pending_metrics.update(metrics)
        self._pending_metrics.update(source_q_metrics(output, self.npo.acc_key, self.npo.guide_min_acc))
        self.record_external(output)
        return output

    def _q_metric(self, keys: Sequence[str], acc: Sequence[float]) -> dict[str, float]:
        """Empirical Q on this batch: of the prompts the current policy fails (0/n), the guide's pass@k, over the
        prompts whose guide counts are an unbiased draw of θ_{T+Δ} (not those given a look-ahead response)."""
        n = self.config.actor_rollout_ref.rollout.n
        prompt_keys = keys[::n]
        entries = [self.fork_manager.pool.get(k) for k in prompt_keys]
        policy_acc = [float(sum(acc[i * n : (i + 1) * n])) / n for i in range(len(prompt_keys))]
        seen = [i for i, e in enumerate(entries) if e is not None and e.q_unbiased]
        if not seen:
            return {}
        failing = len(failing_prompts([policy_acc[i] for i in seen]))
        if not failing:
            return {"npo/signal/q_prompts": 0.0}
        k = min(self.npo.q_k, *(entries[i].num_samples for i in seen))
        q = estimate_q(
            [policy_acc[i] for i in seen],
            [entries[i].num_samples for i in seen],
            [entries[i].num_correct for i in seen],
            k=k,
        )
        metrics = {"npo/signal/q": q, "npo/signal/q_k": float(k), "npo/signal/q_prompts": float(failing)}
        v = self.fork_manager.state.v
        if v is not None:
            metrics["npo/signal/s"] = effective_signal(q, v)
        return metrics

    # --- overridden RayPPOTrainer seams --------------------------------------------------------------------------

    def add_overhead(self, seconds: float) -> None:
        """Accumulate NPO's own work inside a training step (injection, alignment, metrics)."""
        self._pending_metrics[OVERHEAD_KEY] = self._pending_metrics.get(OVERHEAD_KEY, 0.0) + seconds

    def _compute_old_log_prob(self, batch: DataProto):
        start = time.perf_counter()
        if self.plugin is not None:  # the replicas sleep now, so a plug-in may run actor forwards
            self.plugin.before_old_log_prob(batch)
        self.add_overhead(time.perf_counter() - start)
        old_log_prob, mfu = super()._compute_old_log_prob(batch)
        start = time.perf_counter()
        if self.plugin is not None:
            self.plugin.after_old_log_prob(batch, old_log_prob.batch["old_log_probs"])
        mask = batch.batch["response_mask"].float()
        self._entropy = float((old_log_prob.batch["entropys"] * mask).sum() / mask.sum().clamp_min(1))
        align_guide_rollout_log_probs(batch, old_log_prob.batch["old_log_probs"])
        self.add_overhead(time.perf_counter() - start)
        if self._distilling():
            self._add_teacher_log_probs(batch, old_log_prob.batch["old_log_probs"])
        return old_log_prob, mfu

    def _distilling(self) -> bool:
        return self.npo.distill.enable and self.fork_manager.phase == Phase.GUIDED

    def _add_teacher_log_probs(self, batch: DataProto, old_log_probs: torch.Tensor) -> None:
        """θ_{T+Δ}'s log-probs of the sampled tokens, the way verl 0.9.1 computes the reference policy's
        (``RayPPOTrainer._compute_ref_log_prob``), with the teacher's weights swapped into the actor."""
        start = time.perf_counter()
        batch_td = left_right_2_no_padding(batch.to_tensordict())
        tu.assign_non_tensor(batch_td, calculate_entropy=False, compute_loss=False)
        output = self.actor_rollout_wg.npo_teacher_log_prob(batch_td)
        teacher = no_padding_2_padding(tu.get(output, "log_probs"), batch_td).float()
        batch.batch[TEACHER_LOG_PROB] = teacher
        self.record_scoring(batch)  # a forward training does not need: counted with V's
        mask = batch.batch["response_mask"].float()
        self._pending_metrics["npo/distill/kl_old_to_teacher"] = teacher_kl(old_log_probs, teacher, mask)
        self._pending_metrics["npo/time/teacher_forward_s"] = time.perf_counter() - start

    def _update_actor(self, batch: DataProto) -> DataProto:
        if self.guidance.loss_shaping != "none":
            mark_guide_tokens(batch, self.guidance)
        if self._distilling():
            iv, distill = self.fork_manager.state.intervention, self.npo.distill
            coef = distill.coef_at(self.global_steps - iv.at_step - 1, iv.window)
            mark_distillation(batch, coef, distill.estimator, distill.skip_guide_rows)
        output = super()._update_actor(batch)
        if self.guidance.loss_shaping != "none":
            shaped_weight_mean(output.meta_info["metrics"])
        start = time.perf_counter()
        npo_metrics = guide_advantage_metrics(batch)
        npo_metrics["npo/phase"] = PHASE_CODES[self.fork_manager.phase]
        npo_metrics["npo/driver/max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if len(self.fork_manager.pool):
            npo_metrics["npo/pool/tokens"] = float(self.fork_manager.pool.num_tokens)
        self.compute.optimizer_steps += 1
        self.compute.lookahead_steps += int(self._in_lookahead_step())
        if self.auto is not None and not self._in_lookahead_step():
            self.auto.observe(self._onpolicy_score, self._entropy)
            npo_metrics.update({f"npo/auto/{k}": v for k, v in self.auto.monitor.signals().items()})
            npo_metrics["npo/auto/mistake_pool"] = float(len(self.auto.pool))
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
        if self.auto is not None:
            atomic_torch_save(self.auto.state_dict(), folder / AUTO_STATE_FILE)
        source = self._stateful_source()
        if source is not None:
            atomic_write_json(folder / SOURCE_STATE_FILE, source.state_dict())

    def _stateful_source(self) -> Any:
        """What checkpoints carry of the recipe's plug-in (a draw generator, an experience pool), or None."""
        return None if self.plugin is None else self.plugin.state()

    def load_source_state(self, folder: Path) -> None:
        """The guidance source's state as saved with the checkpoint."""
        path = folder / SOURCE_STATE_FILE
        source = self._stateful_source()
        if source is not None and path.exists():
            source.load_state_dict(read_json(path, "guidance source state"))

    def load_auto_state(self, folder: Path) -> None:
        """AutoNPO's controller (signal windows, mistake pool, counters) as saved with a checkpoint or snapshot."""
        path = folder / AUTO_STATE_FILE
        if self.auto is None or not path.exists():
            return
        try:
            self.auto.load_state_dict(torch.load(path, weights_only=False))
        except Exception as e:
            raise NPOStateError(f"could not load the AutoNPO state at {path}: {e}") from e

    def _load_checkpoint(self):
        if self.config.trainer.resume_mode != "disable":
            snapshot = self.fork_manager.in_flight_snapshot()
            if snapshot is not None:
                step = self.fork_manager.state.intervention.at_step
                print(f"NPO: resuming an in-flight fork ({self.fork_manager.phase.value}) from {snapshot}")
                self.restore_folder(snapshot, step, what="fork snapshot")  # the manager restored the controller
                return step
        result = super()._load_checkpoint()
        folder = self._resumed_folder()
        state_file = None if folder is None else folder / CHECKPOINT_STATE_FILE
        raw = read_json(state_file, "NPO checkpoint state") if state_file and state_file.exists() else None
        self.fork_manager.adopt_checkpoint_state(raw, state_file or Path(self.fork_manager.state_dir))
        self.fork_manager.resume_teacher(self.fork_engine)
        if folder is not None:
            self.load_auto_state(folder)
            self.load_source_state(folder)
        return result

    def _resumed_folder(self) -> Path | None:
        """The folder verl's ``_load_checkpoint`` loaded, found the way it finds it; step 0 counts (a bootstrap fork's
        rollback checkpoint, or a stop requested during its window)."""
        mode = self.config.trainer.resume_mode
        if mode == "resume_path":
            return Path(self.config.trainer.resume_from_path)
        if mode != "auto":
            return None
        latest = find_latest_ckpt_path(str(Path(self.config.trainer.default_local_dir).absolute()))
        return None if latest is None else Path(latest)

    def fit(self) -> None:
        """verl's ``fit()``, unchanged, run with the step logger that marks look-ahead steps (module docstring)."""
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
                super().log(data, trainer.compute.optimizer_steps, backend)

        with logging_with(NPOTracking):
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
    "npo/signal/v": "v",
    "npo/signal/s": "s",
    "npo/auto/delta_star": "delta_star",
    "npo/auto/mistake_pool": "mistakes",
    "npo/compute/optimizer_steps": "opt_steps",
    "npo/distill/kl_old_to_teacher": "teacher_kl",
    "actor/npo_distill_kl": "distill_kl",
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
