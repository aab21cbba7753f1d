"""State a rank keeps in host memory: a fork snapshot, so a rollback is a memory copy instead of a checkpoint read,
and a distillation teacher's weights, swapped into the actor for one forward.

For the snapshot, each rank copies what verl's own checkpoint load would restore for it: its shard of the weights,
its shard of the optimizer state and the optimizer's hyper-parameters (the learning rate the scheduler last set among
them), the LR scheduler's state and the RNG states. Restoring copies the values back into the live tensors in place,
so parameter and optimizer offloading (whichever device a tensor sits on) is left as the engine arranged it. The disk
snapshot is still written: a process that dies loses this copy, and a resumed run rolls back from the disk copy.

Near-future distillation (``npo.distill``) scores the student's rollouts with θ_{T+Δ}. A second model beside the
actor would need its own FSDP wrapping (a collective step at start-up) and device memory for the whole run; swapping
the teacher's shard into the actor instead reuses verl's own log-prob forward (micro-batching, sequence packing, the
vision tower) and costs two in-place copies of each rank's weight shard per step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.distributed.tensor import DTensor


def local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """The rank's own storage of a (possibly FSDP2-sharded) tensor."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _host_copy(value: Any) -> Any:
    return local_shard(value).detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else copy.deepcopy(value)


class HeldWeights:
    """One rank's shard of a model's weights, copied out of ``module`` under ``key`` (the checkpoint it came from)."""

    def __init__(self, key: str, module: torch.nn.Module, device: str = "cpu") -> None:
        self.key = key
        with torch.no_grad():
            self._weights = [local_shard(p).detach().to(device, copy=True) for p in module.parameters()]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._weights)

    def copy_into(self, module: torch.nn.Module) -> None:
        parameters = list(module.parameters())
        if len(parameters) != len(self._weights):
            raise RuntimeError(
                f"host-memory copy {self.key} holds {len(self._weights)} weights, the model has {len(parameters)}"
            )
        with torch.no_grad():
            for param, held in zip(parameters, self._weights, strict=True):
                local_shard(param).copy_(held)

    @contextmanager
    def swapped_in(self, module: torch.nn.Module) -> Iterator[None]:
        """``module`` computes with these weights inside the block and has its own back after it."""
        with weights_kept(module):
            self.copy_into(module)
            yield


@contextmanager
def weights_kept(module: torch.nn.Module) -> Iterator[None]:
    """Whatever the block loads into ``module``, it has its own weights back, bit for bit, after it (an exception
    included). They wait on their device meanwhile."""
    own = HeldWeights("own", module, device=str(next(module.parameters()).device))
    try:
        yield
    finally:
        own.copy_into(module)


class HostMemorySnapshot:
    """One rank's training state at a fork step, held in CPU memory under the key of its disk copy."""

    def __init__(self, key: str, module: torch.nn.Module, optimizer: Any, lr_scheduler: Any, rng: dict) -> None:
        self.key = key
        self._weights = HeldWeights(key, module)
        with torch.no_grad():
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self._optimizer_state = [
                {name: _host_copy(value) for name, value in optimizer.state[p].items()}
                if p in optimizer.state
                else None
                for p in params
            ]
        self._param_groups = [
            {k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups
        ]
        self._lr_scheduler = copy.deepcopy(lr_scheduler.state_dict()) if lr_scheduler is not None else None
        self._rng = copy.deepcopy(rng)

    @property
    def nbytes(self) -> int:
        """Host memory this snapshot holds (tensors only)."""
        tensors = [v for state in self._optimizer_state if state for v in state.values() if isinstance(v, torch.Tensor)]
        return self._weights.nbytes + sum(t.numel() * t.element_size() for t in tensors)

    def restore_weights(self, module: torch.nn.Module, load_rng: Callable[[dict], None]) -> None:
        """The weights and RNG alone (to sample from or score with), as verl's ``load_contents: [model, extra]``."""
        self._weights.copy_into(module)
        load_rng(copy.deepcopy(self._rng))

    def restore(self, module: torch.nn.Module, optimizer: Any, lr_scheduler: Any, load_rng: Callable[[dict], None]):
        """The whole training state: weights, optimizer state and hyper-parameters, scheduler, RNG."""
        self.restore_weights(module, load_rng)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        with torch.no_grad():
            for param, saved in zip(params, self._optimizer_state, strict=True):
                if saved is None:  # no state yet at the fork step (the optimizer creates it at its first step)
                    optimizer.state.pop(param, None)
                    continue
                live = optimizer.state[param]
                for name, value in saved.items():
                    current = live.get(name)
                    if isinstance(value, torch.Tensor):
                        if not isinstance(current, torch.Tensor):
                            raise RuntimeError(f"host-memory snapshot {self.key}: optimizer state {name!r} is gone")
                        local_shard(current).copy_(value)
                    else:
                        live[name] = copy.deepcopy(value)
        for group, saved in zip(optimizer.param_groups, self._param_groups, strict=True):
            group.update(copy.deepcopy(saved))
        if lr_scheduler is not None and self._lr_scheduler is not None:
            lr_scheduler.load_state_dict(copy.deepcopy(self._lr_scheduler))
