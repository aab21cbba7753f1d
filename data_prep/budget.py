"""Prompt length in tokens, for quarantining prompts over the training budget before verl sees them.

verl right-truncates or drops an over-long prompt at load time, and truncation that cuts image tokens fails later
with "Image features and image tokens do not match". Counting here moves that failure to conversion, with the row
named in the quarantine log.

- With `--processor PATH` (the training model's processor) the count is exact: the chat template is applied as verl
  applies it, and each image is resized as verl prepares it (qwen_vl_utils rounds the sides to the merge factor
  within 4 to 16,384 tokens, then the processor applies its own pixel range) and counted.
- Without one it is an estimate: one token per 3 characters plus a fixed chat-template allowance, and visual tokens
  for Qwen3-VL (16 px patches merged 2x2) resized into the NPO authors' pixel range (262,144 to 1,048,576 pixels).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from data_prep.inputs import InputError
from verifiers.chat import IMAGE_TAG, content_parts

ESTIMATE_CHARS_PER_TOKEN = 3
ESTIMATE_TEMPLATE_TOKENS = 32
ESTIMATE_FACTOR = 32  # patch 16 x merge 2
ESTIMATE_MIN_PIXELS = 262_144
ESTIMATE_MAX_PIXELS = 1_048_576
VERL_MIN_TOKENS, VERL_MAX_TOKENS = 4, 16_384  # qwen_vl_utils' range when verl fetches an image


def fit(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) rounded to multiples of `factor`, then scaled (keeping the aspect) into the pixel range."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h, w = (
            max(factor, math.floor(height / scale / factor) * factor),
            max(factor, math.floor(width / scale / factor) * factor),
        )
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    return w, h


def estimated_visual_tokens(width: int, height: int) -> int:
    """Visual tokens of one image under the estimate's Qwen3-VL settings."""
    w, h = fit(width, height, ESTIMATE_FACTOR, ESTIMATE_MIN_PIXELS, ESTIMATE_MAX_PIXELS)
    return (w // ESTIMATE_FACTOR) * (h // ESTIMATE_FACTOR)


class PromptBudget:
    """`tokens(prompt, sizes)` counts a user prompt with its images; `max_tokens` 0 switches the check off."""

    def __init__(self, max_tokens: int, processor_path: str | None = None) -> None:
        self.max_tokens = max_tokens
        self.processor = None
        self._lock = threading.Lock()  # checks run on threads; a fast tokenizer must not be entered twice at once
        if processor_path:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(processor_path)
            if getattr(self.processor, "image_processor", None) is None:
                raise InputError(f"{processor_path}: not a multimodal processor (no image processor)")

    @property
    def enabled(self) -> bool:
        return self.max_tokens > 0

    def tokens(self, prompt: str, sizes: Sequence[tuple[int, int]]) -> int:
        """Prompt tokens including the chat template and every image's visual tokens; `sizes` are (width, height)."""
        if self.processor is None:
            text = len(prompt.replace(IMAGE_TAG, "")) / ESTIMATE_CHARS_PER_TOKEN
            return math.ceil(text) + ESTIMATE_TEMPLATE_TOKENS + sum(estimated_visual_tokens(w, h) for w, h in sizes)
        messages = [{"role": "user", "content": content_parts(prompt)}]
        with self._lock:
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(ids) - len(sizes) + sum(self._visual_tokens(w, h) for w, h in sizes)  # one placeholder per image

    def _visual_tokens(self, width: int, height: int) -> int:
        image_processor = self.processor.image_processor
        factor = image_processor.patch_size * image_processor.merge_size
        width, height = fit(width, height, factor, VERL_MIN_TOKENS * factor**2, VERL_MAX_TOKENS * factor**2)
        return image_processor.get_number_of_image_patches(height, width, {}) // image_processor.merge_size**2
