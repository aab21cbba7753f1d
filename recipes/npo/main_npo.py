"""Entry point: ``python -m recipes.npo.main_npo [hydra overrides]`` (see scripts/run_npo.sh).

Mirrors verl 0.9.1's legacy ``main_ppo`` / ``main_ppo_v0.TaskRunner`` set-up, swapping in the NPO worker and
``RayNPOTrainer``; everything else (datasets, sampler, resource pools, Ray start-up) is verl's own code.
"""

from __future__ import annotations

import os
import socket
import sys

import hydra
import ray
from omegaconf import OmegaConf
from verl.trainer.main_ppo import run_ppo
from verl.trainer.main_ppo_v0 import BaseTaskRunner
from verl.trainer.ppo.utils import Role, create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

from recipes.npo.preemption import REQUEUE_EXIT_CODE, is_stopped_for_requeue


class NPOTaskRunner(BaseTaskRunner):
    """Builds datasets, workers and the NPO trainer inside the Ray driver task."""

    def add_actor_rollout_worker(self, config):
        from recipes.npo.worker import NPOActorRolloutRefWorker

        _, ray_worker_group_cls = super().add_actor_rollout_worker(config)
        for role in (Role.ActorRollout, Role.ActorRolloutRef):
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(NPOActorRolloutRefWorker)
        return NPOActorRolloutRefWorker, ray_worker_group_cls

    def build_trainer(self, config, trainer_cls=None):
        """Datasets, sampler, workers mapping and the trainer, as verl's legacy TaskRunner builds them."""
        from verl.utils.config import omega_conf_to_dataclass
        from verl.utils.dataset.rl_dataset import collate_fn

        from npo_ext.config import GuidanceConfig
        from recipes.common.guidance_plugin import plugin_class
        from recipes.common.positioned_dataset import PositionedDataset
        from recipes.npo.npo_ray_trainer import RayNPOTrainer

        OmegaConf.resolve(config)
        _, ray_worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))

        model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        train_dataset = create_rl_dataset(
            config.data.train_files,
            config.data,
            tokenizer,
            processor,
            is_train=True,
            max_samples=config.data.get("train_max_samples", -1),
        )
        guidance = GuidanceConfig.from_dict(OmegaConf.to_container(config.get("guidance", {}) or {}))
        plugin = plugin_class(guidance)
        train_dataset = PositionedDataset(train_dataset)  # prompts re-read by position (mistake pool, replay)
        train_sampler = create_rl_sampler(config.data, train_dataset)
        if plugin is not None:
            train_sampler = plugin.wrap_sampler(train_sampler, guidance)
        val_dataset = create_rl_dataset(
            config.data.val_files,
            config.data,
            tokenizer,
            processor,
            is_train=False,
            max_samples=config.data.get("val_max_samples", -1),
        )
        return (trainer_cls or RayNPOTrainer)(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=self.init_resource_pool_mgr(config),
            ray_worker_group_cls=ray_worker_group_cls,
            train_dataset=train_dataset,
            val_dataset=val_dataset,
            collate_fn=collate_fn,
            train_sampler=train_sampler,
        )

    def run(self, config) -> None:
        print(f"NPOTaskRunner hostname: {socket.gethostname()}, PID: {os.getpid()}")
        trainer = self.build_trainer(config)
        trainer.init_workers()
        trainer.fit()


@hydra.main(config_path="config", config_name="npo_trainer", version_base=None)
def main(config) -> None:
    auto_set_device(config)
    try:
        run_ppo(config, task_runner_class=ray.remote(num_cpus=1)(NPOTaskRunner))
    except Exception as error:
        if not is_stopped_for_requeue(error):
            raise
        # a clean, resumable stop (recipes/npo/preemption.py): the exit status tells scripts/run_npo.sh to requeue
        print(f"[npo] stopped for requeue (exit status {REQUEUE_EXIT_CODE})", flush=True)
        sys.exit(REQUEUE_EXIT_CODE)


if __name__ == "__main__":
    main()
