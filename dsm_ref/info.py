"""What this installation is: versions, the device training would use, and where data is looked
for (``python -m dsm_ref info`` prints it: the first thing to paste into a bug report)."""

from __future__ import annotations

import os

import torch

from .data import CACHE_DIR_ENV, DATA_DIR_ENV, DATASETS, data_locations
from .models import list_models
from .utils import environment_info, pick_device

__all__ = ["collect_info"]


def collect_info() -> dict[str, dict[str, str]]:
    """Sections ``{"environment", "device", "data"}`` of ``{name: value}`` strings."""
    import dsm_ref

    environment = {"dsm_ref": dsm_ref.__version__, **environment_info()}
    device = pick_device()
    devices = {
        "picked": str(device),
        "cuda devices": str(torch.cuda.device_count()) if torch.cuda.is_available() else "0",
        "mps": str(getattr(torch.backends, "mps", None) is not None
                   and torch.backends.mps.is_available()),
        "bf16 autocast on CUDA": str(torch.cuda.is_available()
                                     and torch.cuda.is_bf16_supported()),
        "distributed": ("WORLD_SIZE=" + os.environ["WORLD_SIZE"]) if "WORLD_SIZE" in os.environ
        else "single process (use torchrun for several)",
    }
    data = {
        DATA_DIR_ENV: os.environ.get(DATA_DIR_ENV, "(unset)"),
        CACHE_DIR_ENV: os.environ.get(CACHE_DIR_ENV, "(unset)"),
        **data_locations(),
        "datasets": ", ".join(DATASETS),
        "models": ", ".join(list_models()),
    }
    return {"environment": environment, "device": devices, "data": data}
