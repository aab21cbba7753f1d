"""Collect RLEP's experience file: sample a finished run on the training prompts, keep its verified-correct responses.

    python -m recipes.rlep.collect --config-path recipes/rlep/config --config-name rlep_trainer \
        rlep_collect.checkpoint=<run>/global_step_<N> guidance.experience_file=<file> [data / model overrides]

The run's own recipe YAML describes model, data, rollout and reward, so the samples come from the same rollout path
training uses (vLLM on GPU, the in-worker transformers rollout on CPU), from the checkpoint's weights, at
``rlep_collect.temperature`` / ``top_p``. Every training prompt gets ``samples_per_prompt`` samples; a prompt with at
least ``min_correct`` verified-correct ones (judged correct and ended with EOS, as NPO's guides) goes into the file,
the others are counted and reported. Prompts already in the file are skipped, so a killed collection resumes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import hydra
import ray
from omegaconf import DictConfig, open_dict
from torchdata.stateful_dataloader import StatefulDataLoader
from tqdm import tqdm
from verl import DataProto
from verl.trainer.main_ppo import run_ppo
from verl.utils.dataset.rl_dataset import collate_fn
from verl.utils.device import auto_set_device

from npo_ext.experience_file import ExperienceHeader, append_prompts, start_file
from recipes.npo.fork_engine import new_uids
from recipes.npo.main_npo import NPOTaskRunner


@dataclass(frozen=True)
class CollectSettings:
    """The ``rlep_collect:`` section."""

    output: str
    checkpoint: str = ""
    samples_per_prompt: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    min_correct: int = 2

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("rlep_collect.output (the experience file) is empty")
        if self.samples_per_prompt < self.min_correct or self.min_correct < 1:
            raise ValueError(
                f"rlep_collect: need 1 <= min_correct ({self.min_correct}) <= samples_per_prompt "
                f"({self.samples_per_prompt})"
            )

    @property
    def source_step(self) -> int:
        """The finished run's step, from a ``global_step_<N>`` folder name (0 for the model at model.path)."""
        name = Path(self.checkpoint).name if self.checkpoint else ""
        return int(name.rsplit("_", 1)[1]) if name.startswith("global_step_") else 0


def prepare_config(config: DictConfig) -> CollectSettings:
    """Sampling settings into the rollout config; no training-time guidance source (the file does not exist yet)."""
    settings = CollectSettings(**config.rlep_collect)
    with open_dict(config):
        config.actor_rollout_ref.rollout.temperature = settings.temperature
        config.actor_rollout_ref.rollout.top_p = settings.top_p
        config.guidance.source, config.guidance.mixing, config.guidance.gated = "near_future", "replace", True
        config.npo.enable = False
        config.trainer.resume_mode = "disable"
    return settings


class CollectTaskRunner(NPOTaskRunner):
    """Builds the recipe's trainer and workers, then samples instead of training."""

    def run(self, config: DictConfig) -> None:
        print(f"CollectTaskRunner hostname: {socket.gethostname()}", flush=True)
        settings = prepare_config(config)
        header = ExperienceHeader(settings.min_correct, settings.samples_per_prompt, settings.source_step)
        done = start_file(settings.output, header)
        trainer = self.build_trainer(config)
        trainer.init_workers()
        engine = trainer.fork_engine
        trainer.global_steps = settings.source_step + 1  # fit() would be about to run the step after the checkpoint
        engine.use_weights(Path(settings.checkpoint) if settings.checkpoint else None)
        loader = StatefulDataLoader(
            trainer.train_dataset, batch_size=config.data.train_batch_size, shuffle=False, collate_fn=collate_fn
        )
        kept = skipped = 0
        for batch_dict in tqdm(loader, desc="rlep collect", unit="batch"):
            batch = DataProto.from_single_dict(batch_dict)
            batch.non_tensor_batch["uid"] = new_uids(len(batch))
            keys = trainer.prompt_keys(batch.non_tensor_batch)
            todo = [i for i, key in enumerate(keys) if key not in done]
            if not todo:
                continue
            gen_batch = trainer.gen_batch_of(batch)
            k = settings.samples_per_prompt
            output = engine.sample(gen_batch if len(todo) == len(keys) else gen_batch[todo], k)
            rows = engine.verified_responses(output)
            found = {}
            for j, i in enumerate(todo):
                group = rows[j * k : (j + 1) * k]
                correct = [ids for ids, _, ok in group if ok]
                if len(correct) >= settings.min_correct:
                    found[keys[i]] = (k, correct)
            append_prompts(settings.output, found)
            done.update(keys[i] for i in todo)
            kept, skipped = kept + len(found), skipped + len(todo) - len(found)
        print(
            f"[rlep] {settings.output}: {kept} prompts kept this run; {skipped} skipped (fewer than "
            f"{settings.min_correct} verified-correct of {settings.samples_per_prompt} samples)",
            flush=True,
        )


@hydra.main(config_path="config", config_name="rlep_trainer", version_base=None)
def main(config: DictConfig) -> None:
    auto_set_device(config)
    run_ppo(config, task_runner_class=ray.remote(num_cpus=1)(CollectTaskRunner))


if __name__ == "__main__":
    main()
