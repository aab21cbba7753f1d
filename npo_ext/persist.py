"""Crash-safe files: a reader sees either the old or the new content, never a torn write; and hard-linked copies of a
checkpoint folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch


class NPOStateError(RuntimeError):
    """Persisted NPO state is missing or unreadable; the message names the path so the user can act."""


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as JSON via a temp file + fsync + rename in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`; corrupt or missing files raise NPOStateError."""
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise NPOStateError(f"{what} not found: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NPOStateError(f"{what} is corrupt ({e}): {path}") from e


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temp file + rename, for state that is not JSON (e.g. prompts with images)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """``target`` holds ``source``'s bytes: a hard link where the filesystem allows one, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def link_tree(source: Path, target: Path) -> bool:
    """Hard-link every file under ``source`` into ``target`` (the same state, no bytes written). False, with
    ``target`` removed, where the filesystem cannot link (another device, no hard links): the caller writes instead."""
    try:
        for path in sorted(source.rglob("*")):
            destination = target / path.relative_to(source)
            if path.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, destination)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def folder_bytes(folder: Path, skip_prefixes: tuple[str, ...] = ()) -> int:
    """Bytes of the files under ``folder`` (0 if it does not exist), leaving out files whose names start with one of
    ``skip_prefixes``."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(skip_prefixes))
