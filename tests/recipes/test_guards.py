"""verl settings under which NPO's injection would be silently wrong or crash later fail at start-up, by name."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import recipes.npo
from npo_ext.config import GuidanceConfig, NPOConfigError
from recipes.npo.guards import check_image_budget, check_verl_run_supports_npo

CONFIG_DIR = Path(recipes.npo.__file__).parent / "config"


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="npo_trainer", overrides=list(overrides))


def test_the_recipe_configs_pass():
    check_verl_run_supports_npo(config())
    check_verl_run_supports_npo(config("algorithm.adv_estimator=rloo"))


@pytest.mark.parametrize(
    "override, option",
    [
        ("algorithm.rollout_correction.bypass_mode=true", "algorithm.rollout_correction.bypass_mode"),
        ("algorithm.adv_estimator=remax", "algorithm.adv_estimator=remax"),
        ("algorithm.adv_estimator=gae", "algorithm.adv_estimator=gae"),
        ("reward.reward_model.enable=true", "reward.reward_model.enable_resource_pool"),
        ("skip.rollout.enable=true", "skip.rollout.enable"),
        ("skip.async_rollout.enable=true", "skip.async_rollout.enable"),
        ("actor_rollout_ref.rollout.enable_rollout_routing_replay=true", "enable_rollout_routing_replay"),
        ("guidance.loss_shaping=policy_prob", "policy_loss.loss_mode=npo_guided"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode=npo_guided", "guidance.loss_shaping=none"),
    ],
)
def test_each_unsupported_setting_is_refused_naming_its_option(override, option):
    with pytest.raises(NPOConfigError, match=option.replace(".", r"\.")):
        check_verl_run_supports_npo(config(override))


def test_a_reward_model_with_its_own_pool_scores_inside_the_rollout_and_is_allowed():
    check_verl_run_supports_npo(
        config("reward.reward_model.enable=true", "reward.reward_model.enable_resource_pool=true")
    )


def test_the_luffy_recipe_passes_and_pairs_its_loss_shaping_with_the_registered_loss():
    with initialize_config_dir(
        config_dir=str(Path(recipes.npo.__file__).parents[1] / "luffy" / "config"), version_base=None
    ):
        luffy = compose(config_name="luffy_trainer")
    check_verl_run_supports_npo(luffy)
    assert luffy.guidance.source == "teacher" and not luffy.guidance.gated
    assert luffy.actor_rollout_ref.actor.policy_loss.loss_mode == "npo_guided"
    assert not luffy.algorithm.norm_adv_by_std_in_grpo
    # the backbone is NPO's: only the guidance section and what it implies differ
    npo = config()
    assert luffy.actor_rollout_ref.rollout.n == npo.actor_rollout_ref.rollout.n
    assert luffy.actor_rollout_ref.actor.optim.lr == npo.actor_rollout_ref.actor.optim.lr


def test_the_rlep_recipe_appends_two_replays_to_groups_of_eight():
    with initialize_config_dir(
        config_dir=str(Path(recipes.npo.__file__).parents[1] / "rlep" / "config"), version_base=None
    ):
        rlep = compose(config_name="rlep_trainer", overrides=["guidance.experience_file=/data/experience.jsonl"])
    check_verl_run_supports_npo(rlep)
    guidance = GuidanceConfig.from_dict(OmegaConf.to_container(rlep.guidance, resolve=True))
    assert (guidance.source, guidance.mixing, guidance.gated) == ("experience_file", "append", False)
    assert rlep.npo.slots_per_group == 2 and rlep.actor_rollout_ref.rollout.n == 8 + 2
    assert rlep.rlep_collect.output == "/data/experience.jsonl"
    assert (rlep.rlep_collect.temperature, rlep.rlep_collect.top_p, rlep.rlep_collect.min_correct) == (0.7, 0.95, 2)
    npo = config()
    assert rlep.algorithm.norm_adv_by_std_in_grpo == npo.algorithm.norm_adv_by_std_in_grpo, "standardised over n+2"
    assert rlep.actor_rollout_ref.actor.optim.lr == npo.actor_rollout_ref.actor.optim.lr


def test_the_exgrpo_recipe_replays_one_of_eight_with_the_shaped_weight():
    with initialize_config_dir(
        config_dir=str(Path(recipes.npo.__file__).parents[1] / "exgrpo" / "config"), version_base=None
    ):
        exgrpo = compose(config_name="exgrpo_trainer")
    check_verl_run_supports_npo(exgrpo)
    guidance = GuidanceConfig.from_dict(OmegaConf.to_container(exgrpo.guidance, resolve=True))
    assert (guidance.source, guidance.mixing, guidance.gated, guidance.loss_shaping) == (
        "replay", "replace", False, "behaviour_ratio"
    )  # fmt: skip
    assert (guidance.replay_ratio, guidance.replay_start_accuracy, guidance.replay_sigma) == (0.5, 0.35, 1.0)
    assert exgrpo.npo.slots_per_group == 1 and exgrpo.actor_rollout_ref.rollout.n == 8, "1 replayed + 7 generated"
    assert exgrpo.actor_rollout_ref.actor.policy_loss.loss_mode == "npo_guided"
    assert not exgrpo.algorithm.norm_adv_by_std_in_grpo
    assert exgrpo.actor_rollout_ref.actor.optim.lr == config().actor_rollout_ref.actor.optim.lr


@pytest.fixture(scope="module")
def tiny_processor(tmp_path_factory):
    """The demo model's real Qwen3-VL processor (patch 16, merge 2, at most 16 visual tokens per image)."""
    from transformers import AutoProcessor

    from recipes.demo.tiny_model import build_tiny_qwen3_vl

    folder = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_qwen3_vl(folder)
    return AutoProcessor.from_pretrained(folder)


def test_images_that_fit_the_prompt_budget_pass(tiny_processor):
    assert config().data.image_patch_size is None, "the recipe leaves the patch size to the processor"
    assert check_image_budget(config("data.max_prompt_length=64"), tiny_processor) is None


def test_an_image_larger_than_the_prompt_budget_is_named_with_the_processors_patch_size(tiny_processor):
    warning = check_image_budget(config("data.max_prompt_length=16"), tiny_processor)
    assert "up to 16 visual tokens (patch 16, merge 2, max 16384 pixels)" in warning
    assert "more than data.max_prompt_length=16" in warning


def test_a_patch_size_other_than_the_processors_fails(tiny_processor):
    with pytest.raises(NPOConfigError, match=r"data.image_patch_size=14 but .* patch_size=16"):
        check_image_budget(config("data.image_patch_size=14"), tiny_processor)
