"""Build a tiny random Qwen3-VL with a locally trained tokenizer, saved as a normal Hugging Face model folder.

There is no model hub on the CI machines, so the demo and the tests build their model here. Everything downstream
(verl's ``hf_tokenizer`` / ``hf_processor``, ``AutoModelForImageTextToText``, the FSDP actor) loads it through the
same code paths as a real Qwen3-VL checkpoint. Weights are random: generations are noise, which is all the
machinery needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# A Qwen-style ChatML template (written for this project): string content or a list of {"type": "text"|"image"}.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PATCH_SIZE = 16  # Qwen3-VL; the image side must be a multiple of 2 * PATCH_SIZE after resizing


def _tokenizer_corpus() -> list[str]:
    from recipes.demo.shapes_dataset import corpus

    return corpus()


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE trained on ``texts``, wrapped as a fast tokenizer with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def build_processor(tokenizer):
    """A Qwen3-VL processor with small image budgets (4 to 16 visual tokens per image)."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    factor = 2 * PATCH_SIZE
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE,
        temporal_patch_size=2,
        merge_size=2,
        min_pixels=factor * factor * 4,
        max_pixels=factor * factor * 16,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=PATCH_SIZE, temporal_patch_size=2, merge_size=2)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, seed: int = 0):
    """A random Qwen3-VL of about 0.5M parameters (hidden 64, 2 layers of 2 heads x 32, 2-layer vision tower)."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    token_id = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = token_id("<|endoftext|>"), token_id("<|im_end|>")
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            # head_dim 32: the smallest size vLLM's CPU attention supports, so the demo runs on both rollouts
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [6, 5, 5]},
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            bos_token_id=None,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=4,
            patch_size=PATCH_SIZE,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        ),
        tie_word_embeddings=True,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    # Like Qwen3-VL's own generation_config.json: generation stops on <|im_end|> and on <|endoftext|>.
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True)
    return model


def warm_start_format(model, processor, steps: int = 40, batch_size: int = 8, seed: int = 0) -> None:
    """Teach the random model the answer *format*, not the answers.

    Targets are ``<answer> X </answer><|im_end|>`` with X drawn at random from the question's answer set, so the
    policy starts near chance accuracy (as a base model on hard prompts would) but ends its responses with EOS.
    Without this, a random model almost never emits EOS inside a small response budget and no guide is usable.
    """
    import random

    import torch

    from recipes.demo.shapes_dataset import answer_choices, make_row, row_messages

    rng = random.Random(seed)
    torch.manual_seed(seed)

    def batches():
        for _ in range(steps):
            texts, images, targets = [], [], []
            for _ in range(batch_size):
                row = make_row(0, "warmup", rng)
                messages, image = row_messages(row)
                texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
                images.append(image)
                answer = rng.choice(answer_choices(row["extra_info"]["question"]))
                targets.append(f"<answer> {answer} </answer><|im_end|>")
            full = [t + target for t, target in zip(texts, targets, strict=True)]
            yield processor(text=full, images=images, return_tensors="pt", padding=True), targets

    train_on_answers(model, processor.tokenizer, batches())


def train_on_answers(model, tokenizer, batches) -> None:
    """Supervised steps on ``(left-padded prompt + target batch, targets)`` pairs, the loss on the targets only."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for batch, targets in batches:
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for i, target in enumerate(targets):  # padding is on the left: the target is each row's tail
            labels[i, : labels.shape[1] - len(tokenizer(target)["input_ids"])] = -100
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def save_demo_model(out_dir: Path, corpus: list[str], seed: int, train: Callable[[Any, Any], None] | None) -> None:
    """A tokenizer trained on ``corpus``, its processor and a random tiny Qwen3-VL, trained by ``train(model,
    processor)`` when given, saved to ``out_dir``: the one build sequence every demo model goes through."""
    tokenizer = build_tokenizer(corpus)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, seed=seed)
    if train is not None:
        train(model, processor)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def build_tiny_qwen3_vl(out_dir: str | Path, seed: int = 0, warm_start: bool = True) -> Path:
    """Write model, tokenizer and processor to ``out_dir`` (idempotent: an existing build is reused)."""
    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").is_file() and (out_dir / "processor_config.json").is_file():
        return out_dir
    train = (lambda model, processor: warm_start_format(model, processor, seed=seed)) if warm_start else None
    save_demo_model(out_dir, _tokenizer_corpus(), seed, train)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-warm-start", action="store_true", help="keep the weights fully random")
    args = parser.parse_args()
    print(build_tiny_qwen3_vl(args.out_dir, seed=args.seed, warm_start=not args.no_warm_start))


if __name__ == "__main__":
    main()
