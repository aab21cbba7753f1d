"""Run a CPU NPO demo config in-process with a recording trainer; write what it observed as JSON.

Used by the integration tests in a subprocess, so Ray, the CPU platform and verl's cached platform choice stay out
of the pytest process. Everything real runs: Ray, the FSDP2 actor on CPU, verl's fit(), and either the in-worker
transformers rollout (``npo_cpu_demo``) or verl's agent loop with a vLLM server replica (``npo_cpu_vllm_demo``,
run with the .venv-vllm interpreter).

    python tests/integration/npo_cpu_probe.py DEMO_DIR REPORT.json [--config NAME] [--ranks N] [--die-at WHERE] \
        [overrides]

``--die-at`` kills the run (exit 3) at ``lookahead:STEP`` / ``guided:STEP`` / ``idle:STEP`` (before that step's
update), at ``collect:BATCH`` (before that window batch is sampled), at ``probe:I`` (before AutoNPO probes its I-th
policy, θ_T and then each candidate, counted from 0 in this process) or at ``select:0`` (right after AutoNPO's SELECT
persisted its decision, before it moves the chosen weights). Every step's ``npo/*`` metrics are recorded, and so is
every probed policy's directory. ``--check-topk`` also compares, on the first training batch, the actor's log-probs
of the sampled tokens from the top-k forward V uses with verl's own π_old, and scores every stored guide sample file
under the weights that sampled it (V must then be 1). At every rollback the probe keeps copies of the
snapshot and the guide checkpoint and saves the restored actor next to them (``probe_rollback/``), for comparing
optimizer, LR and RNG state. ``--stale-check`` also scores the first step after a rollback with the guide weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.update(
    VERL_USE_EXTERNAL_MODULES="recipes.cpu.platform",
    VERL_PLATFORM="cpu",
    VERL_ENGINE_DEVICE="cuda",
    WANDB_MODE="disabled",
    TOKENIZERS_PARALLELISM="false",
    VLLM_CPU_KVCACHE_SPACE="1",
    VLLM_CPU_OMP_THREADS_BIND="nobind",
)

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from verl.trainer.ppo.ray_trainer import RayPPOTrainer  # noqa: E402

import recipes.npo  # noqa: E402
from npo_ext.fork import Phase  # noqa: E402
from npo_ext.injection import IS_GUIDE  # noqa: E402
from recipes.npo.distill_loss import TEACHER_LOG_PROB  # noqa: E402
from recipes.npo.main_npo import NPOTaskRunner  # noqa: E402
from recipes.npo.npo_ray_trainer import RayNPOTrainer  # noqa: E402
from recipes.npo.topk_forward import actor_log_probs_at  # noqa: E402


class Killed(SystemExit):
    pass


def masked_log_prob_sum(trainer: RayNPOTrainer, probe) -> float:
    old_log_prob, _ = trainer._compute_old_log_prob(probe)
    mask = probe.batch["response_mask"].float()
    return float((old_log_prob.batch["old_log_probs"] * mask).sum())


def sampled_tokens(batch) -> torch.Tensor:
    """Response tokens of the rows the rollout engine sampled (not guide rows)."""
    td = batch.batch
    guide = td[IS_GUIDE].bool() if IS_GUIDE in td.keys() else torch.zeros(len(td["response_mask"]), dtype=torch.bool)
    return td["response_mask"].bool() & ~guide.unsqueeze(-1)


def prob_gap(batch, log_probs) -> torch.Tensor:
    """Per sampled token: |π_actor - π_rollout|."""
    return (log_probs.exp() - batch.batch["rollout_log_probs"].exp()).abs()[sampled_tokens(batch)]


def rollout_vs_actor(batch, old_log_probs) -> dict:
    """How far the rollout engine's token probabilities are from the actor's, on sampled and on guide rows."""
    td = batch.batch
    if "rollout_log_probs" not in td.keys():
        return {}
    guided = td["response_mask"].bool() & ~sampled_tokens(batch)
    gap = prob_gap(batch, old_log_probs)
    return {
        "max_prob_diff": float(gap.max()),
        "mean_prob_diff": float(gap.mean()),
        "guide_log_prob_gap": float((old_log_probs - td["rollout_log_probs"]).abs()[guided].max())
        if bool(guided.any())
        else None,
    }


def topk_alignment(trainer: RayNPOTrainer, batch) -> float:
    """Max |π(sampled token)| difference: top-k forward (ids = the sampled tokens) vs verl's π_old.

    In probability space, because verl's π_old comes from bf16 logits (a few per cent of a log-prob far in the tail)
    while the top-k forward takes the log-softmax in float32; a shifted position would differ by tenths."""
    sequences = batch.select(batch_keys=["input_ids", "attention_mask", "position_ids", "prompts", "responses",
                                         "response_mask"])  # fmt: skip
    given = actor_log_probs_at(trainer, sequences, batch.batch["responses"].unsqueeze(-1), exclude=1)[0].squeeze(-1)
    mask = batch.batch["response_mask"].bool()
    return float((given.exp() - batch.batch["old_log_probs"].exp()).abs()[mask].max())


def make_recording_trainer(
    report: dict, die_at: tuple[str, int] | None, rollback_dir: Path | None, check_topk: bool = False
):
    class RecordingTrainer(RayNPOTrainer):
        probe = None
        stale_check_pending = False

        def _compute_old_log_prob(self, batch):
            if self.probe is None:
                self.probe = batch.select(deepcopy=True)
            stale = self._stale_weights_gap(batch) if self.stale_check_pending else {}
            old_log_prob, mfu = super()._compute_old_log_prob(batch)
            self._rollout_check = {**rollout_vs_actor(batch, old_log_prob.batch["old_log_probs"]), **stale}
            if TEACHER_LOG_PROB in batch.batch.keys() and "teacher_check" not in report:
                report["teacher_check"] = self._teacher_check(batch, old_log_prob.batch["old_log_probs"])
            return old_log_prob, mfu

        def _teacher_check(self, batch, current) -> dict:
            """First distilled step: the teacher forward's log-probs against θ_{T+Δ}'s (the guide weights loaded
            into the actor, scored by verl's π_old computation) and against the current policy's."""
            self.load_actor(rollback_dir / "guide", "probe: guide weights", weights_only=True)
            guide, _ = RayPPOTrainer._compute_old_log_prob(self, batch)
            self.load_actor(rollback_dir / "restored", "probe: restored weights")
            teacher, mask = batch.batch[TEACHER_LOG_PROB], batch.batch["response_mask"].bool()
            return {
                "vs_guide": float((teacher - guide.batch["old_log_probs"]).abs()[mask].max()),
                "vs_current": float((teacher - current).abs()[mask].max()),
            }

        def _stale_weights_gap(self, batch) -> dict:
            """First step after a rollback: how far the rollout would be from θ_{T+Δ}, had vLLM kept those weights.

            Loads the guide weights into the actor, scores the batch with verl's own π_old computation, and loads
            the restored θ_T back (weights, optimizer, LR and RNG, saved right after the rollback).
            """
            self.stale_check_pending = False
            self.load_actor(rollback_dir / "guide", "probe: guide weights", weights_only=True)
            stale, _ = RayPPOTrainer._compute_old_log_prob(self, batch)
            self.load_actor(rollback_dir / "restored", "probe: restored weights")
            return {"stale_mean_prob_diff": float(prob_gap(batch, stale.batch["old_log_probs"]).mean())}

        def _update_actor(self, batch):
            if check_topk and "topk_alignment" not in report:
                report["topk_alignment"] = topk_alignment(self, batch)
            label = self.fork_manager.phase.value
            if die_at == (label, self.global_steps):
                report["died_at"] = [label, self.global_steps]
                report["died_with_metrics"] = dict(self._pending_metrics)
                raise Killed(3)
            guide = batch.batch[IS_GUIDE] if IS_GUIDE in batch.batch.keys() else None
            guide_adv = []
            if guide is not None and bool(guide.any()):
                adv, mask = batch.batch["advantages"][guide], batch.batch["response_mask"][guide].float()
                guide_adv = ((adv * mask).sum(-1) / mask.sum(-1)).tolist()
            report["steps"].append(
                {
                    "step": self.global_steps,
                    "phase": label,
                    "prompts": sorted({int(e["index"]) for e in batch.non_tensor_batch["extra_info"]}),
                    "guide_rows": int(guide.sum()) if guide is not None else 0,
                    "guide_advantages": guide_adv,
                    **self._rollout_check,
                }
            )
            output = super()._update_actor(batch)
            metrics = output.meta_info["metrics"]
            report["metrics"].append(
                {k: float(np.mean(v)) for k, v in metrics.items() if k.startswith(("npo/", "actor/npo_"))}
            )
            return output

        def _load_checkpoint(self):
            result = super()._load_checkpoint()
            report["resumed_at"] = self.global_steps
            report["resumed_phase"] = self.fork_manager.phase.value
            return result

    return RecordingTrainer


def record_fork_engine(
    trainer, report: dict, demo_dir: Path, die_at: tuple[str, int] | None, stale_check: bool, check_topk: bool
) -> None:
    engine = trainer.fork_engine

    def log_prob_sum_after(name: str, label: str) -> None:
        original = getattr(engine, name)

        def recorded(*a, **kw):
            result = original(*a, **kw)
            if trainer.probe is not None:
                report["log_prob_sums"].setdefault(label, []).append(masked_log_prob_sum(trainer, trainer.probe))
            return result

        setattr(engine, name, recorded)

    log_prob_sum_after("save_snapshot", "snapshot")
    log_prob_sum_after("save_guide_checkpoint", "guide")

    rollback, collect_batch, after_rollback = engine.rollback, engine._collect_batch, engine.after_rollback

    def recorded_after_rollback():
        """Which of the fork step's checkpoint shards share their file with the snapshot (linked, not written)."""
        after_rollback()
        snapshot = engine._restored_from / "actor"
        actor = trainer.checkpoint_folder(trainer.global_steps - 1) / "actor"
        shards = sorted(p.name for p in actor.glob("*_world_size_*.pt"))
        report["fork_checkpoint_linked"] = [
            (snapshot / name).is_file() and (snapshot / name).stat().st_ino == (actor / name).stat().st_ino
            for name in shards
        ]

    def recorded_rollback(snapshot, step):
        kept = demo_dir / "probe_rollback"
        shutil.rmtree(kept, ignore_errors=True)
        manager = trainer.fork_manager
        shutil.copytree(snapshot / "actor", kept / "snapshot")
        guide = manager.guide_dir(manager.state.intervention) / "actor"
        if guide.is_dir():  # AutoNPO without a usable Δ* rolls back with no guide
            shutil.copytree(guide, kept / "guide")
        rollback(snapshot, step)
        trainer.actor_rollout_wg.save_unmanaged_checkpoint(str(kept / "restored"), step)
        trainer.stale_check_pending = stale_check
        if trainer.probe is not None:
            report["log_prob_sums"].setdefault("rollback", []).append(masked_log_prob_sum(trainer, trainer.probe))

    def recorded_collect_batch(*args, **kwargs):
        index = report.setdefault("collected_batches", 0)
        if die_at == ("collect", index):
            report["died_at"] = ["collect", index]
            raise Killed(3)
        report["collected_batches"] = index + 1
        return collect_batch(*args, **kwargs)

    probe_candidate, store_v_samples = engine.probe_candidate, engine.store_v_samples

    def recorded_probe_candidate(checkpoint, samples_dir, probe_set):
        index = len(report["probed"])
        if die_at == ("probe", index):
            report["died_at"] = ["probe", index]
            raise Killed(3)
        report["probed"].append(checkpoint.name)
        return probe_candidate(checkpoint, samples_dir, probe_set)

    def recorded_store_v_samples(output, path, rows):
        store_v_samples(output, path, rows)
        if check_topk and path.exists():  # the weights that sampled the guides score them: V = 1
            report.setdefault("self_v", []).append(engine.variance_cost(path.parent))

    manager = trainer.fork_manager
    persist = manager._persist

    def recorded_persist(state):
        persist(state)
        if die_at == ("select", 0) and state.phase == Phase.SELECT and state.chosen is not None:
            report["died_at"] = ["select", 0]
            raise Killed(3)

    manager._persist = recorded_persist
    engine.rollback = recorded_rollback
    engine.after_rollback = recorded_after_rollback
    engine._collect_batch = recorded_collect_batch
    engine.probe_candidate = recorded_probe_candidate
    engine.store_v_samples = recorded_store_v_samples


def parse_die_at(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    where, _, number = value.partition(":")
    return where, int(number)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo_dir", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--config", default="npo_cpu_demo")
    parser.add_argument("--ranks", type=int, default=1, help="training ranks (logical GPU slots)")
    parser.add_argument("--die-at")
    parser.add_argument("--stale-check", action="store_true", help="after a rollback, score the batch with θ_{T+Δ}")
    parser.add_argument("--check-topk", action="store_true", help="check the top-k forward against verl's π_old")
    args, overrides = parser.parse_known_args()
    die_at = parse_die_at(args.die_at)
    os.environ["NPO_DEMO_DIR"] = str(args.demo_dir.absolute())

    config_dir = Path(recipes.npo.__file__).parent / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        config = compose(config_name=args.config, overrides=[f"trainer.n_gpus_per_node={args.ranks}", *overrides])

    report: dict = {"steps": [], "log_prob_sums": {}, "metrics": [], "probed": []}
    # a cluster of its own: another test may have a `ray start` cluster running on this machine
    ray.init(address="local", num_cpus=4 * args.ranks, num_gpus=args.ranks, include_dashboard=False)
    try:
        rollback_dir = args.demo_dir / "probe_rollback"
        recording = make_recording_trainer(report, die_at, rollback_dir, args.check_topk)
        trainer = NPOTaskRunner().build_trainer(config, recording)
        trainer.init_workers()
        record_fork_engine(trainer, report, args.demo_dir, die_at, args.stale_check, args.check_topk)
        trainer.fit()
    except Killed:
        report["killed"] = True
    finally:
        args.report.write_text(json.dumps(report, indent=1))
        ray.shutdown()
    sys.exit(3 if report.get("killed") else 0)


if __name__ == "__main__":
    main()
