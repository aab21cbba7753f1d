"""Prompts with images as chat content: verl's convention of one ``<image>`` tag per image in the text."""

from __future__ import annotations

import io

IMAGE_TAG = "<image>"


def content_parts(content: str) -> list[dict]:
    """`"<image>What is x?"` -> [{"type": "image"}, {"type": "text", "text": "What is x?"}]."""
    parts: list[dict] = []
    for i, piece in enumerate(content.split(IMAGE_TAG)):
        if i:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def structured_messages(messages: list[dict], image_count: int) -> list[dict]:
    """Chat messages with their ``<image>`` tags as content parts; the tags must match the row's images."""
    tags = sum(str(m["content"]).count(IMAGE_TAG) for m in messages)
    if tags != image_count:
        raise ValueError(f"{tags} {IMAGE_TAG} tags but {image_count} images")
    return [{"role": m["role"], "content": content_parts(str(m["content"]))} for m in messages]


def pil_image(data: bytes):
    """Image bytes as an RGB PIL image (Pillow imported only here)."""
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")
