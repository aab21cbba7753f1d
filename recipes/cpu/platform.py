"""A CPU platform for verl 0.9.1, registered through verl's platform registry.

Loaded by verl's external-modules mechanism and selected explicitly::

    VERL_USE_EXTERNAL_MODULES=recipes.cpu.platform VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda

verl has no CPU platform: without one it falls back to ``nvidia`` (NCCL, CUDA device calls). This platform answers
device queries with ``"cpu"``, uses gloo, and advertises a *logical* Ray ``GPU`` slot because verl's resource check
only counts GPU/NPU (start Ray with ``num_gpus=1``). ``VERL_ENGINE_DEVICE=cuda`` makes verl reuse its FSDP engine
class, which is registered for cuda/npu only; with this platform it runs on CPU tensors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

logger = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"
_MEMORY_PREFIXES = ("memory_", "max_memory", "reset_", "empty_cache", "ipc_collect")


class _CPUDeviceModule(types.ModuleType):
    """``torch.cpu`` plus answers for the CUDA-style calls verl makes on ``get_torch_device()``.

    Memory statistics are 0 (there is no device memory to report); anything else unknown is a logged no-op rather
    than an AttributeError, because verl calls e.g. ``set_rng_state`` on the device module during checkpoint load.
    """

    def __init__(self) -> None:
        super().__init__("verl_cpu_device")

    def __getattr__(self, name: str) -> Any:
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        if name == "mem_get_info":
            return lambda *args, **kwargs: (0, 0)
        if name.startswith(_MEMORY_PREFIXES):
            return lambda *args, **kwargs: 0
        if name in ("get_device_name", "current_device"):
            return lambda *args, **kwargs: PLATFORM_NAME
        if name.startswith("__"):
            raise AttributeError(name)

        def _no_op(*args: Any, **kwargs: Any) -> None:
            logger.debug("cpu platform: ignoring device call %s", name)

        return _no_op


_DEVICE_MODULE = _CPUDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl platform backed by the host CPU (gloo collectives, no device memory)."""

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return PLATFORM_NAME

    @property
    def device_module(self) -> types.ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never win auto-detection: the CPU platform is only used when VERL_PLATFORM=cpu asks for it.
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME

    def current_device(self) -> str:  # verl passes this to .to(device=...)
        return PLATFORM_NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "VERL_CPU_VISIBLE_DEVICES"

    def ray_resource_name(self) -> str:
        return "GPU"  # a logical slot: Ray is started with num_gpus=1 on CPU

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None

    def nvtx_range(self, msg: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None


def _gloo_process_group() -> None:
    """verl builds the backend string ``cpu:gloo,<device>:<backend>``, which duplicates ``cpu`` on this platform."""
    import verl.utils.distributed as distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_npo_cpu_patched", False):
        return

    def initialize_with_gloo(*args: Any, **kwargs: Any) -> Any:
        kwargs["backend"] = "gloo"
        return original(*args, **kwargs)

    initialize_with_gloo._npo_cpu_patched = True  # type: ignore[attr-defined]
    distributed.initialize_global_process_group_ray = initialize_with_gloo


def _keep_vllm_linear_weights() -> None:
    """Keep vLLM's linear weights in place, so verl's weight sync has tensors to load into.

    Where the CPU has vLLM's oneDNN kernels (AVX-512 builds), vLLM packs each linear weight into a oneDNN handle after
    loading and frees the original tensor. verl pushes new weights with ``model.load_weights``, which then fails
    ("Attempted to load weight ... into parameter (torch.Size([0]))"). With oneDNN off, vLLM's CPU linear layers run
    ``torch.nn.functional.linear`` on the live weights. This runs inside vLLM's worker processes, which import verl
    (and so this plugin) for the worker extension before they load the model.
    """
    if "vllm" not in sys.modules:
        return
    import vllm._custom_ops as vllm_ops

    vllm_ops._supports_onednn = False


if os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME:
    _gloo_process_group()
    _keep_vllm_linear_weights()
