"""vLLM engine options and the split of a node's GPUs into engines, without vLLM (the engines themselves run in
tests/integration/test_evaluate_vllm_cpu.py, through vLLM on CPU)."""

import pytest

from verifiers.vllm_engine import CPU_KV_CACHE_GIB, DataParallelGenerator, VLLMOptions, gpu_groups


def test_the_cpu_backend_gets_a_bounded_kv_cache_instead_of_a_share_of_host_memory(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    cpu = VLLMOptions().engine_kwargs(on_gpu=False)
    assert cpu["kv_cache_memory_bytes"] == int(CPU_KV_CACHE_GIB * 2**30)
    gpu = VLLMOptions().engine_kwargs(on_gpu=True)
    assert "kv_cache_memory_bytes" not in gpu and gpu["gpu_memory_utilization"] == 0.85
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")  # vLLM's own setting wins where the user gave it
    assert "kv_cache_memory_bytes" not in VLLMOptions().engine_kwargs(on_gpu=False)
    assert VLLMOptions(kv_cache_gib=0.5).engine_kwargs(on_gpu=True)["kv_cache_memory_bytes"] == 2**29


def test_unset_options_leave_vllm_its_defaults_and_set_ones_reach_the_engine():
    assert "max_model_len" not in VLLMOptions().engine_kwargs(on_gpu=True)
    kwargs = VLLMOptions(max_model_len=8192, max_num_seqs=64, tensor_parallel_size=2, dtype="float32").engine_kwargs(
        on_gpu=True
    )
    assert kwargs | {"max_model_len": 8192, "max_num_seqs": 64, "tensor_parallel_size": 2, "dtype": "float32"} == kwargs


def test_a_node_is_split_into_tensor_parallel_groups():
    gpus = [str(i) for i in range(8)]
    assert gpu_groups(VLLMOptions(), gpus) == [[g] for g in gpus], "an 8B model: one engine per GPU"
    assert gpu_groups(VLLMOptions(tensor_parallel_size=4), gpus) == [gpus[:4], gpus[4:]]
    assert gpu_groups(VLLMOptions(tensor_parallel_size=2, data_parallel_size=1), gpus) == [["0", "1"]]
    assert gpu_groups(VLLMOptions(tensor_parallel_size=3), ["4", "6", "7"]) == [["4", "6", "7"]]
    with pytest.raises(ValueError, match="needs 8 GPUs; 4 are visible"):
        gpu_groups(VLLMOptions(tensor_parallel_size=4, data_parallel_size=2), gpus[:4])
    assert gpu_groups(VLLMOptions(), []) == [[]], "no GPU: one engine on the CPU backend"
    assert gpu_groups(VLLMOptions(data_parallel_size=2), []) == [[], []]


def test_an_engine_that_cannot_start_is_reported_with_its_cause(tmp_path):
    # this environment has no vLLM: the engine's process fails at its import, and the error says so
    with pytest.raises(RuntimeError, match=r"vLLM engine 0 failed:(.|\n)*No module named 'vllm'"):
        DataParallelGenerator(str(tmp_path), {"max_tokens": 1}, VLLMOptions(), [[], []])
