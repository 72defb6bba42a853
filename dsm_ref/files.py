"""Atomic file writes: the one way ``dsm_ref`` writes checkpoints, caches and result records.

Every writer goes through :func:`atomic_write`: the bytes go to a temporary file beside the
target (its name holds the process id and a random token, so processes writing the same target
never share a temporary), are flushed and fsync-ed, then renamed over the target with
``os.replace``, which is atomic within a filesystem. A process killed at any moment leaves
either the previous file or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_write", "atomic_write_json", "atomic_torch_save"]


def atomic_write(path: str | os.PathLike, content: bytes | str | Callable[[IO[bytes]], None]
                 ) -> Path:
    """Writes ``content`` to ``path`` atomically and returns the path.

    Args:
        path: the target; its folder is created when missing.
        content: bytes, text (written as UTF-8), or a function that writes into the open
            binary file (e.g. ``lambda f: torch.save(obj, f)``).
    """
    path = Path(path)
    if not isinstance(content, (bytes, str)) and not callable(content):
        raise TypeError(f"atomic_write: content must be bytes, str or a function of a binary "
                        f"file, got {type(content).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            if isinstance(content, str):
                handle.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | os.PathLike, record: Any, *, indent: int = 1,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """``record`` as JSON (``indent`` spaces, a final newline), written atomically."""
    return atomic_write(path, json.dumps(record, indent=indent, default=default) + "\n")


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` written atomically."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))
