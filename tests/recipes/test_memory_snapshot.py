"""A fork snapshot held in host memory restores exactly what verl's checkpoint load would: weights, optimizer state
and hyper-parameters, LR scheduler, RNG. (The FSDP2 case, DTensor shards included, is checked end to end by the CPU
NPO run, whose rollback comes from host memory and is compared with the snapshot's files.)"""

import copy
import random

import numpy as np
import pytest
import torch
from verl.utils.checkpoint.checkpoint_manager import BaseCheckpointManager

from recipes.npo.memory_snapshot import HostMemorySnapshot

get_rng, load_rng = BaseCheckpointManager.get_rng_state, BaseCheckpointManager.load_rng_state


def make_training(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, steps):
    """Steps whose data come from the RNG, so a restored RNG repeats them."""
    for _ in range(steps):
        x = torch.randn(16, 4)
        loss = (model(x) - x.sum(-1, keepdim=True) * np.random.rand()).pow(2).mean() + random.random()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def snapshot_of(model, optimizer, scheduler):
    return HostMemorySnapshot("fork_3/snapshot/actor", model, optimizer, scheduler, get_rng())


@pytest.mark.parametrize("steps_before", [0, 3], ids=["before-the-first-step", "after-three-steps"])
def test_training_after_a_restore_repeats_training_after_the_snapshot(steps_before):
    model, optimizer, scheduler = make_training()
    train(model, optimizer, scheduler, steps_before)
    snapshot = snapshot_of(model, optimizer, scheduler)
    reference = copy.deepcopy((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()))

    train(model, optimizer, scheduler, 4)  # the look-ahead
    expected = [p.detach().clone() for p in model.parameters()]
    snapshot.restore(model, optimizer, scheduler, load_rng)

    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[0][name]), name
    assert optimizer.param_groups[0]["lr"] == reference[1]["param_groups"][0]["lr"]
    restored = optimizer.state_dict()["state"]
    assert restored.keys() == reference[1]["state"].keys(), "no state the snapshot lacked (none before a first step)"
    for index, values in reference[1]["state"].items():
        assert all(torch.equal(restored[index][k], v) for k, v in values.items()), index
    assert scheduler.state_dict() == reference[2]
    train(model, optimizer, scheduler, 4)
    assert all(torch.equal(p, e) for p, e in zip(model.parameters(), expected, strict=True)), "the same 4 steps again"


def test_restoring_weights_alone_leaves_the_optimizer_as_it_is():
    model, optimizer, scheduler = make_training()
    train(model, optimizer, scheduler, 2)
    snapshot = snapshot_of(model, optimizer, scheduler)
    weights = [p.detach().clone() for p in model.parameters()]
    draw = torch.rand(3)
    train(model, optimizer, scheduler, 2)
    moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]

    snapshot.restore_weights(model, load_rng)

    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))
    assert all(torch.equal(optimizer.state[p]["exp_avg"], m) for p, m in zip(model.parameters(), moments, strict=True))
    assert scheduler.last_epoch == 4
    assert torch.equal(torch.rand(3), draw), "the RNG as at the snapshot"


def test_the_snapshot_is_a_copy_and_reports_its_size():
    model, optimizer, scheduler = make_training()
    train(model, optimizer, scheduler, 1)
    snapshot = snapshot_of(model, optimizer, scheduler)
    params = sum(p.numel() for p in model.parameters())
    # fp32 weights and AdamW's two moments, plus one step counter per parameter tensor
    assert snapshot.nbytes == 3 * 4 * params + 4 * len(list(model.parameters()))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    snapshot.restore_weights(model, load_rng)
    assert not torch.equal(next(model.parameters()), next(model.parameters()) + 1.0)


def test_a_model_of_another_shape_is_refused():
    model, optimizer, scheduler = make_training()
    snapshot = snapshot_of(model, optimizer, scheduler)
    with pytest.raises(RuntimeError, match="holds 4 weights, the model has 2"):
        snapshot.restore_weights(torch.nn.Linear(2, 2), load_rng)
