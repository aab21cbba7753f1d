"""Generation with vLLM for `verifiers.evaluate` and `data_prep filter`: engine options, and data parallelism over
the GPUs of a node.

vLLM's defaults suit a server that owns a GPU, not an evaluation that shares a machine: it reserves 92% of GPU memory
(on the CPU backend, of host memory, where it fails at start-up whenever anything else runs) and takes the model's
full context length. :class:`VLLMOptions` exposes what a user tunes (memory, tensor parallel size, context length,
concurrency, dtype) with defaults that start on a GPU node and on the CPU test machine. With more than one
tensor-parallel group of GPUs, :class:`DataParallelGenerator` runs one engine per group in its own process and splits
each batch between them, so an 8B model evaluates on all GPUs of a node. vLLM is imported only inside the engine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.chat import pil_image, structured_messages

CPU_KV_CACHE_GIB = 1.0  # the KV cache on the CPU backend when neither --kv-cache-gib nor VLLM_CPU_KVCACHE_SPACE says


@dataclass(frozen=True)
class VLLMOptions:
    """Engine settings; ``None`` leaves vLLM's own choice (dtype ``auto``: bf16 for an fp32 checkpoint on CPU)."""

    gpu_memory_utilization: float = 0.85
    kv_cache_gib: float | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int | None = None  # None: every visible GPU, in groups of tensor_parallel_size
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False

    def engine_kwargs(self, on_gpu: bool) -> dict[str, Any]:
        """Keyword arguments of ``vllm.LLM`` (besides the model)."""
        kwargs: dict[str, Any] = {
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "enforce_eager": self.enforce_eager,
        }
        kv_cache_gib = self.kv_cache_gib
        if kv_cache_gib is None and not on_gpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kv_cache_gib = CPU_KV_CACHE_GIB  # the CPU backend would otherwise reserve 85% of host memory
        if kv_cache_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        for key in ("max_model_len", "max_num_seqs"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return kwargs


def add_vllm_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine options of both commands (``--backend vllm`` only)."""
    group = parser.add_argument_group("vLLM engine (--backend vllm)")
    group.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=VLLMOptions.gpu_memory_utilization,
        help="share of each GPU's memory the engine may take (weights + KV cache)",
    )
    group.add_argument(
        "--kv-cache-gib",
        type=float,
        default=None,
        help=f"KV cache size in GiB instead of the memory share (default on CPU: {CPU_KV_CACHE_GIB})",
    )
    group.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per engine")
    group.add_argument(
        "--data-parallel-size",
        type=int,
        default=None,
        help="engines, each on its own tensor-parallel group (default: visible GPUs // tensor parallel size, 1 on CPU)",
    )
    group.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    group.add_argument("--max-num-seqs", type=int, default=None, help="sequences an engine runs at once")
    group.add_argument("--dtype", default="auto", help="weights and activations (auto: vLLM's choice)")
    group.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs or compilation (faster start)")


def options_from_args(args: argparse.Namespace) -> VLLMOptions:
    return VLLMOptions(
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_gib=args.kv_cache_gib,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        dtype=args.dtype,
        enforce_eager=args.enforce_eager,
    )


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_groups(options: VLLMOptions, gpus: Sequence[str]) -> list[list[str]]:
    """One GPU list per engine; on a machine without GPUs, ``data_parallel_size`` engines with none."""
    tp = options.tensor_parallel_size
    if tp < 1:
        raise ValueError(f"--tensor-parallel-size must be >= 1, got {tp}")
    if not gpus:
        return [[] for _ in range(options.data_parallel_size or 1)]
    dp = options.data_parallel_size or max(1, len(gpus) // tp)
    if dp * tp > len(gpus):
        raise ValueError(
            f"--data-parallel-size {dp} x --tensor-parallel-size {tp} needs {dp * tp} GPUs; {len(gpus)} are visible "
            f"({','.join(gpus)})"
        )
    return [list(gpus[i * tp : (i + 1) * tp]) for i in range(dp)]


def chat_conversation(messages: list[dict], images: Sequence[bytes]) -> list[dict]:
    """verl's messages (one ``<image>`` tag per image in the text) as a vLLM chat conversation with PIL images."""
    pending = iter(images)
    return [
        {
            "role": message["role"],
            "content": [
                {"type": "image_pil", "image_pil": pil_image(next(pending))} if part["type"] == "image" else part
                for part in message["content"]
            ],
        }
        for message in structured_messages(messages, len(images))
    ]


class VLLMGenerator:
    """One vLLM engine in this process, answering through its chat API."""

    def __init__(self, model_path: str, sampling: dict[str, Any], options: VLLMOptions) -> None:
        import torch
        from vllm import LLM, SamplingParams

        self.llm = LLM(model=model_path, trust_remote_code=False, **options.engine_kwargs(torch.cuda.is_available()))
        self.params = SamplingParams(**sampling)

    def generate(self, samples: Sequence[Any]) -> list[str]:
        conversations = [chat_conversation(sample.messages, sample.images) for sample in samples]
        outputs = self.llm.chat(conversations, self.params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]


def _serve(connection, gpus: list[str], model_path: str, sampling: dict[str, Any], options: VLLMOptions) -> None:
    """A data-parallel engine's process: answers each batch it is sent until it gets ``None``."""
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    try:
        generator = VLLMGenerator(model_path, sampling, options)
        connection.send(("ready", None))
    except Exception:
        connection.send(("error", traceback.format_exc()))
        return
    while (samples := connection.recv()) is not None:
        try:
            connection.send(("ok", generator.generate(samples)))
        except Exception:
            connection.send(("error", traceback.format_exc()))


class DataParallelGenerator:
    """One engine per GPU group, each in its own process; a batch is cut into contiguous parts, one per engine, and
    the answers come back in the batch's order."""

    def __init__(
        self, model_path: str, sampling: dict[str, Any], options: VLLMOptions, groups: Sequence[list[str]]
    ) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: CUDA_VISIBLE_DEVICES applies
        self.connections, self.processes = [], []
        for gpus in groups:
            parent, child = context.Pipe()
            # not a daemon: the engine starts processes of its own
            process = context.Process(target=_serve, args=(child, gpus, model_path, sampling, options))
            process.start()
            self.connections.append(parent)
            self.processes.append(process)
        for rank, connection in enumerate(self.connections):
            self._receive(rank, connection)

    def _receive(self, rank: int, connection) -> Any:
        try:
            status, payload = connection.recv()
        except EOFError:
            self.close()
            raise RuntimeError(f"vLLM engine {rank} exited (exit code {self.processes[rank].exitcode})") from None
        if status == "error":
            self.close()
            raise RuntimeError(f"vLLM engine {rank} failed:\n{payload}")
        return payload

    def generate(self, samples: Sequence[Any]) -> list[str]:
        engines = len(self.connections)
        size = -(-len(samples) // engines)
        parts = [list(samples[i * size : (i + 1) * size]) for i in range(engines)]
        busy = [(rank, connection) for rank, connection in enumerate(self.connections) if parts[rank]]
        for rank, connection in busy:
            connection.send(parts[rank])
        return [text for rank, connection in busy for text in self._receive(rank, connection)]

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
        self.connections, self.processes = [], []


def make_vllm_generator(model_path: str, sampling: dict[str, Any], options: VLLMOptions) -> Any:
    """An engine in this process, or one per GPU group when the options or the node ask for several."""
    groups = gpu_groups(options, visible_gpus())
    if len(groups) == 1:
        return VLLMGenerator(model_path, sampling, options)
    return DataParallelGenerator(model_path, sampling, options, groups)
