"""The recipe YAMLs compose against the installed verl and say what docs/configuration.md says they say."""

from dataclasses import fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import recipes
import recipes.grpo
import recipes.npo
from npo_ext.config import GuidanceConfig, NPOConfig, NPOConfigError
from recipes.npo.guards import check_batch_layout

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
    assert cfg["trainer"]["total_epochs"] == 1, "a run length of our choosing, not verl's default of 30 epochs"


@pytest.mark.parametrize("section, options", [("npo", NPOConfig), ("guidance", GuidanceConfig)])
def test_yaml_documents_every_option_with_the_code_defaults(section, options):
    raw = load(NPO_DIR, "npo_trainer")[section]
    assert set(raw) == {f.name for f in fields(options)}
    assert options.from_dict(raw) == options()


@pytest.mark.parametrize("options", [NPOConfig, GuidanceConfig])
def test_every_npo_and_guidance_option_is_documented(options):
    reference = (Path(recipes.npo.__file__).parents[2] / "docs" / "configuration.md").read_text()
    for f in fields(options):
        assert f"| `{f.name}` |" in reference, f.name


@pytest.mark.parametrize(
    "npo_name, grpo_name, overrides",
    [("npo_trainer", "grpo_trainer", []), ("npo_cpu_demo", "grpo_cpu_demo", []),
     ("npo_cpu_demo", "grpo_cpu_demo", ["+demo_rollout=vllm"])],
)  # fmt: skip
def test_grpo_baseline_differs_only_by_npo_switch(npo_name, grpo_name, overrides):
    npo, grpo = load(NPO_DIR, npo_name, overrides), load(GRPO_DIR, grpo_name, overrides)
    assert grpo["npo"]["enable"] is False and grpo["npo"]["interventions"] == []
    for cfg in (npo, grpo):
        cfg.pop("npo")
        cfg["trainer"].pop("experiment_name")
    assert npo == grpo


@pytest.mark.parametrize("overrides, rollout", [([], "hf_cpu"), (["+demo_rollout=vllm"], "vllm")])
def test_cpu_demo_schedules_pass_the_run_checks(overrides, rollout):
    """The demo's schedule is valid for its run shape (64 training rows, 4 per step); the e2e tests run it."""
    cfg = load(NPO_DIR, "npo_cpu_demo", overrides)
    assert cfg["actor_rollout_ref"]["rollout"]["name"] == rollout
    assert cfg["trainer"]["device"] == "cpu"
    parsed = NPOConfig.from_dict(cfg["npo"])
    assert parsed.interventions
    steps_per_epoch = 64 // cfg["data"]["train_batch_size"]
    parsed.check_against_run(
        rollout_n=4, total_steps=cfg["trainer"]["total_training_steps"], steps_per_epoch=steps_per_epoch
    )


RECIPES = ("npo", "grpo", "luffy", "exgrpo", "rlep")


def recipe_config(recipe: str, name: str, overrides=()):
    with initialize_config_dir(config_dir=str(Path(recipes.__file__).parent / recipe / "config"), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(("nodes", "gpus"), [(1, 8), (4, 8)])
def test_every_gpu_recipe_splits_its_batches_over_8_and_32_ranks(recipe, nodes, gpus):
    config = recipe_config(recipe, f"{recipe}_trainer", [f"trainer.nnodes={nodes}", f"trainer.n_gpus_per_node={gpus}"])
    check_batch_layout(config)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("rollout", [[], ["+demo_rollout=vllm"]])
def test_every_demo_splits_its_batches_over_1_and_2_ranks(recipe, ranks, rollout):
    config = recipe_config(recipe, f"{recipe}_cpu_demo", [f"trainer.n_gpus_per_node={ranks}", *rollout])
    assert config.actor_rollout_ref.rollout.name == ("vllm" if rollout else "hf_cpu")
    check_batch_layout(config)


def test_micro_batches_that_do_not_fit_a_ranks_share_fail_naming_the_option():
    """Micro-batches of 16 rows fit one rank's share of the demo's 16 rows; on 2 ranks each gets 8."""
    config = recipe_config(
        "npo",
        "npo_cpu_demo",
        ["trainer.n_gpus_per_node=2", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16"],
    )
    with pytest.raises(NPOConfigError, match=r"log_prob_micro_batch_size_per_gpu=16 does not divide the 8 rows each"):
        check_batch_layout(config)
    uneven = recipe_config("npo", "npo_cpu_demo", ["trainer.n_gpus_per_node=3"])
    with pytest.raises(NPOConfigError, match=r"a step's rows .* = 16 do not split evenly over 3 training ranks"):
        check_batch_layout(uneven)


def leaf_paths(node, prefix=""):
    """Dotted paths of every leaf of a nested dict (an empty dict counts as a leaf)."""
    if not isinstance(node, dict) or not node:
        return {prefix}
    return set().union(*(leaf_paths(value, f"{prefix}{key}.") for key, value in node.items()))


OWN_SECTIONS = ("npo.", "guidance.", "rlep_collect.")


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_verl_key_a_gpu_recipe_sets_exists_in_verl(recipe):
    """A misspelt verl key in a recipe YAML would be added silently and do nothing; NPO's own sections aside, every
    key a recipe sets is one verl 0.9.1's ppo_trainer has (or sits in a section verl leaves free-form)."""
    import verl.trainer.config

    with initialize_config_dir(config_dir=str(Path(verl.trainer.config.__file__).parent), version_base=None):
        verl_keys = leaf_paths(OmegaConf.to_container(compose(config_name="ppo_trainer"), resolve=False))
    ours = leaf_paths(OmegaConf.to_container(recipe_config(recipe, f"{recipe}_trainer"), resolve=False))
    free_form = {path for path in verl_keys if path.endswith(".")}  # empty dicts: any key goes below them
    unknown = {
        path
        for path in ours - verl_keys
        if not path.startswith(OWN_SECTIONS) and not any(path.startswith(section) for section in free_form)
    }
    assert unknown == set()
