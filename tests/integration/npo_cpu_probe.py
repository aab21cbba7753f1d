"""Run the CPU NPO demo config in-process with a recording trainer; write what it observed as JSON.

Used by test_npo_cpu_e2e.py in a subprocess, so Ray, the CPU platform and verl's cached platform choice stay out
of the pytest process. Everything real runs: Ray, the FSDP2 actor on CPU, in-worker generation, verl's fit().

    python tests/integration/npo_cpu_probe.py DEMO_DIR REPORT.json [--die-in-lookahead-step N] [hydra overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.update(
    VERL_USE_EXTERNAL_MODULES="recipes.cpu.platform",
    VERL_PLATFORM="cpu",
    VERL_ENGINE_DEVICE="cuda",
    WANDB_MODE="disabled",
    TOKENIZERS_PARALLELISM="false",
)

import ray  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import recipes.npo  # noqa: E402
from npo_ext.fork import Phase  # noqa: E402
from npo_ext.injection import IS_GUIDE  # noqa: E402
from recipes.npo.main_npo import NPOTaskRunner  # noqa: E402
from recipes.npo.npo_ray_trainer import RayNPOTrainer  # noqa: E402


class Killed(SystemExit):
    pass


def masked_log_prob_sum(trainer: RayNPOTrainer, probe) -> float:
    old_log_prob, _ = trainer._compute_old_log_prob(probe)
    mask = probe.batch["response_mask"].float()
    return float((old_log_prob.batch["old_log_probs"] * mask).sum())


def make_recording_trainer(report: dict, die_in_lookahead_step: int | None):
    class RecordingTrainer(RayNPOTrainer):
        probe = None

        def _compute_old_log_prob(self, batch):
            if self.probe is None:
                self.probe = batch.select(deepcopy=True)
            return super()._compute_old_log_prob(batch)

        def _update_actor(self, batch):
            phase = self.fork_manager.phase
            if phase == Phase.LOOKAHEAD and self.global_steps == die_in_lookahead_step:
                report["died_at"] = self.global_steps
                raise Killed(3)
            guide = batch.batch[IS_GUIDE] if IS_GUIDE in batch.batch.keys() else None
            guide_adv = []
            if guide is not None and bool(guide.any()):
                adv, mask = batch.batch["advantages"][guide], batch.batch["response_mask"][guide].float()
                guide_adv = ((adv * mask).sum(-1) / mask.sum(-1)).tolist()
            report["steps"].append(
                {
                    "step": self.global_steps,
                    "phase": phase.value,
                    "prompts": sorted({int(e["index"]) for e in batch.non_tensor_batch["extra_info"]}),
                    "guide_rows": int(guide.sum()) if guide is not None else 0,
                    "guide_advantages": guide_adv,
                }
            )
            return super()._update_actor(batch)

        def _load_checkpoint(self):
            result = super()._load_checkpoint()
            report["resumed_at"] = self.global_steps
            report["resumed_phase"] = self.fork_manager.phase.value
            return result

    return RecordingTrainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo_dir", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--die-in-lookahead-step", type=int)
    args, overrides = parser.parse_known_args()
    os.environ["NPO_DEMO_DIR"] = str(args.demo_dir.absolute())

    config_dir = Path(recipes.npo.__file__).parent / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        config = compose(config_name="npo_cpu_demo", overrides=overrides)

    report: dict = {"steps": [], "log_prob_sums": {}}
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False)
    trainer = NPOTaskRunner().build_trainer(config, make_recording_trainer(report, args.die_in_lookahead_step))
    trainer.init_workers()

    engine = trainer.fork_engine
    for name, label in (("save_snapshot", "snapshot"), ("save_guide_checkpoint", "guide"), ("rollback", "rollback")):
        original = getattr(engine, name)

        def recorded(*a, _original=original, _label=label, **kw):
            result = _original(*a, **kw)
            if trainer.probe is not None:
                report["log_prob_sums"].setdefault(_label, []).append(masked_log_prob_sum(trainer, trainer.probe))
            return result

        setattr(engine, name, recorded)

    try:
        trainer.fit()
    except Killed:
        report["killed"] = True
    finally:
        args.report.write_text(json.dumps(report, indent=1))
        ray.shutdown()
    sys.exit(3 if report.get("killed") else 0)


if __name__ == "__main__":
    main()
