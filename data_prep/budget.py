"""Prompt length in tokens, for quarantining prompts over the training budget before verl sees them.

verl right-truncates or drops an over-long prompt at load time, and truncation that cuts image tokens fails later
with "Image features and image tokens do not match". Counting here moves that failure to conversion, with the row
named in the quarantine log.

- With `--processor PATH` (the training model's processor) the count is exact: the chat template is applied as verl
  applies it, and each image contributes the number of visual tokens the processor's own resize gives.
- Without one it is an estimate: one token per 3 characters plus a fixed chat-template allowance, and visual tokens
  for Qwen3-VL (16 px patches merged 2x2) resized into the NPO authors' pixel range (262,144 to 1,048,576 pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ESTIMATE_CHARS_PER_TOKEN = 3
ESTIMATE_TEMPLATE_TOKENS = 32
ESTIMATE_FACTOR = 32  # patch 16 x merge 2
ESTIMATE_MIN_PIXELS = 262_144
ESTIMATE_MAX_PIXELS = 1_048_576
IMAGE_TAG = "<image>"


def estimated_visual_tokens(width: int, height: int) -> int:
    """Visual tokens of one image: sides rounded to the merge factor, then scaled into the pixel range."""
    f = ESTIMATE_FACTOR
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h * w > ESTIMATE_MAX_PIXELS:
        scale = math.sqrt(height * width / ESTIMATE_MAX_PIXELS)
        h, w = max(f, math.floor(height / scale / f) * f), max(f, math.floor(width / scale / f) * f)
    elif h * w < ESTIMATE_MIN_PIXELS:
        scale = math.sqrt(ESTIMATE_MIN_PIXELS / (height * width))
        h, w = math.ceil(height * scale / f) * f, math.ceil(width * scale / f) * f
    return (h // f) * (w // f)


def _content_parts(prompt: str) -> list[dict]:
    parts: list[dict] = []
    for i, piece in enumerate(prompt.split(IMAGE_TAG)):
        if i:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


class PromptBudget:
    """`tokens(prompt, sizes)` counts a user prompt with its images; `max_tokens` 0 switches the check off."""

    def __init__(self, max_tokens: int, processor_path: str | None = None) -> None:
        self.max_tokens = max_tokens
        self.processor = None
        if processor_path:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(processor_path)
            if getattr(self.processor, "image_processor", None) is None:
                raise ValueError(f"{processor_path}: not a multimodal processor (no image processor)")

    @property
    def enabled(self) -> bool:
        return self.max_tokens > 0

    def tokens(self, prompt: str, sizes: Sequence[tuple[int, int]]) -> int:
        """Prompt tokens including the chat template and every image's visual tokens; `sizes` are (width, height)."""
        if self.processor is None:
            text = len(prompt.replace(IMAGE_TAG, "")) / ESTIMATE_CHARS_PER_TOKEN
            return math.ceil(text) + ESTIMATE_TEMPLATE_TOKENS + sum(estimated_visual_tokens(w, h) for w, h in sizes)
        messages = [{"role": "user", "content": _content_parts(prompt)}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        image_processor = self.processor.image_processor
        merge = image_processor.merge_size**2
        visual = sum(image_processor.get_number_of_image_patches(h, w, {}) // merge for w, h in sizes)
        return len(ids) - len(sizes) + visual  # the template leaves one placeholder token per image
