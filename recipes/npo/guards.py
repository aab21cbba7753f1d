"""Start-up checks: verl options under which NPO's injection would be silently wrong or would crash later.

Each is a clear error naming the option, raised before any worker starts. They hold for the legacy
``RayPPOTrainer.fit()`` of verl 0.9.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from npo_ext.config import NPOConfigError
from recipes.npo.guided_loss import LOSS_MODE as GUIDED_LOSS_MODE

# Estimators whose batch is exactly rollout.n rows per uid, normalised within the group: the gate's "group
# accuracy" and a replaced slot mean what they mean in GRPO. remax appends greedy rows that share the uid.
GROUP_ESTIMATORS = ("grpo", "grpo_vectorized", "grpo_passk", "rloo", "rloo_vectorized", "opo", "gpg")


def _getter(config: DictConfig) -> Callable[..., Any]:
    """``get(path, default=None)``: the config value at a dotted path."""
    return lambda path, default=None: OmegaConf.select(config, path, default=default)


def check_verl_run_supports_npo(config: DictConfig) -> None:
    """Raise :class:`NPOConfigError` for a verl setting NPO cannot run with."""
    get = _getter(config)

    estimator = str(get("algorithm.adv_estimator"))
    if estimator not in GROUP_ESTIMATORS:
        raise NPOConfigError(
            f"algorithm.adv_estimator={estimator} is not supported with guide injection: guide injection replaces a "
            f"slot of a plain group of rollout.n responses per prompt; use one of {', '.join(GROUP_ESTIMATORS)}"
        )
    if get("algorithm.rollout_correction.bypass_mode", False):
        raise NPOConfigError(
            "algorithm.rollout_correction.bypass_mode=true is not supported with guide injection: it takes "
            "old_log_probs from the rollout engine, which never sampled the guide tokens, so guide rows would train "
            "against placeholder log-probs; use the default decoupled mode (bypass_mode=false)"
        )
    if get("reward.reward_model.enable", False) and not get("reward.reward_model.enable_resource_pool", False):
        raise NPOConfigError(
            "reward.reward_model.enable=true with reward.reward_model.enable_resource_pool=false scores rollouts after "
            "generation, but guide injection needs rm_scores and the accuracy from the rollout itself; give the "
            "reward model its own resource pool (enable_resource_pool=true)"
        )
    for path in ("skip.rollout.enable", "skip.async_rollout.enable", "skip.rollout_tq.enable"):
        if get(path, False):
            raise NPOConfigError(
                f"{path}=true is not supported with guide injection: it replays cached rollouts by step number, and "
                "after a rollback the step numbers repeat with a different policy"
            )
    if get("actor_rollout_ref.rollout.enable_rollout_routing_replay", False):
        raise NPOConfigError(
            "actor_rollout_ref.rollout.enable_rollout_routing_replay=true is not supported with guide injection: "
            "guide rows carry no routed experts of their own, so the replayed routing would be another response's"
        )
    shaping = get("guidance.loss_shaping", "none")
    loss_mode = get("actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
    if (shaping != "none") != (loss_mode == GUIDED_LOSS_MODE):
        raise NPOConfigError(
            f"guidance.loss_shaping={shaping} goes with actor_rollout_ref.actor.policy_loss.loss_mode="
            f"{GUIDED_LOSS_MODE} (and none with any other), got loss_mode={loss_mode}"
        )
    if get("npo.distill.enable", False):
        if int(get("actor_rollout_ref.model.lora_rank", 0) or 0) > 0:
            raise NPOConfigError(
                "npo.distill.enable=true with actor_rollout_ref.model.lora_rank > 0 is not supported: the teacher is "
                "swapped into the actor's full weights, and a LoRA run checkpoints its adapters"
            )
        if get("distillation.enabled", False):
            raise NPOConfigError(
                "npo.distill.enable=true and verl's distillation.enabled=true both add a distillation loss; use one"
            )
    router_mode = get("actor_rollout_ref.actor.router_replay.mode", "disabled")
    if router_mode not in (None, "disabled"):
        raise NPOConfigError(
            f"actor_rollout_ref.actor.router_replay.mode={router_mode} is not supported with guide injection "
            "(router replay has no record for guide rows)"
        )


def check_batch_layout(config: DictConfig) -> None:
    """Raise :class:`NPOConfigError` when a step's rows do not split into whole micro-batches on every rank.

    verl hands each of the ``nnodes x n_gpus_per_node`` ranks an equal share of a step's ``train_batch_size x
    rollout.n`` rows (and of each mini-batch); without dynamic batch sizes each share must be a whole number of
    micro-batches, or the log-prob pass fails deep inside the first step with "data size must be divisible by
    force_group_size * micro_batch_size_per_gpu". Checked here, before any worker starts, naming the options.
    """
    get = _getter(config)

    world = int(get("trainer.nnodes", 1)) * int(get("trainer.n_gpus_per_node", 1))
    n = int(get("actor_rollout_ref.rollout.n", 1))
    rows = int(get("data.train_batch_size")) * n
    mini = int(get("actor_rollout_ref.actor.ppo_mini_batch_size") or get("data.train_batch_size")) * n
    where = f"{world} training ranks (trainer.nnodes x trainer.n_gpus_per_node)"
    for name, count in (("a step's rows (data.train_batch_size x rollout.n)", rows),
                        ("a mini-batch's rows (actor.ppo_mini_batch_size x rollout.n)", mini)):  # fmt: skip
        if count % world:
            raise NPOConfigError(f"{name} = {count} do not split evenly over {where}")
    if get("actor_rollout_ref.actor.use_dynamic_bsz", False):
        return
    for option, count in (
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", rows // world),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", mini // world),
    ):
        micro = get(option)
        if micro and count % int(micro):
            raise NPOConfigError(
                f"{option}={micro} does not divide the {count} rows each of {where} gets; pick a divisor of {count} "
                "or set actor_rollout_ref.actor.use_dynamic_bsz=true"
            )


QWEN_VL_UTILS_MAX_TOKENS = 16_384  # qwen_vl_utils' cap on one image's visual tokens when verl loads an image


def check_image_budget(config: DictConfig, processor: Any) -> str | None:
    """Images against the prompt budget, at the processor's real patch size.

    Raises :class:`NPOConfigError` when ``data.image_patch_size`` differs from the processor's (verl would resize
    images to a grid the model does not use). Returns a warning when one image alone can take more visual tokens than
    ``data.max_prompt_length``: verl then drops (``filter_overlong_prompts``) or fails on every prompt with such an
    image, which ``python -m data_prep`` reports row by row when it converts with ``--processor``.
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return None
    patch, merge = int(image_processor.patch_size), int(getattr(image_processor, "merge_size", 1))
    get = _getter(config)
    asked = get("data.image_patch_size")
    if asked and int(asked) != patch:
        raise NPOConfigError(
            f"data.image_patch_size={asked} but the model's image processor uses patch_size={patch}: images would be "
            "resized to a grid the model does not use; remove data.image_patch_size (verl then takes the processor's)"
        )
    size = getattr(image_processor, "size", None)
    max_pixels = getattr(image_processor, "max_pixels", None) or getattr(size, "longest_edge", None)
    tokens = QWEN_VL_UTILS_MAX_TOKENS
    if max_pixels:
        tokens = min(tokens, int(max_pixels) // (patch * merge) ** 2)
    budget = int(get("data.max_prompt_length"))
    if tokens < budget:
        return None
    return (
        f"one image can take up to {tokens} visual tokens (patch {patch}, merge {merge}, max {max_pixels} pixels), "
        f"more than data.max_prompt_length={budget}: prompts with such images are dropped by verl "
        "(data.filter_overlong_prompts) or fail; cap the pixels (the NPO authors use at most 1,048,576) or convert "
        "with python -m data_prep ... --processor MODEL, which quarantines them by name"
    )
