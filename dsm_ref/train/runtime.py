"""Where and how a run executes: this process's place in a ``torchrun`` group (and joining it),
the device, the AMP dtype and autocast, and the data side (:class:`ShardedSampler`, loaders).

Several processes: under ``torchrun`` (``WORLD_SIZE > 1``) :func:`_setup_process` joins a process
group (NCCL on GPU, gloo on CPU) and each process reads ``batch_size / world_size`` samples of
every global batch through :class:`ShardedSampler`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..utils import pick_device

__all__ = ["ShardedSampler"]


# --- processes and devices -----------------------------------------------------------------------

@dataclass
class _Process:
    """This process's place in the run: rank, world size, device, whether it set up the group."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _setup_process(device: str | None) -> _Process:
    """Joins the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return _Process(device=pick_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
        owns = True
    return _Process(dist.get_rank(), dist.get_world_size(), chosen, owns)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``"auto"``: bf16 on CUDA if supported, else fp16; nothing on CPU/MPS."""
    if amp == "none":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device (got {device}); use 'bf16' or 'none'")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- sampling ------------------------------------------------------------------------------------

class ShardedSampler(Sampler[int]):
    """The indices one process reads in one epoch, a pure function of ``(seed, epoch)``.

    A permutation seeded by ``seed + epoch`` (or ``0..n-1`` if not ``shuffle``); with
    ``drop_last`` cut to a multiple of ``world_size``; dealt round-robin, rank ``r`` taking
    positions ``r, r + W, ...`` (the split of ``torch.utils.data.DistributedSampler``). So the
    ``W`` local batches of step ``k`` together are global batch ``k`` of a 1-process run.
    paper: silent / ours: our own sampler / why: ``set_epoch(epoch, start)`` can skip the
    batches a resumed run already did, which DistributedSampler cannot.
    """

    def __init__(self, num_samples: int, *, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = True) -> None:
        self.num_samples = num_samples
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw, and how many of this process's indices to skip (resume)."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        if self.drop_last:
            order = order[: self.num_samples - self.num_samples % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)


def _loader(dataset: Dataset, sampler: ShardedSampler, batch_size: int, *, train: bool,
            num_workers: int, device: torch.device,
            collate_fn: Callable | None = None) -> DataLoader:
    # A private generator: creating an iterator then never draws from the global RNG, so a run
    # resumed mid-epoch sees the same drop-path / MixUp random stream as an uninterrupted one.
    # collate_fn: None stacks samples (torch's default); detection passes lists.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train,
                      num_workers=num_workers, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(0), collate_fn=collate_fn)


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)

