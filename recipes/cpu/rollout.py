"""Driver-side stand-ins for verl's AgentLoopManager and weight-sync manager on a CPU-only machine.

Selected with ``actor_rollout_ref.rollout.name=hf_cpu``. Generation happens inside the actor worker
(``generate_sequences_hf``) on the current weights, so there are no rollout replicas to wake, sleep or sync.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto

from recipes.common.reward import RewardScorer

ROLLOUT_NAME = "hf_cpu"


class HFRolloutManager:
    """``generate_sequences`` like the agent loop: responses plus ``rm_scores`` and the reward's extra fields."""

    def __init__(self, actor_rollout_wg, scorer: RewardScorer) -> None:
        self.actor_rollout_wg = actor_rollout_wg
        self.scorer = scorer

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        start = time.perf_counter()
        # every actor rank generates an equal share; like the agent loop, take any batch size (RLEP generates
        # G + M - m rows per prompt) by padding with copies and dropping their output
        padded, pad_size = pad_dataproto_to_divisor(prompts, self.actor_rollout_wg.world_size)
        output = unpad_dataproto(self.actor_rollout_wg.generate_sequences_hf(padded), pad_size=pad_size)
        generated = time.perf_counter()

        responses = output.batch["responses"]
        lengths = output.batch["response_mask"].sum(-1)
        rm_scores = torch.zeros(responses.shape, dtype=torch.float32)
        extras: dict[str, list[float]] = {}
        for i in range(len(output)):
            row = {k: prompts.non_tensor_batch[k][i] for k in ("data_source", "reward_model", "extra_info")}
            length = int(lengths[i])
            result = self.scorer.score(row, responses[i, :length].tolist())
            rm_scores[i, max(length - 1, 0)] = result["score"]
            for key, value in result.items():
                extras.setdefault(key, []).append(value)
        output.batch["rm_scores"] = rm_scores
        for key, values in extras.items():
            output.non_tensor_batch[key] = np.asarray(values)
        output.meta_info = {
            "timing": {"generate_sequences": generated - start, "reward": time.perf_counter() - generated},
            "reward_extra_keys": list(extras),
        }
        return output


class NoOpWeightSync:
    """The actor *is* the rollout model on CPU: nothing to push and no replicas to put to sleep."""

    def update_weights(self, global_steps: int | None = None) -> None:
        return None

    def sleep_replicas(self) -> None:
        return None
