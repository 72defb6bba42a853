"""Trained weights shipped inside the package: which variants have them, how they are stored, and
how ``create_model(name, pretrained=True)`` loads them. :data:`SHIPPED_WEIGHTS` names the file of
each variant that has one (``dsm_micro``: CIFAR-10, trained by the ``cifar10-dsm_micro-mix``
preset); :func:`pretrained_models` lists those whose file is present in this copy.

A weights file ``dsm_ref/weights/<variant>-<dataset>.pt`` (format :data:`WEIGHTS_FORMAT`) holds
the model's state dict in float16 (half the bytes of float32; the loader casts back), the
variant's name and the options it was built with, the preprocessing its inputs need and the
sha256 of the state (:func:`state_digest`: names, dtypes, shapes and bytes). Beside it,
``<variant>-<dataset>.json`` is its training record: the command, the config, every epoch's
metrics, and the accuracy of these float16 weights on the test set. ``python -m dsm_ref export``
writes both from a finished training run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .files import atomic_torch_save, read_torch_file

__all__ = ["WEIGHTS_FORMAT", "WEIGHTS_DIR", "SHIPPED_WEIGHTS", "WeightsError", "weights_path",
           "pretrained_models", "save_weights", "read_weights", "load_pretrained",
           "model_from_weights", "weights_info", "state_digest"]

WEIGHTS_FORMAT = "dsm_ref.weights"
WEIGHTS_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Variant name -> the stem of its weights file in WEIGHTS_DIR (one trained model per variant).
SHIPPED_WEIGHTS: dict[str, str] = {"dsm_micro": "dsm_micro-cifar10"}


class WeightsError(RuntimeError):
    """Weights that do not exist, are damaged, or do not fit the model asked for."""


def weights_path(name: str) -> Path:
    """The weights file of variant ``name``; :class:`WeightsError` when none is shipped."""
    if name not in SHIPPED_WEIGHTS:
        raise WeightsError(f"no trained weights for {name!r}: dsm_ref ships weights for "
                           f"{sorted(SHIPPED_WEIGHTS)}; build it with pretrained=False and train "
                           "it, or load your own checkpoint")
    path = WEIGHTS_DIR / f"{SHIPPED_WEIGHTS[name]}.pt"
    if not path.is_file():
        raise WeightsError(f"the weights of {name!r} are not in this copy of dsm_ref (expected "
                           f"at {path}): a checkout from before they were trained and exported "
                           "(python -m dsm_ref export RUN), or an installation without its "
                           "package data")
    return path


def pretrained_models() -> list[str]:
    """Variants whose weights file is present."""
    return sorted(name for name, stem in SHIPPED_WEIGHTS.items()
                  if (WEIGHTS_DIR / f"{stem}.pt").is_file())


def state_digest(state: dict[str, Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_weights(state: dict[str, Tensor], path: str | os.PathLike, *, model: str,
                 model_options: dict[str, Any], preprocess: dict[str, Any],
                 classes: list[str]) -> dict[str, Any]:
    """Writes ``state`` (floating tensors as float16, others unchanged) atomically to ``path``
    with what is needed to use it; returns the stored fields other than the state.

    ``preprocess``: e.g. ``{"img_size": 32, "mean": [...], "std": [...]}``, what an input must
    be (RGB in ``[0, 1]``, resized, then normalised) for the weights to mean anything.
    """
    half = {key: value.detach().cpu().half() if value.is_floating_point()
            else value.detach().cpu() for key, value in state.items()}
    meta = {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "model": model,
            "model_options": dict(model_options), "preprocess": dict(preprocess),
            "classes": list(classes), "sha256": state_digest(half)}
    atomic_torch_save({**meta, "state_dict": half}, path)
    return meta


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """A weights file, checked: its format, version and the digest of its state."""
    stored = read_torch_file(path, what="dsm_ref weights file", file_format=WEIGHTS_FORMAT,
                             version=WEIGHTS_VERSION, error=WeightsError,
                             expected="weights written by dsm_ref.pretrained.save_weights")
    if state_digest(stored["state_dict"]) != stored["sha256"]:
        raise WeightsError(f"{path} is damaged: its state does not match its stored sha256")
    return stored


def load_pretrained(model: nn.Module, name: str, overrides: dict[str, Any], *,
                    stored: dict[str, Any] | None = None) -> nn.Module:
    """Loads variant ``name``'s shipped weights (``stored``, if already read) into ``model``
    (built with ``overrides``), cast to the model's dtype; :class:`WeightsError` when none exist
    or the overrides changed a shape (e.g. ``num_classes``): the message names the parameters
    that do not fit."""
    path = weights_path(name)
    stored = stored if stored is not None else read_weights(path)
    if stored["model"] != name:
        raise WeightsError(f"{path} holds weights of {stored['model']!r}, not {name!r}")
    return _load_stored(model, stored, overrides)


def model_from_weights(path: str | os.PathLike) -> nn.Module:
    """The model a weights file describes (its variant, built with its stored options) holding
    those weights in float32: for files kept outside the package, e.g. an earlier recipe's
    weights in ``data/weights/``."""
    from .models import create_model  # models imports this module

    stored = read_weights(path)
    model = create_model(stored["model"], **stored["model_options"])
    return _load_stored(model, stored, stored["model_options"])


def _load_stored(model: nn.Module, stored: dict[str, Any], overrides: dict[str, Any]) -> nn.Module:
    """``stored``'s state loaded into ``model``, cast to its dtypes; the shapes must match."""
    own = model.state_dict()
    state = {key: value.to(own[key].dtype) if key in own and value.is_floating_point() else value
             for key, value in stored["state_dict"].items()}
    wrong = [f"{key}: stored {tuple(value.shape)}, model {tuple(own[key].shape)}"
             for key, value in state.items() if key in own and own[key].shape != value.shape]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        details = "; ".join(wrong[:3] + [f"missing {k}" for k in missing[:3]]
                            + [f"unexpected {k}" for k in unexpected[:3]])
        raise WeightsError(f"the trained weights of {stored['model']!r} (built with "
                           f"{stored['model_options'] or 'its defaults'}) do not fit the model "
                           f"built with {overrides}: {details}. Use pretrained=True only with "
                           "options that keep every shape (e.g. token_mixer is not one)")
    model.load_state_dict(state)
    return model


def weights_info(name: str) -> dict[str, Any]:
    """What variant ``name``'s shipped weights expect and predict: ``{"model", "model_options",
    "preprocess" (img_size, mean, std), "classes", "sha256"}`` (no tensors)."""
    stored = read_weights(weights_path(name))
    return {key: value for key, value in stored.items()
            if key not in ("state_dict", "format", "version")}
