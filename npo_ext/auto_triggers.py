"""AutoNPO's trigger: *when* to intervene, from the training reward and the policy's token entropy.

The paper states only that AutoNPO "monitors reward stagnation and entropy collapse"; the windows, thresholds,
cooldown and cap below are this project's choices (README, "AutoNPO"), each an ``npo.auto.*`` option:

* **bootstrap**: intervene at step 0, before any update (the paper's early-stage case).
* **reward stagnation**: the least-squares slope of the mean training reward over the last ``window`` steps is
  below ``reward_slope_min`` (per step).
* **entropy collapse**: the mean token entropy over the last ``window`` steps is below ``entropy_floor``, or fell by
  more than ``entropy_drop`` (a fraction) against the ``window`` steps before.
* a **cooldown** of ``cooldown`` steps after a guided window ends, a **cap** of ``max_interventions``, and a
  mistake pool of at least ``min_pool`` prompts (the probe set needs failed prompts to measure Q on).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from npo_ext.config import AutoConfig


@dataclass(frozen=True)
class Trigger:
    """A decision to intervene now, and the signal that caused it."""

    reason: str
    value: float


def slope(values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against their index (units per step)."""
    x = np.arange(len(values), dtype=np.float64)
    x -= x.mean()
    return float((x * (values - values.mean())).sum() / (x * x).sum())


class TriggerMonitor:
    """Keeps the last ``2 * window`` steps of reward and entropy and decides at each step boundary."""

    def __init__(self, config: AutoConfig) -> None:
        self.config = config
        self.rewards: deque[float] = deque(maxlen=2 * config.window)
        self.entropies: deque[float] = deque(maxlen=2 * config.window)

    def observe(self, reward: float, entropy: float) -> None:
        """Record one completed (kept) training step."""
        self.rewards.append(float(reward))
        self.entropies.append(float(entropy))

    def reset_windows(self) -> None:
        """Forget the windows: after a rollback and a guided window, earlier steps describe another trajectory."""
        self.rewards.clear()
        self.entropies.clear()

    def signals(self) -> dict[str, float]:
        """The current reward slope and entropy level/drop (absent until a full window is seen), for logging."""
        w = self.config.window
        out: dict[str, float] = {}
        if len(self.rewards) >= w:
            out["reward_slope"] = slope(np.asarray(list(self.rewards)[-w:]))
        if len(self.entropies) >= w:
            recent = float(np.mean(list(self.entropies)[-w:]))
            out["entropy"] = recent
            if len(self.entropies) >= 2 * w:
                reference = float(np.mean(list(self.entropies)[:w]))
                out["entropy_drop"] = 1.0 - recent / reference if reference > 0 else 0.0
        return out

    def decide(
        self, completed: int, interventions_done: int, steps_since_window: int | None, pool_size: int
    ) -> Trigger | None:
        """Whether to fork at this boundary. ``steps_since_window`` is None when no intervention ran yet."""
        cfg = self.config
        if interventions_done >= cfg.max_interventions:
            return None
        if completed == 0 and cfg.bootstrap and interventions_done == 0:
            return Trigger("bootstrap", 0.0)
        if steps_since_window is not None and steps_since_window < cfg.cooldown:
            return None
        if pool_size < cfg.min_pool:
            return None
        signals = self.signals()
        if "entropy" in signals and signals["entropy"] < cfg.entropy_floor:
            return Trigger("entropy_floor", signals["entropy"])
        if signals.get("entropy_drop", 0.0) > cfg.entropy_drop:
            return Trigger("entropy_drop", signals["entropy_drop"])
        if "reward_slope" in signals and signals["reward_slope"] < cfg.reward_slope_min:
            return Trigger("reward_stagnation", signals["reward_slope"])
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": list(self.rewards), "entropies": list(self.entropies)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset_windows()
        self.rewards.extend(float(r) for r in state.get("rewards", []))
        self.entropies.extend(float(e) for e in state.get("entropies", []))
