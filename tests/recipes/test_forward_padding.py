"""Padding an extra forward's batch: whole micro-batches, and never one sequence length for verl to mis-pack."""

import torch
from verl import DataProto
from verl.workers.utils.padding import left_right_2_no_padding

from recipes.npo.forward_padding import pad_for_forward


def batch(lengths, width=6, response_width=3):
    attention = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
    return DataProto.from_dict(
        tensors={
            "input_ids": torch.arange(width).repeat(len(lengths), 1),
            "attention_mask": attention,
            "response_mask": attention[:, -response_width:].clone(),
            "position_ids": torch.arange(width).repeat(len(lengths), 4, 1),  # Qwen-VL's M-RoPE layout
        }
    )


def ragged_dim_of_positions(data: DataProto) -> int:
    return left_right_2_no_padding(data.to_tensordict())["position_ids"]._ragged_idx


def test_one_length_everywhere_is_broken_up_by_a_shortened_padding_copy():
    original = batch([5, 5, 5])
    assert ragged_dim_of_positions(original) == 1, "verl packs equal-length rows ragged over the 4 rope channels"
    padded = pad_for_forward(original, 4)
    assert padded.batch["attention_mask"].sum(-1).tolist() == [5, 5, 5, 4]
    assert padded.batch["response_mask"][-1].tolist() == [1, 1, 0]
    assert original.batch["attention_mask"].sum(-1).tolist() == [5, 5, 5], "the caller's rows are untouched"
    assert ragged_dim_of_positions(padded) == 2, "ragged over the sequence, as for any generated batch"
    whole = pad_for_forward(batch([5, 5]), 2)
    assert whole.batch["attention_mask"].sum(-1).tolist() == [5, 5, 5, 4], "no room: one more micro-batch"


def test_mixed_lengths_are_padded_with_plain_copies():
    padded = pad_for_forward(batch([5, 4, 6]), 4)
    assert padded.batch["attention_mask"].sum(-1).tolist() == [5, 4, 6, 5]
    assert len(pad_for_forward(batch([5, 4]), 2)) == 2
