"""Image bytes from the shapes datasets store them in, and a decode check that catches what would crash training.

A corrupt image in a verl parquet fails inside a rollout worker hours into a run, so every image is decoded once
here. JPEGs are decoded at 1/8 scale (`draft`), which still reads the whole entropy-coded stream, so truncation is
caught at a fraction of the cost.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

# Qwen-VL processors refuse images whose long side is more than 200 times the short side (`smart_resize`).
MAX_ASPECT_RATIO = 200


class ImageError(ValueError):
    """Bytes that do not decode to a usable image."""


def image_bytes(value: Any, bases: Sequence[Path] = ()) -> bytes | None:
    """Raw bytes from a `{bytes, path}` struct, plain bytes or a path (a relative path is looked up under each of
    `bases` in turn, never under the working directory, so the result does not depend on where the command runs).

    None when there is nothing to read: a null value, empty bytes, or a path that does not exist.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        data = value.get("bytes")
        return bytes(data) if data else _read(value.get("path"), bases)
    if isinstance(value, bytes | bytearray):
        return bytes(value) or None
    if isinstance(value, str):
        return _read(value, bases)
    return None


def is_empty_image(value: Any) -> bool:
    """True for a value that stores no image at all: null, an empty string, or a struct with neither bytes nor path
    (how text-only rows of a vision benchmark are stored), as opposed to a path or bytes that fail to load."""
    if isinstance(value, dict):
        return not value.get("bytes") and not value.get("path")
    return value is None or value == "" or value == b""


def search_bases(data_file: Path, image_root: Path | None = None) -> list[Path]:
    """Where relative image paths of `data_file` are looked up: `image_root` first, then the file's folder and each of
    its parents. Publishers differ: MathVista's `images/` sits beside its JSON, MathVision's at the repository root,
    above `data/`."""
    folder = data_file.resolve().parent
    return ([image_root] if image_root is not None else []) + [folder, *folder.parents]


def _read(path: str | None, bases: Sequence[Path]) -> bytes | None:
    if not path:
        return None
    relative = Path(path)
    candidates = [relative] if relative.is_absolute() else [base / relative for base in bases]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_bytes() or None
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) after a full decode; `ImageError` for bytes that cannot be decoded or shapes Qwen-VL refuses."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) on hostile bytes
        message = str(exc).split(" <_io.")[0]  # PIL names the buffer object; its address is noise
        raise ImageError(f"{type(exc).__name__}: {message}") from exc
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError(f"{width}x{height}: aspect ratio over {MAX_ASPECT_RATIO}")
    return width, height
