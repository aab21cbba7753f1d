"""The distillation teacher's weights, swapped into the actor for one forward: the forward is the teacher's, and the
actor has its own weights back bit for bit afterwards, also when the forward fails."""

import pytest
import torch

from recipes.npo.memory_snapshot import HeldWeights


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def test_inside_the_block_the_actor_computes_as_the_teacher_and_after_it_as_itself():
    actor, teacher = model(0), model(1)
    own = [p.detach().clone() for p in actor.parameters()]
    held = HeldWeights("fork_000002/teacher/actor", teacher)
    x = torch.randn(5, 4)
    with held.swapped_in(actor):
        inside = actor(x)
    assert torch.equal(inside, teacher(x))
    assert not torch.allclose(inside, actor(x))
    assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), own, strict=True))
    assert held.nbytes == sum(p.numel() * 4 for p in teacher.parameters())


def test_a_failing_forward_still_gives_the_actor_its_weights_back():
    actor, held = model(0), HeldWeights("teacher", model(1))
    own = [p.detach().clone() for p in actor.parameters()]
    with pytest.raises(ValueError), held.swapped_in(actor):
        raise ValueError("the forward failed")
    assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), own, strict=True))


def test_weights_of_another_model_are_refused():
    with pytest.raises(RuntimeError, match="holds 2 weights, the model has 4"):
        HeldWeights("teacher", torch.nn.Linear(4, 3)).copy_into(model(0))
