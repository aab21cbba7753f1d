"""Rewinding the data stream under a live iteration replays exactly the same batches (verl's sampler)."""

import torch
from omegaconf import OmegaConf
from torchdata.stateful_dataloader import StatefulDataLoader
from verl.trainer.ppo.utils import create_rl_sampler

from recipes.npo.replay_loader import ReplayableDataLoader


def make_loader(seed=1):
    data = list(range(24))
    sampler = create_rl_sampler(OmegaConf.create({"shuffle": True, "seed": seed}), data)
    return StatefulDataLoader(data, batch_size=3, sampler=sampler, num_workers=0)


def test_rewind_replays_the_same_batches_and_then_continues():
    saved, seen = {}, []

    def on_boundary(state):
        on_boundary.calls += 1
        if on_boundary.calls == 3:
            saved["fork"] = state  # before the 3rd batch
        if on_boundary.calls == 6:
            loader.load_state_dict(saved["fork"])  # rollback: the 3rd batch comes next again

    on_boundary.calls = 0
    loader = ReplayableDataLoader(make_loader(), on_boundary)
    seen = [b.tolist() for b in loader]
    reference = [b.tolist() for b in make_loader()]
    assert seen[:5] == reference[:5]
    assert seen[5:8] == reference[2:5], "the look-ahead batches are replayed"
    assert seen[5:] == reference[2:], "then the epoch continues to its end"
    assert len(loader) == 8


def test_peek_reads_ahead_without_the_hook_and_restores_on_load():
    calls = []
    loader = ReplayableDataLoader(make_loader(), lambda state: calls.append(state))
    iterator = iter(loader)
    first = next(iterator)
    state = calls[-1]
    peeked = [b.tolist() for b in loader.peek(state, 3)]
    assert peeked[0] == first.tolist()
    assert len(calls) == 1
    loader.load_state_dict(state)
    assert torch.equal(next(iterator), first), "a live iteration resumes from the loaded position"
