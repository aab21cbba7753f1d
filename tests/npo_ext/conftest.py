"""Hand-built rollout outputs shared by the injection tests."""

import numpy as np
import pytest
import torch
from verl import DataProto

EOS, PAD = 2, 0


def build_rollout(groups, accs, width=6, non_tensors=None) -> DataProto:
    """A rollout output like verl's agent loop returns, one row per entry of ``groups`` (the row's group number):
    prompt [PAD, 10 + group, 11], response [20, EOS] right-padded to ``width``, its ``acc`` as the reward."""
    bs = len(groups)
    prompts = torch.stack([torch.full((bs,), PAD), 10 + torch.as_tensor(groups), torch.full((bs,), 11)], dim=1)
    responses = torch.tensor([[20, EOS] + [PAD] * (width - 2)] * bs)
    response_mask = (torch.arange(width) < 2).long().expand(bs, width).clone()
    attention_mask = torch.cat([(prompts != PAD).long(), response_mask], dim=1)
    rm_scores = torch.zeros(bs, width)
    rm_scores[:, 1] = torch.tensor(accs, dtype=torch.float)
    batch = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "position_ids": torch.clamp(torch.cumsum(attention_mask, 1) - 1, min=0),
            "rm_scores": rm_scores,
        },
        non_tensors={
            "uid": np.array([f"u{g}" for g in groups], dtype=object),
            "acc": np.array(accs, dtype=float),
            "score": np.array(accs, dtype=float),
            **(non_tensors or {}),
        },
    )
    batch.meta_info["reward_extra_keys"] = ["acc", "score"]
    return batch


@pytest.fixture
def rollout_batch():
    """``rollout_batch(groups, accs, width=6, non_tensors=None)``: see :func:`build_rollout`."""
    return build_rollout
