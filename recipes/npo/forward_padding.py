"""Padding an extra actor forward's batch (top-k for V, ExGRPO's entropies) so verl 0.9.1 can split it.

Without dynamic batch sizes verl's engine needs every rank's rows to be a whole number of micro-batches, so the batch
is padded with copies of its rows. And when every sequence of a batch has the same length, verl's
``left_right_2_no_padding`` packs Qwen-VL's M-RoPE position ids ``(4, L)`` per row into a nested tensor ragged over
the 4 channels instead of the sequence, which the micro-batch split (``chunk_tensordict``) cannot undo. A generated
step batch practically never has one length; a batch of one stored response repeated has. So one padding copy is
shortened by a token; padding rows are dropped from the output.
"""

from __future__ import annotations

from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor


def pad_for_forward(batch: DataProto, divisor: int) -> DataProto:
    """``batch`` followed by copies of its rows, a multiple of ``divisor`` rows in all, not all of one length."""
    lengths = batch.batch["attention_mask"].sum(-1)
    if not bool((lengths == lengths[0]).all()):
        return pad_dataproto_to_divisor(batch, divisor)[0]
    padded, _ = pad_dataproto_to_divisor(DataProto.concat([batch, batch[:1]]), divisor)
    row = len(padded) - 1  # a copy: the padding holds at least the one row added above
    td = padded.batch
    last = int(td["attention_mask"][row].nonzero().max())
    td["attention_mask"][row, last] = 0
    response_start = td["attention_mask"].shape[1] - td["response_mask"].shape[1]
    if last >= response_start:
        td["response_mask"][row, last - response_start] = 0
    return padded
