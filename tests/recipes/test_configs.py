"""The recipe YAMLs compose against the installed verl and say what the README says they say."""

from dataclasses import fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import recipes.grpo
import recipes.npo
from npo_ext.config import GuidanceConfig, NPOConfig

NPO_DIR = Path(recipes.npo.__file__).parent / "config"
GRPO_DIR = Path(recipes.grpo.__file__).parent / "config"


def load(config_dir: Path, name: str, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name=name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.fixture(autouse=True)
def demo_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NPO_DEMO_DIR", str(tmp_path))


def test_paper_grpo_backbone_settings():
    cfg = load(NPO_DIR, "npo_trainer")
    actor, rollout = cfg["actor_rollout_ref"]["actor"], cfg["actor_rollout_ref"]["rollout"]
    assert rollout["n"] == 8 and rollout["temperature"] == 1.0
    assert cfg["data"]["max_prompt_length"] == 4096 and cfg["data"]["max_response_length"] == 4096
    assert actor["ppo_mini_batch_size"] == "${data.train_batch_size}"
    assert actor["optim"]["lr"] == 1e-6
    assert (actor["clip_ratio_low"], actor["clip_ratio_high"]) == (0.2, 0.28)
    assert actor["loss_agg_mode"] == "token-mean" and actor["use_kl_loss"] is False
    assert cfg["algorithm"]["adv_estimator"] == "grpo" and cfg["algorithm"]["use_kl_in_reward"] is False
    assert cfg["trainer"]["use_v1"] is False


@pytest.mark.parametrize("section, options", [("npo", NPOConfig), ("guidance", GuidanceConfig)])
def test_yaml_documents_every_option_with_the_code_defaults(section, options):
    raw = load(NPO_DIR, "npo_trainer")[section]
    assert set(raw) == {f.name for f in fields(options)}
    assert options.from_dict(raw) == options()


@pytest.mark.parametrize("options", [NPOConfig, GuidanceConfig])
def test_every_npo_and_guidance_option_is_in_the_readme(options):
    readme = (Path(recipes.npo.__file__).parents[2] / "README.md").read_text()
    for f in fields(options):
        assert f"| `{f.name}` |" in readme, f.name


@pytest.mark.parametrize(
    "npo_name, grpo_name",
    [("npo_trainer", "grpo_trainer"), ("npo_cpu_demo", "grpo_cpu_demo"), ("npo_cpu_vllm_demo", "grpo_cpu_vllm_demo")],
)
def test_grpo_baseline_differs_only_by_npo_switch(npo_name, grpo_name):
    npo, grpo = load(NPO_DIR, npo_name), load(GRPO_DIR, grpo_name)
    assert grpo["npo"]["enable"] is False and grpo["npo"]["interventions"] == []
    for cfg in (npo, grpo):
        cfg.pop("npo")
        cfg["trainer"].pop("experiment_name")
    assert npo == grpo


@pytest.mark.parametrize("name, rollout", [("npo_cpu_demo", "hf_cpu"), ("npo_cpu_vllm_demo", "vllm")])
def test_cpu_demo_schedules_pass_the_run_checks(name, rollout):
    """The demo's schedule is valid for its run shape (64 training rows, 4 per step); the e2e tests run it."""
    cfg = load(NPO_DIR, name)
    assert cfg["actor_rollout_ref"]["rollout"]["name"] == rollout
    assert cfg["trainer"]["device"] == "cpu"
    parsed = NPOConfig.from_dict(cfg["npo"])
    assert parsed.interventions
    steps_per_epoch = 64 // cfg["data"]["train_batch_size"]
    parsed.check_against_run(
        rollout_n=4, total_steps=cfg["trainer"]["total_training_steps"], steps_per_epoch=steps_per_epoch
    )
