"""Prompts with images as chat content: verl's convention of one ``<image>`` tag per image in the text."""

from __future__ import annotations

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
