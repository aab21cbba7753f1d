"""The verl side of ``python -m recipes.npo.probe``: the run's own trainer, used only to load checkpoints, sample
through its rollout (vLLM on GPU, the in-worker transformers rollout on CPU) and run the top-k forward V needs. No
training.

verl picks its platform when it is first imported, so :func:`create` sets the CPU platform up (as
``scripts/run_npo.sh --local`` does) before importing anything of verl.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

CPU_ENV = {
    "VERL_USE_EXTERNAL_MODULES": "recipes.cpu.platform",
    "VERL_PLATFORM": "cpu",
    "VERL_ENGINE_DEVICE": "cuda",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


class VerlProbeBackend:
    """``npo_ext.probe.ProbeBackend`` over a :class:`RayNPOTrainer` built from the run's recipe config."""

    def __init__(self, trainer: Any, checkpoints: Path, prompts: Path) -> None:
        from verl.trainer.ppo.utils import create_rl_dataset
        from verl.utils.dataset.rl_dataset import collate_fn

        self.trainer, self.checkpoints = trainer, checkpoints
        dataset = create_rl_dataset(
            [str(prompts)], trainer.config.data, trainer.tokenizer, trainer.processor, is_train=False
        )
        self.batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
        trainer.global_steps = 1

    def load(self, step: int) -> None:
        self.trainer.fork_engine.load_guide_checkpoint(self.checkpoints / f"global_step_{step}")

    def sample(self, k: int, samples_dir: Path | None) -> np.ndarray:
        from verl import DataProto

        from recipes.npo.fork_engine import new_uids

        batch = DataProto.from_single_dict(self.batch_dict)
        batch.non_tensor_batch["uid"] = new_uids(len(batch))
        engine = self.trainer.fork_engine
        output = engine.sample(self.trainer.gen_batch_of(batch), k)
        if samples_dir is not None:
            engine.store_v_samples(output, samples_dir / "batch_00000.pt", len(output))
        npo = self.trainer.npo
        acc = np.asarray(output.non_tensor_batch[npo.acc_key], dtype=np.float64).reshape(len(batch), k)
        return (acc >= npo.guide_min_acc).sum(-1)

    def variance_rows(self, samples_dir: Path) -> np.ndarray:
        return self.trainer.fork_engine.variance_rows(samples_dir)

    def external_correct(self, source: str, where: str) -> np.ndarray:
        nt = {k: v for k, v in self.batch_dict.items() if isinstance(v, np.ndarray)}
        if source == "experience_file":
            from npo_ext.experience_file import read_experience

            _, entries = read_experience(where)
            return np.array([key in entries for key in self.trainer.prompt_keys(nt)], dtype=int)
        if source == "replay":
            from npo_ext.persist import read_json
            from npo_ext.replay_pool import ReplayPool, ReplaySettings

            pool = ReplayPool(ReplaySettings())
            pool.load_state_dict(read_json(Path(where), "replay pool"))
            return np.array([bool(pool.candidates(key)) for key in self.trainer.prompt_keys(nt)], dtype=int)
        if source != "teacher":
            raise ValueError(f"unknown guidance source {source!r}; expected teacher, experience_file or replay")
        npo, scorer, tokenizer = self.trainer.npo, self.trainer.reward_scorer, self.trainer.tokenizer
        correct = []
        for row in range(len(nt["extra_info"])):
            trace = (nt["extra_info"][row] or {}).get(where)
            if not isinstance(trace, str) or not trace.strip():
                correct.append(0)
                continue
            ids = tokenizer.encode(trace, add_special_tokens=False) + [tokenizer.eos_token_id]
            fields = {k: nt[k][row] for k in ("data_source", "reward_model", "extra_info")}
            correct.append(int(scorer.score(fields, ids)[npo.acc_key] >= npo.guide_min_acc))
        return np.array(correct)

    def close(self) -> None:
        import ray

        ray.shutdown()


def create(args: argparse.Namespace, overrides: list[str]) -> VerlProbeBackend:
    """Compose the run's config, start Ray and the workers, and wrap them."""
    if args.device == "cpu":
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)
    import ray
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    import recipes.npo
    from recipes.npo.main_npo import NPOTaskRunner

    config_dir = Path(recipes.npo.__file__).parent / "config"
    fixed = ["trainer.resume_mode=disable", f"trainer.default_local_dir={args.out.absolute() / 'trainer'}"]
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        config = compose(config_name=args.config_name, overrides=[*overrides, *fixed])
    # as verl's run_ppo starts Ray: the recipe's ray_init, on top of verl's default runtime environment
    ray_init = OmegaConf.to_container(config.ray_kwargs.get("ray_init", {}), resolve=True)
    ray_init["runtime_env"] = OmegaConf.to_container(
        OmegaConf.merge(get_ppo_ray_runtime_env(config), ray_init.get("runtime_env") or {})
    )
    ray.init(**ray_init)
    trainer = NPOTaskRunner().build_trainer(config)
    trainer.init_workers()
    return VerlProbeBackend(trainer, args.checkpoints.absolute(), args.prompts)
