"""AutoNPO's mistake pool keeps a failed prompt's position in the training data, not its row and images; probing
reads the row again and refuses data that no longer matches."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset
from verl import DataProto
from verl.utils.dataset.rl_dataset import collate_fn

from npo_ext.config import NPOConfig
from npo_ext.persist import NPOStateError
from recipes.common.positioned_dataset import PositionedDataset
from recipes.npo.npo_ray_trainer import RayNPOTrainer

N = 2


class Prompts(Dataset):
    """Rows as verl's RLHFDataset returns them, each with an 'image' of 64 KB."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def __len__(self):
        return 6

    def __getitem__(self, i):
        index = i + self.offset
        return {
            "data_source": "d",
            "index": index,
            "raw_prompt": [{"role": "user", "content": f"question {index}"}],
            "multi_modal_data": {"image": [bytes(64 * 1024)]},
            "reward_model": {"ground_truth": str(index)},
            "extra_info": {"index": index},
            "input_ids": torch.tensor([index]),
        }


def make_trainer(dataset):
    trainer = RayNPOTrainer.__new__(RayNPOTrainer)
    trainer.config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"n": N}}})
    trainer.npo = NPOConfig(enable=False)
    trainer.train_dataset = PositionedDataset(dataset)
    trainer.train_dataloader = SimpleNamespace(collate_fn=collate_fn)
    return trainer


def generated(trainer, positions, accuracies):
    """A step's generation input (the gen batch, n rows per prompt) and its per-row accuracy."""
    batch = DataProto.from_single_dict(collate_fn([trainer.train_dataset[p] for p in positions]))
    prompts = trainer.gen_batch_of(batch).repeat(N, interleave=True)
    output = DataProto.from_dict(non_tensors={"acc": np.repeat(np.array(accuracies, dtype=float), N)})
    return prompts, output


def test_the_pool_keeps_positions_and_probing_reads_the_rows_again():
    trainer = make_trainer(Prompts())
    prompts, output = generated(trainer, [4, 1], [0.0, 1.0])
    observed = trainer._group_accuracies(prompts, output)
    assert observed == [("d/4", 0.0, 4), ("d/1", 1.0, 1)]
    again = trainer.gen_batch_at([4], ["d/4"])
    first_row = {k: v[0] for k, v in prompts.non_tensor_batch.items()}
    assert {k: v[0] for k, v in again.non_tensor_batch.items()} == first_row, "the same generation input"
    row_payload = {k: v for k, v in first_row.items() if k != "uid"}  # what the pool used to keep per prompt
    assert len(pickle.dumps(4)) * 1000 < len(pickle.dumps(row_payload))


def test_probing_data_that_changed_since_the_pool_was_saved_is_an_error():
    trainer = make_trainer(Prompts(offset=100))
    with pytest.raises(NPOStateError, match="same data files"):
        trainer.gen_batch_at([4], ["d/4"])
