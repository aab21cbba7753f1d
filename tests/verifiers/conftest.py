"""Shared fixtures: a short-deadline symbolic pool, tiny local models, and verl-schema parquet files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from verifiers.pool import WorkerPool

TEST_TIMEOUT_S = 3.0


@pytest.fixture(scope="session")
def symbolic_pool():
    """Two workers, a 3 s deadline and a 1 GiB address-space cap, so hostile inputs are cut quickly."""
    pool = WorkerPool(size=2, timeout=TEST_TIMEOUT_S, memory_mb=1024)
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def tiny_vl_model(tmp_path_factory) -> Path:
    """The project's tiny random Qwen3-VL (recipes/demo/tiny_model.py), untrained."""
    from recipes.demo.tiny_model import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_vl"), warm_start=False)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A tiny random Qwen2 causal LM, with the project's locally trained tokenizer (no hub access)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from recipes.demo.tiny_model import build_tokenizer

    tokenizer = build_tokenizer([f"What is {a} plus {b}? The answer is {a + b}." for a in range(20) for b in range(5)])
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
    out = tmp_path_factory.mktemp("tiny_text")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def write_rl_parquet():
    """Writes rows in verl's RL schema with an explicit schema (images as list<struct<bytes, path>>)."""
    return _write_rl_parquet


def _write_rl_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            ("extra_info", pa.struct([("index", pa.int64()), ("answer_type", pa.string())])),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path
