"""The in-worker rollout manager takes any batch size, as verl's agent loop does, although every actor rank must
generate an equal share (RLEP generates G + M - m rows per prompt)."""

import numpy as np
import torch
from verl import DataProto

from recipes.cpu.rollout import HFRolloutManager


class TwoRanks:
    """A worker group of two ranks: like verl's DP dispatch, it refuses a batch it cannot split evenly."""

    world_size = 2

    def __init__(self):
        self.sizes = []

    def generate_sequences_hf(self, prompts: DataProto) -> DataProto:
        assert len(prompts) % self.world_size == 0, f"only support equal chunk. Got size {len(prompts)}"
        self.sizes.append(len(prompts))
        ids = torch.as_tensor(prompts.non_tensor_batch["row"].astype(np.int64)).unsqueeze(-1)  # response = row id
        return DataProto.from_dict(tensors={"responses": ids, "response_mask": torch.ones_like(ids)})


class EchoScorer:
    def score(self, row, response_ids):
        return {"score": float(response_ids[0]), "acc": 1.0}


def prompts(count: int) -> DataProto:
    return DataProto.from_dict(
        non_tensors={
            "row": np.arange(count, dtype=object),
            "data_source": np.array(["demo"] * count, dtype=object),
            "reward_model": np.array([{}] * count, dtype=object),
            "extra_info": np.array([{}] * count, dtype=object),
        }
    )


def test_an_odd_batch_is_padded_for_the_ranks_and_comes_back_whole_and_in_order():
    group = TwoRanks()
    output = HFRolloutManager(group, EchoScorer()).generate_sequences(prompts(21))
    assert group.sizes == [22]
    assert output.batch["responses"][:, 0].tolist() == list(range(21))
    assert output.batch["rm_scores"].sum(-1).tolist() == [float(i) for i in range(21)]
    assert output.non_tensor_batch["acc"].tolist() == [1.0] * 21
