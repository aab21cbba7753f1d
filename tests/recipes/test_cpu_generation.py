"""The transformers rollout lays batches out like verl's agent loop, from verl's own dataset class."""

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForImageTextToText
from verl import DataProto
from verl.utils import hf_processor, hf_tokenizer
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from recipes.cpu.hf_generation import generate_rollout
from recipes.demo.shapes_dataset import write_shapes_parquet
from recipes.demo.shapes_reward import compute_score, extract_answer
from recipes.demo.tiny_model import build_tiny_qwen3_vl
from recipes.npo.worker import _vision_token_ids

pytestmark = pytest.mark.slow

P, R = 64, 12


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    model_dir = build_tiny_qwen3_vl(root / "model")
    data_dir = write_shapes_parquet(root / "data", train_size=8, val_size=2)
    tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
    data_config = OmegaConf.create(
        {"max_prompt_length": P, "image_key": "images", "prompt_key": "prompt", "filter_overlong_prompts": False}
    )
    dataset = RLHFDataset([str(data_dir / "train.parquet")], tokenizer, data_config, processor=processor)
    prompts = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(3)])).repeat(2, interleave=True)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    torch.manual_seed(0)
    out = generate_rollout(
        model,
        tokenizer,
        processor,
        prompts,
        prompt_length=P,
        response_length=R,
        sampling={"do_sample": True, "temperature": 1.0},
        suppress_token_ids=_vision_token_ids(tokenizer),
    )
    return out, tokenizer, processor


def test_shapes_match_the_agent_loop_layout(rollout):
    out, _, _ = rollout
    td = out.batch
    assert td["prompts"].shape == (6, P) and td["responses"].shape == (6, R)
    assert td["input_ids"].shape == td["attention_mask"].shape == (6, P + R)
    assert td["position_ids"].shape == (6, 4, P + R), "1 text row + 3 M-RoPE rows, as verl's agent loop"
    assert torch.equal(td["input_ids"][:, P:], td["responses"])
    assert torch.equal(td["attention_mask"][:, P:], td["response_mask"])
    assert td["attention_mask"][:, P - 1].all(), "prompts are left-padded"


def test_responses_stop_at_eos_and_pad_after(rollout):
    out, tokenizer, _ = rollout
    for response, mask in zip(out.batch["responses"], out.batch["response_mask"], strict=True):
        length = int(mask.sum())
        assert mask[:length].all() and not mask[length:].any()
        eos = (response[:length] == tokenizer.eos_token_id).nonzero()
        assert len(eos) <= 1 and (len(eos) == 0 or int(eos[0]) == length - 1)
        assert (response[length:] == tokenizer.pad_token_id).all()


def test_no_vision_tokens_are_sampled_and_images_travel_per_row(rollout):
    out, tokenizer, _ = rollout
    vision = set(_vision_token_ids(tokenizer))
    assert len(vision) == 4
    assert not any(int(t) in vision for t in out.batch["responses"].flatten())
    for mm in out.non_tensor_batch["multi_modal_inputs"]:
        assert set(mm) == {"pixel_values", "image_grid_thw", "images_seqlens"}
        assert mm["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_positions_continue_through_the_response(rollout):
    out, _, _ = rollout
    for row in range(len(out)):
        for channel in out.batch["position_ids"][row]:
            response = channel[P:][out.batch["response_mask"][row].bool()]
            assert torch.equal(response, channel[P - 1] + torch.arange(1, len(response) + 1))


@pytest.mark.parametrize(
    "text, truth, acc, fmt",
    [
        ("<answer> 3 </answer>", "3", 1.0, 1.0),
        ("I count 2, no 3", "3", 1.0, 0.0),
        ("<answer> red </answer> but maybe 3", "red", 1.0, 1.0),
        ("<answer> blue </answer>", "red", 0.0, 1.0),
        ("nothing here", "4", 0.0, 0.0),
    ],
)
def test_demo_reward(text, truth, acc, fmt):
    result = compute_score("npo_demo/shapes", text, truth)
    assert (result["acc"], result["format"]) == (acc, fmt)
    assert result["score"] == pytest.approx(0.9 * acc + 0.1 * fmt)
    assert extract_answer("") is None
