"""Score responses in the driver with the run's configured reward function.

verl's agent loop scores rollouts in reward workers. Two places need the same function outside that loop: the CPU
rollout (which has no agent loop) and NPO's guide injection (a guide slot's reward is recomputed). Both use this
class, so the guide row is scored exactly like an on-policy row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig


class RewardScorer:
    """``score(row_non_tensors, response_ids) -> {"score": float, <extra keys>...}``, like verl's naive manager."""

    def __init__(self, config: DictConfig, tokenizer) -> None:
        from verl.trainer.ppo.reward import get_custom_reward_fn
        from verl.utils.reward_score import default_compute_score

        custom = get_custom_reward_fn(config)
        if custom is not None and inspect.iscoroutinefunction(getattr(custom, "func", custom)):
            raise NotImplementedError("driver-side scoring needs a synchronous reward function")
        self._compute_score: Callable[..., Any] = custom or default_compute_score
        self._tokenizer = tokenizer

    def score(self, row: dict[str, Any], response_ids: Sequence[int]) -> dict[str, float]:
        text = self._tokenizer.decode(list(response_ids), skip_special_tokens=True)
        result = self._compute_score(
            data_source=row["data_source"],
            solution_str=text,
            ground_truth=row["reward_model"]["ground_truth"],
            extra_info=row.get("extra_info") or {},
        )
        if isinstance(result, dict):
            return {key: float(value) for key, value in result.items()}
        return {"score": float(result), "acc": float(result)}
