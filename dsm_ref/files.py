"""Atomic file writes: the one way ``dsm_ref`` writes checkpoints, caches and result records;
and :func:`read_torch_file`, the one checked way it reads its own torch files back.

Every writer goes through :func:`atomic_write`: the bytes go to a temporary file beside the
target (its name holds the process id and a random token, so processes writing the same target
never share a temporary), are flushed and fsync-ed, then renamed over the target with
``os.replace``, which is atomic within a filesystem. A process killed at any moment leaves
either the previous file or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import pickle
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


def read_torch_file(path: str | os.PathLike, *, what: str, file_format: str, version: int,
                    expected: str, error: type[Exception],
                    map_location: str | torch.device = "cpu", remedy: str = "",
                    mmap: bool = False) -> dict:
    """A dict written by ``torch.save`` with ``{"format": file_format, "version": version}``,
    read with ``weights_only=True``; anything else raises ``error`` naming the file, what was
    found and ``expected`` (a description of the right file): a missing, unreadable, truncated
    or corrupt file, objects ``weights_only`` refuses, another format or another version.
    ``what``: the kind of file in messages, e.g. "dsm_ref training checkpoint".
    ``remedy`` ends the message of a damaged file (e.g. "Use an earlier checkpoint.").
    ``mmap=True`` maps the tensors' storage instead of reading it (``torch.load(mmap=True)``):
    reading only the small entries of a large file (a run's config) then costs almost nothing."""
    path = Path(path)
    if not path.is_file():
        raise error(f"no {what} at {path}; expected {expected}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except PermissionError as err:
        raise error(f"cannot read {path}: {err}") from err
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines()
                       if "WeightsUnpickler error" in line), str(err).splitlines()[0])
        raise error(f"{path} holds objects that weights_only loading refuses ({reason}); "
                    f"expected {expected}. It was not written by dsm_ref, or not for this "
                    "purpose.") from err
    except Exception as err:  # garbage reaches the unpickler as any of many errors
        raise error(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); expected "
                    f"{expected}.{' ' + remedy if remedy else ''}") from err
    if not isinstance(state, dict) or state.get("format") != file_format:
        found = (f"a dict with keys {sorted(map(str, state))[:8]}" if isinstance(state, dict)
                 else f"a {type(state).__name__}")
        raise error(f"{path} is not a {what}: found {found}; expected {expected}")
    if state.get("version") != version:
        raise error(f"{path} has {what} version {state.get('version')}; this dsm_ref reads "
                    f"version {version}")
    return state
