"""Rollout generation with plain transformers, producing verl 0.9.1's agent-loop output layout.

verl 0.9.1 only ships async server rollouts (vLLM, SGLang, TRT-LLM); none runs on CPU. This module generates with
``model.generate`` and lays the result out exactly as verl's ``AgentLoopWorker`` does (left-padded prompts,
right-padded responses, ``(bs, 4, L)`` M-RoPE positions for Qwen-VL, per-row ``multi_modal_inputs``), so the
batch flows through verl's real log-prob, advantage and update code unchanged.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from verl import DataProto


def _prompt_inputs(processor, tokenizer, messages: list[dict]) -> dict[str, torch.Tensor]:
    """Chat-template one prompt and run the processor on its images (as verl's agent loop does)."""
    if processor is None:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        ids = torch.tensor([ids], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    from qwen_vl_utils import process_vision_info

    patch = getattr(processor.image_processor, "patch_size", 14)
    images, _ = process_vision_info(messages, image_patch_size=patch)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[text], images=images, return_tensors="pt"))


def _left_pad(rows: list[torch.Tensor], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, width - row.numel() :] = row
    return out


def _right_pad(rows: list[torch.Tensor], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : row.numel()] = row
    return out


def _position_ids(processor, input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_inputs: dict) -> torch.Tensor:
    """verl's own position-id routine (1-D text, or 1 text + 3 M-RoPE rows), called without an agent-loop server."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    holder = SimpleNamespace(processor=processor)
    return AgentLoopWorker._compute_position_ids(holder, input_ids, attention_mask, dict(mm_inputs))


def _row_mm_inputs(encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mm = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
    grid = mm.get("image_grid_thw")
    if grid is not None:
        mm["images_seqlens"] = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])
    return mm


@torch.no_grad()
def generate_rollout(
    model,
    tokenizer,
    processor,
    prompts: DataProto,
    *,
    prompt_length: int,
    response_length: int,
    sampling: dict[str, Any],
    suppress_token_ids: list[int],
) -> DataProto:
    """Generate one response per row of ``prompts`` (rows carry ``raw_prompt`` chat messages)."""
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    encoded = [_prompt_inputs(processor, tokenizer, list(m)) for m in prompts.non_tensor_batch["raw_prompt"]]
    for row, enc in enumerate(encoded):
        if enc["input_ids"].shape[1] > prompt_length:
            raise ValueError(
                f"prompt of row {row} has {enc['input_ids'].shape[1]} tokens, more than "
                f"rollout.prompt_length={prompt_length}; raise data.max_prompt_length or filter overlong prompts"
            )

    width = max(enc["input_ids"].shape[1] for enc in encoded)
    gen_inputs: dict[str, torch.Tensor] = {
        "input_ids": _left_pad([e["input_ids"][0] for e in encoded], width, pad_id),
        "attention_mask": _left_pad([e["attention_mask"][0] for e in encoded], width, 0),
    }
    if "mm_token_type_ids" in encoded[0] and "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        # transformers >= 5.3 Qwen-VL forwards take it; verl's patched forwards recompute it from input_ids
        gen_inputs["mm_token_type_ids"] = _left_pad([e["mm_token_type_ids"][0] for e in encoded], width, 0)
    for key in ("pixel_values", "image_grid_thw"):
        parts = [e[key] for e in encoded if key in e]
        if parts:
            gen_inputs[key] = torch.cat(parts, dim=0)

    was_training = model.training
    model.eval()
    try:
        output = model.generate(
            **gen_inputs,
            max_new_tokens=response_length,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            suppress_tokens=suppress_token_ids or None,
            **sampling,
        )
    finally:
        model.train(was_training)

    responses = []
    for row in output[:, width:]:
        ends = (row == eos_id).nonzero()
        responses.append(row[: int(ends[0]) + 1] if len(ends) else row[:response_length])

    prompt_ids = _left_pad([e["input_ids"][0] for e in encoded], prompt_length, pad_id)
    prompt_mask = _left_pad([e["attention_mask"][0] for e in encoded], prompt_length, 0)
    response_ids = _right_pad(responses, response_length, pad_id)
    response_mask = _right_pad([torch.ones_like(r) for r in responses], response_length, 0)
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)

    mm_inputs = [_row_mm_inputs(e) if processor is not None else {} for e in encoded]
    position_ids = torch.cat(
        [
            _position_ids(processor, input_ids[i : i + 1], attention_mask[i : i + 1], mm_inputs[i])
            for i in range(len(encoded))
        ],
        dim=0,
    )
    for mm in mm_inputs:
        mm.pop("mm_token_type_ids", None)

    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "response_mask": response_mask,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
        },
        non_tensors={
            "multi_modal_inputs": np.array(mm_inputs, dtype=object),
            "__num_turns__": np.full(len(encoded), 2, dtype=np.int32),
        },
    )
