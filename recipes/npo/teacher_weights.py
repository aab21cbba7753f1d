"""A distillation teacher's weights held in host memory and swapped into the actor for one forward pass.

Near-future distillation (``npo.distill``) scores the student's rollouts with θ_{T+Δ}. A second model beside the
actor would need its own FSDP wrapping (a collective step at start-up) and device memory for the whole run; swapping
the teacher's shard into the actor instead reuses verl's own log-prob forward (micro-batching, sequence packing, the
vision tower) and costs two in-place copies of each rank's weight shard per step. Copies are in place, so parameter
offloading stays as the engine arranged it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from recipes.npo.memory_snapshot import local_shard


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
                f"held weights {self.key} have {len(self._weights)} tensors, the model {len(parameters)}"
            )
        with torch.no_grad():
            for param, held in zip(parameters, self._weights, strict=True):
                local_shard(param).copy_(held)

    @contextmanager
    def swapped_in(self, module: torch.nn.Module) -> Iterator[None]:
        """``module`` computes with these weights inside the block and has its own back, bit for bit, after it
        (an exception included). Its own weights wait on their device meanwhile."""
        own = HeldWeights("own", module, device=str(next(module.parameters()).device))
        self.copy_into(module)
        try:
            yield
        finally:
            own.copy_into(module)
