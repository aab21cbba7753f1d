"""Rewinding the data stream under a live iteration replays exactly the same batches (verl's sampler)."""

import pytest
import torch
from omegaconf import OmegaConf
from torchdata.stateful_dataloader import StatefulDataLoader
from verl.trainer.ppo.utils import create_rl_sampler

from recipes.npo.replay_loader import ReplayableDataLoader


def make_loader(seed=1, size=24, num_workers=0):
    data = list(range(size))
    sampler = create_rl_sampler(OmegaConf.create({"shuffle": True, "seed": seed}), data)
    return StatefulDataLoader(data, batch_size=3, sampler=sampler, num_workers=num_workers)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_rewind_replays_the_same_batches_and_then_continues(num_workers):
    """As an intervention does it: snapshot at a boundary, later peek the window from there and roll back."""
    saved, calls = {}, []

    def on_boundary(state, epoch_end):
        calls.append(epoch_end)
        if len(calls) == 3:
            saved["fork"] = state  # before the 3rd batch
        if len(calls) == 6:
            saved["peek"] = [b.tolist() for b in loader.peek(saved["fork"], 3)]  # guide collection
            loader.load_state_dict(saved["fork"])  # rollback: the 3rd batch comes next again

    loader = ReplayableDataLoader(make_loader(num_workers=num_workers), on_boundary)
    seen = [b.tolist() for b in loader]
    reference = [b.tolist() for b in make_loader(num_workers=num_workers)]
    assert seen[:5] == reference[:5]
    assert saved["peek"] == reference[2:5], "guides are collected for the batches the look-ahead saw"
    assert seen[5:8] == reference[2:5], "the look-ahead batches are replayed"
    assert seen[5:] == reference[2:], "then the epoch continues to its end"
    assert calls == [False] * 11 + [True], "one more boundary when the epoch runs out"
    assert len(loader) == 8


def test_a_rewind_at_the_end_of_an_epoch_replays_inside_that_epoch():
    """A look-ahead over the last batches of an epoch ends at the epoch-end boundary and must still roll back."""
    fork_state = {}

    def on_boundary(state, epoch_end):
        if not fork_state:
            fork_state["start"] = state
        elif epoch_end and not fork_state.get("rewound"):
            fork_state["rewound"] = True
            loader.load_state_dict(fork_state["start"])

    loader = ReplayableDataLoader(make_loader(size=6), on_boundary)  # 2 batches per epoch
    epochs = [[b.tolist() for b in loader] for _ in range(3)]
    reference = [b.tolist() for b in make_loader(size=6)]
    assert epochs[0] == reference + reference, "the look-ahead's epoch is replayed before the next one starts"
    assert [len(e) for e in epochs] == [4, 2, 2], "no epoch is lost"


def test_peek_reads_ahead_without_the_hook_and_restores_on_load():
    calls = []
    loader = ReplayableDataLoader(make_loader(), lambda state, epoch_end: calls.append(state))
    iterator = iter(loader)
    first = next(iterator)
    state = calls[-1]
    peeked = [b.tolist() for b in loader.peek(state, 3)]
    assert peeked[0] == first.tolist()
    assert len(calls) == 1
    loader.load_state_dict(state)
    assert torch.equal(next(iterator), first), "a live iteration resumes from the loaded position"
