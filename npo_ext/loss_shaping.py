"""Per-token policy losses for guide tokens: none (NPO, RLEP), LUFFY's and ExGRPO's shaped importance weight.

On on-policy tokens every method keeps the backbone's clipped PPO loss. On off-policy (guide) tokens:

* ``none``: the same clipped loss as on-policy tokens, with π_old recomputed by the current actor (NPO, RLEP);
* ``policy_prob``: loss = −A · f(π_θ(y_t)), f(w) = w / (w + γ), γ = 0.1: the teacher's probability is taken as 1, so the
  weight is the current policy's own probability, regularised so that low-probability tokens still get gradient;
  no clipping (LUFFY, ``off_policy_reshape="p_div_p_0.1"``, ``off_max_clip=None``);
* ``behaviour_ratio``: the same f on w = π_θ / π_behaviour, the recorded log-probs of the past policy that wrote
  the replayed response (ExGRPO, ``exp_is_correct=True``); no clipping.

These functions return per-token losses; aggregation (token-mean etc.) stays the backbone's.
"""

from __future__ import annotations

import torch

SHAPING_MODES = ("none", "policy_prob", "behaviour_ratio")
DEFAULT_GAMMA = 0.1


def shaped_weight(log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """f(w) = w / (w + γ) with w = π_θ / π_behaviour; π_behaviour = 1 when ``behaviour_log_prob`` is None (LUFFY)."""
    log_w = log_prob if behaviour_log_prob is None else log_prob - behaviour_log_prob
    w = torch.exp(log_w)
    return w / (w + gamma)


def clipped_pg_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> torch.Tensor:
    """The PPO clipped surrogate per token, −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A), with the dual clip −c·A as a
    floor for negative advantages when ``dual_clip`` is given (the log-ratio is clamped to ±20 first)."""
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, -20.0, 20.0))
    loss = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    return loss


def guided_policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    off_policy: torch.Tensor,
    mode: str,
    *,
    behaviour_log_prob: torch.Tensor | None = None,
    gamma: float = DEFAULT_GAMMA,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> torch.Tensor:
    """Per-token loss: clipped PPO on on-policy tokens; on ``off_policy`` tokens (bool mask) what ``mode`` says."""
    if mode not in SHAPING_MODES:
        raise ValueError(f"unknown loss shaping {mode!r}; expected one of {SHAPING_MODES}")
    on = clipped_pg_loss(log_prob, old_log_prob, advantages, clip_low, clip_high, dual_clip)
    if mode == "none":
        return on
    if mode == "behaviour_ratio" and behaviour_log_prob is None:
        raise ValueError("exgrpo shaping needs the behaviour log-probs recorded with the replayed responses")
    off = -advantages * shaped_weight(log_prob, behaviour_log_prob if mode == "behaviour_ratio" else None, gamma)
    return torch.where(off_policy.bool(), off, on)
