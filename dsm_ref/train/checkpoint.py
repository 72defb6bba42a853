"""Checkpoint files: atomic writes (:func:`dsm_ref.files.atomic_torch_save`), checked reads
with ``weights_only=True`` (:class:`CheckpointError` names the file and what was expected), and
the RNG states of a process, stored as tensors and plain types so they load with
``weights_only``.

A checkpoint (format :data:`CHECKPOINT_FORMAT`, version :data:`CHECKPOINT_VERSION`) holds the
model, optimizer, scheduler, grad scaler, EMA, every process's RNG states, the position in the
run and the config; :data:`_RESUME_MUST_MATCH` lists the config fields a resuming run must share.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_torch_save, read_torch_file

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CHECKPOINT_NAME", "CheckpointError",
           "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "dsm_ref.train.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
# Config fields that must agree between a checkpoint and the run resuming it.
_RESUME_MUST_MATCH = ("task", "model", "model_options", "data", "n_train", "n_test",
                      "img_size", "batch_size", "drop_path")
# What a checkpoint written before a field existed holds for it.
_RESUME_DEFAULTS = {"task": "classify"}


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, foreign, or made for another run."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Writes ``state`` atomically through :func:`dsm_ref.files.atomic_torch_save`: a temporary
    file in the same folder (named with the process id and a random token), fsync, then rename.

    A writer killed at any moment leaves either the previous file or the new one, never a
    truncated mix (``os.replace`` is atomic within a filesystem).
    """
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    mmap: bool = False) -> dict:
    """Reads a checkpoint written by :func:`train` with ``weights_only=True`` and checks it.
    ``mmap=True`` maps the tensors instead of reading them (for a look at the config only).

    Raises :class:`CheckpointError` naming the file and what was expected when it is missing,
    truncated or corrupt, or not a dsm_ref training checkpoint (e.g. a bare state dict).
    """
    expected = (f"a dsm_ref training checkpoint (a dict with format={CHECKPOINT_FORMAT!r}, "
                f"model, optimizer, scheduler, epoch, rng), as written by dsm_ref.train")
    return read_torch_file(path, what="dsm_ref training checkpoint",
                           file_format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                           expected=expected, error=CheckpointError, map_location=map_location,
                           remedy="Use an earlier checkpoint or start again.", mmap=mmap)


def _rng_state() -> dict:
    """This process's RNG states as tensors and plain types (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

