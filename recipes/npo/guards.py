"""Start-up checks: verl options under which NPO's injection would be silently wrong or would crash later.

Each is a clear error naming the option, raised before any worker starts. They hold for the legacy
``RayPPOTrainer.fit()`` of verl 0.9.1 (see ``shared/reference/verl-vllm-path-review.md``).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from npo_ext.config import NPOConfigError
from recipes.npo.guided_loss import LOSS_MODE as GUIDED_LOSS_MODE

# Estimators whose batch is exactly rollout.n rows per uid, normalised within the group: the gate's "group
# accuracy" and a replaced slot mean what they mean in GRPO. remax appends greedy rows that share the uid.
GROUP_ESTIMATORS = ("grpo", "grpo_vectorized", "grpo_passk", "rloo", "rloo_vectorized", "opo", "gpg")


def check_verl_run_supports_npo(config: DictConfig) -> None:
    """Raise :class:`NPOConfigError` for a verl setting NPO cannot run with."""

    def get(path: str, default=None):
        return OmegaConf.select(config, path, default=default)

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
    router_mode = get("actor_rollout_ref.actor.router_replay.mode", "disabled")
    if router_mode not in (None, "disabled"):
        raise NPOConfigError(
            f"actor_rollout_ref.actor.router_replay.mode={router_mode} is not supported with guide injection "
            "(router replay has no record for guide rows)"
        )
