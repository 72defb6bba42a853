"""One training loop for the notebooks, the CLI and the ablation runner. Defined in notebook 05.

``train(TrainConfig(...)) -> TrainResult``: AdamW with decoupled weight decay on matrices only
(:func:`dsm_ref.models.weight_decay_groups`), a per-step cosine schedule with linear warmup,
gradient clipping, AMP (bf16 or fp16 on CUDA), an optional EMA of the weights, the model's own
drop-path, and an evaluation after every epoch. Metrics (loss, top-1/top-5 in percent, images/s)
go to ``<out>/log.jsonl`` and a summary to ``<out>/metrics.json``.

Checkpoints (``<out>/checkpoint.pt``) hold the model, optimizer, scheduler, grad scaler, EMA,
every process's RNG states, the epoch and the step within it; they are written to a temporary
file and renamed, so a writer killed half-way leaves the previous checkpoint intact, and read
with ``weights_only=True``. SIGTERM/SIGINT finish the current step, save, and stop; ``resume``
continues, and on CPU with the same seed ends with the same weights as an uninterrupted run:
the batch order is a function of ``(seed, epoch)``, the augmentation of ``(seed, epoch, index)``
(:mod:`dsm_ref.data`), and the RNG that drop-path and MixUp draw from is restored.

Several processes: run under ``torchrun`` (``WORLD_SIZE > 1``) and the loop joins a process group
(NCCL on GPU, gloo on CPU), wraps the model in DistributedDataParallel and gives each process
``batch_size / world_size`` samples of every global batch (:class:`ShardedSampler`); only rank 0
writes files. Same global batch, same mean gradient: a 2-process run matches a 1-process run
(``tests/test_train.py`` checks it with gloo on CPU).

``python -m dsm_ref train --model dsm_micro --data cifar10 --epochs 5 --out runs/x`` trains from
the command line; ``--preset imagenet-dsm_s`` holds the ImageNet recipe (see :data:`PRESETS`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import DATASETS, DataError, Datasets, build_datasets, mixup_cutmix
from .models import create_model, list_models, weight_decay_groups
from .utils import environment_info, pick_device, seed_everything

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PRESETS",
    "CheckpointError",
    "ShardedSampler",
    "train",
    "evaluate",
    "predict",
    "confusion_matrix",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "cosine_lr_factor",
    "save_checkpoint",
    "load_checkpoint",
    "add_cli_arguments",
    "config_from_args",
    "command_line",
    "cli_main",
]

CHECKPOINT_FORMAT = "dsm_ref.train.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
AMP_MODES = ("auto", "none", "bf16", "fp16")
# Config fields that must agree between a checkpoint and the run resuming it.
_RESUME_MUST_MATCH = ("model", "model_options", "data", "n_train", "n_test", "img_size",
                      "batch_size", "drop_path")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, foreign, or made for another run."""


# --- configuration and result --------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything a run depends on. Accuracies are reported in percent.

    ``batch_size`` is the *global* batch: under ``torchrun`` each of ``W`` processes takes
    ``batch_size / W`` samples, so a recipe does not change with the number of GPUs.
    ``drop_path=None`` keeps the model's default rate. ``grad_clip=None`` (or 0) disables
    clipping. ``resume``: a checkpoint path, or ``"auto"`` for ``<out>/checkpoint.pt`` if it
    exists (else start fresh). ``max_steps`` stops after that many optimizer steps *in this call*,
    saving a checkpoint as SIGTERM would (a budget for demos and tests). ``randaugment`` and
    ``random_erasing`` apply to ImageNet folders only. ``num_threads`` calls
    ``torch.set_num_threads`` for the whole process (``None``: leave it): on a shared CPU, one
    thread per process avoids the stalls of oversubscribed OpenMP threads.
    """

    model: str = "dsm_micro"
    model_options: dict = field(default_factory=dict)
    data: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    n_train: int | None = None
    n_test: int | None = None
    img_size: int | None = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    randaugment: int | None = 9
    random_erasing: float = 0.25
    drop_path: float | None = None
    ema_decay: float | None = None
    amp: str = "auto"
    device: str | None = None
    seed: int = 0
    num_workers: int = 0
    num_threads: int | None = None
    out: str | None = None
    resume: str | None = None
    save_every: int = 1
    log_every: int = 50
    max_steps: int | None = None
    progress: bool = True
    handle_signals: bool = True

    def validate(self) -> TrainConfig:
        """Raises ``ValueError`` naming the first bad field; returns ``self``."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "log_every": self.log_every}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("n_train", "n_test", "img_size", "max_steps", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")
        ranges = {"min_lr": (self.min_lr, 0, self.lr), "weight_decay": (self.weight_decay, 0, 1),
                  "label_smoothing": (self.label_smoothing, 0, 1), "mixup": (self.mixup, 0, 100),
                  "cutmix": (self.cutmix, 0, 100), "random_erasing": (self.random_erasing, 0, 1),
                  "warmup_epochs": (self.warmup_epochs, 0, self.epochs),
                  "save_every": (self.save_every, 0, math.inf),
                  "num_workers": (self.num_workers, 0, math.inf)}
        for name, (value, low, high) in ranges.items():
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        if self.drop_path is not None and not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; available: {list_models()}")
        return self

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history``: one dict per epoch (see ``log.jsonl``);
    ``final``: the last epoch's metrics plus ``best_test_top1``; ``model`` is unwrapped (no DDP)
    and on the training device; ``interrupted``: stopped by a signal or ``max_steps``."""

    model: nn.Module
    ema_model: nn.Module | None
    config: TrainConfig
    history: list[dict]
    final: dict
    wall_time_s: float
    train_images_per_s: float
    epochs_completed: int
    global_step: int
    interrupted: bool
    num_params: int
    checkpoint_path: str | None = None
    stop_signal: int | None = None

    def summary(self) -> dict:
        """JSON-able record of the run (config, per-epoch history, final metrics, environment)."""
        return {
            "config": self.config.to_dict(),
            "final": self.final,
            "history": self.history,
            "wall_time_s": round(self.wall_time_s, 2),
            "train_images_per_s": round(self.train_images_per_s, 1),
            "epochs_completed": self.epochs_completed,
            "global_step": self.global_step,
            "interrupted": self.interrupted,
            "num_params": self.num_params,
            "environment": environment_info(),
        }


# --- ImageNet recipe and other presets -----------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The DSM family's ImageNet-1k recipe (DeiT's, as GFNet and the other MLP-like peers use it):
    # 300 epochs, AdamW lr 1e-3 at global batch 1024 (5e-4 per 512), wd 0.05, 20 warmup epochs,
    # cosine to 1e-5, RandAugment m9, MixUp 0.8, CutMix 1.0, label smoothing 0.1, random
    # erasing 0.25, drop-path 0.2 (dsm_s's default). paper: "follows DeiT" style recipe; exact
    # clipping and AMP not stated / ours: clip 5.0 (Swin's) and bf16 where the GPU has it.
    # Launch: torchrun --nproc_per_node=8 -m dsm_ref train --preset imagenet-dsm_s \
    #             --data-dir /path/to/imagenet --out runs/dsm_s_in1k
    "imagenet-dsm_s": dict(
        model="dsm_s", data="imagenet", img_size=224, epochs=300, batch_size=1024, lr=1e-3,
        min_lr=1e-5, warmup_epochs=20, weight_decay=0.05, randaugment=9, mixup=0.8, cutmix=1.0,
        label_smoothing=0.1, random_erasing=0.25, drop_path=0.2, grad_clip=5.0, amp="auto",
        num_workers=10, log_every=100,
    ),
    # The course's CPU recipe: dsm_micro on CIFAR-10, pad-4 crop + flip, no MixUp.
    "cifar10-dsm_micro": dict(
        model="dsm_micro", data="cifar10", epochs=5, batch_size=128, lr=2e-3, min_lr=1e-5,
        warmup_epochs=1, weight_decay=0.05, grad_clip=1.0, label_smoothing=0.0,
    ),
}


# --- model, optimizer, schedule ------------------------------------------------------------------

def build_model(config: TrainConfig, num_classes: int, img_size: int) -> nn.Module:
    """``create_model(config.model)`` for this data: ``(B, 3, S, S) -> (B, num_classes)``."""
    options = dict(config.model_options)
    options.setdefault("num_classes", num_classes)
    options.setdefault("img_size", img_size)
    if config.drop_path is not None:
        options["drop_path_rate"] = config.drop_path
    return create_model(config.model, **options)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`weight_decay_groups`: no decay on spectral weights, norms, biases."""
    groups = weight_decay_groups(model, config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def cosine_lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_factor: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Linear warmup ``(step + 1) / warmup_steps``, then a half cosine from 1 to ``min_factor``
    at ``total_steps``. paper: cosine schedule with warmup (the DeiT recipe) / ours: updated every
    step rather than every epoch / why: short CPU runs have few epochs, and a per-step schedule
    does not jump at epoch boundaries.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :func:`cosine_lr_factor` over ``config.epochs * steps_per_epoch`` steps."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    min_factor = config.min_lr / config.lr

    def factor(step: int) -> float:
        return cosine_lr_factor(step, total_steps=total, warmup_steps=warmup,
                                min_factor=min_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
            num_workers: int, device: torch.device) -> DataLoader:
    # A private generator: creating an iterator then never draws from the global RNG, so a run
    # resumed mid-epoch sees the same drop-path / MixUp random stream as an uninterrupted one.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train,
                      num_workers=num_workers, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(0))


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


# --- evaluation ----------------------------------------------------------------------------------

def _topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """Number of samples whose label is among the top-``k`` logits, for each ``k``."""
    top = logits.topk(min(max(ks), logits.shape[-1]), dim=-1).indices  # (B, k)
    hits = top == labels[:, None]
    return [hits[:, :k].any(dim=-1).sum() for k in ks]


@torch.no_grad()
def _evaluate_sums(model: nn.Module, loader: DataLoader, device: torch.device,
                   amp_dtype: torch.dtype | None) -> Tensor:
    """``[loss sum, top-1 hits, top-5 hits, count]`` over this process's share, float64."""
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        top1, top5 = _topk_correct(logits, labels)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        sums += torch.stack([loss.double(), top1.double(), top5.double(),
                             torch.tensor(len(labels), dtype=torch.float64, device=device)])
    return sums


def _metrics_from_sums(sums: Tensor, prefix: str) -> dict[str, float]:
    loss, top1, top5, count = sums.tolist()
    count = max(count, 1.0)
    return {f"{prefix}loss": loss / count, f"{prefix}top1": 100.0 * top1 / count,
            f"{prefix}top5": 100.0 * top5 / count}


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: str = "none",
    num_workers: int = 0,
) -> dict[str, float]:
    """Cross-entropy and top-1/top-5 accuracy (percent) of ``model`` on ``dataset``.

    ``dataset[i] -> ((3, H, W), label)``. Returns ``{"loss", "top1", "top5", "count"}``.
    Single process; :func:`train` evaluates its DDP shards and all-reduces the sums.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.eval()
    sampler = ShardedSampler(len(dataset), shuffle=False, drop_last=False)
    loader = _loader(dataset, sampler, batch_size, train=False, num_workers=num_workers,
                     device=device)
    sums = _evaluate_sums(model, loader, device, _amp_dtype(amp, device))
    model.train(was_training)
    return {**_metrics_from_sums(sums, ""), "count": int(sums[3].item())}


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Logits ``(N, K)`` and labels ``(N,)`` of the whole dataset, in order, on the CPU."""
    device = pick_device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.eval()
    sampler = ShardedSampler(len(dataset), shuffle=False, drop_last=False)
    loader = _loader(dataset, sampler, batch_size, train=False, num_workers=0, device=device)
    logits, labels = [], []
    for images, targets in loader:
        logits.append(model(images.to(device)).float().cpu())
        labels.append(targets)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` counts, row = true class, column = predicted class. Inputs ``(N,)`` ints."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


# --- checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Writes ``state`` atomically: a temporary file in the same folder, fsync, then rename.

    A writer killed at any moment leaves either the previous file or the new one, never a
    truncated mix (``os.replace`` is atomic within a filesystem).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return f"a dict with keys {keys[:8]}{' ...' if len(keys) > 8 else ''}"
    return f"a {type(obj).__name__}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Reads a checkpoint written by :func:`train` with ``weights_only=True`` and checks it.

    Raises :class:`CheckpointError` naming the file and what was expected when it is missing,
    truncated or corrupt, or not a dsm_ref training checkpoint (e.g. a bare state dict).
    """
    path = Path(path)
    expected = (f"a dsm_ref training checkpoint (a dict with format={CHECKPOINT_FORMAT!r}, "
                f"model, optimizer, scheduler, epoch, rng), as written by dsm_ref.train")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; expected {expected}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines()
                       if "WeightsUnpickler error" in line), str(err).splitlines()[0])
        raise CheckpointError(
            f"{path} holds objects that weights_only loading refuses ({reason}); expected "
            f"{expected}. It was not written by dsm_ref, or not for this purpose."
        ) from err
    except Exception as err:  # garbage reaches the unpickler as any of many errors
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}); expected {expected}. "
            f"Use an earlier checkpoint or start again."
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a dsm_ref training checkpoint: found "
                              f"{_describe(state)}; expected {expected}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}; this "
                              f"dsm_ref reads version {CHECKPOINT_VERSION}")
    return state


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


# --- signals -------------------------------------------------------------------------------------

class _StopRequest:
    """SIGINT/SIGTERM set a flag the loop checks after every step; a second signal acts as
    usual (the original handler is back after the first one)."""

    def __init__(self, enabled: bool) -> None:
        self.signum: int | None = None
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> _StopRequest:
        if self.enabled:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --- the loop ------------------------------------------------------------------------------------

class _JsonLines:
    """Appends one JSON object per line to ``path`` (rank 0 only; ``None`` writes nothing)."""

    def __init__(self, path: Path | None, append: bool) -> None:
        self.handle = open(path, "a" if append else "w") if path else None

    def write(self, event: str, **fields: Any) -> None:
        if self.handle:
            self.handle.write(json.dumps({"event": event, "time": round(time.time(), 3),
                                          **fields}) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle:
            self.handle.close()


@dataclass
class _Position:
    """Where the run is: completed epochs, steps into the current one, optimizer steps, and the
    running sums of the current epoch (so a resumed epoch reports the same training metrics)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    top1_sum: float = 0.0
    count: float = 0.0


class _Run:
    """One call of :func:`train`: builds everything, restores a checkpoint, runs the epochs."""

    def __init__(self, config: TrainConfig, model: nn.Module | None, datasets: Datasets | None,
                 on_step_end: Callable[[dict], None] | None,
                 on_epoch_end: Callable[[dict], None] | None, metadata: dict | None) -> None:
        self.config = config.validate()
        self.metadata = dict(metadata or {})
        self.on_step_end, self.on_epoch_end = on_step_end, on_epoch_end
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.proc = _setup_process(config.device)
        try:
            self._setup(config, model, datasets)
        except BaseException:
            self.close()
            raise

    # setup ----------------------------------------------------------------------------------
    def _setup(self, config: TrainConfig, model: nn.Module | None,
               datasets: Datasets | None) -> None:
        self.amp_dtype = _amp_dtype(config.amp, self.proc.device)
        if config.batch_size % self.proc.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                             f"{self.proc.world_size} processes")
        self.local_batch = config.batch_size // self.proc.world_size
        self.out = Path(config.out) if config.out else None
        seed_everything(config.seed)
        self.data = datasets if datasets is not None else self._build_datasets()
        self.base = model if model is not None else build_model(
            config, self.data.num_classes, self.data.img_size)
        self.base.to(self.proc.device)
        if self.proc.rank > 0:
            # Distinct drop-path / MixUp draws per process; DDP broadcasts rank 0's weights.
            seed_everything(config.seed + 7919 * self.proc.rank)
        self._build_loaders()
        self.optimizer = build_optimizer(self.base, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        scaler_device = "cuda" if self.proc.device.type == "cuda" else "cpu"
        self.scaler = torch.amp.GradScaler(scaler_device,
                                           enabled=self.amp_dtype == torch.float16)
        self.ema = self._build_ema()
        self.batch_transform = mixup_cutmix(self.data.num_classes, config.mixup, config.cutmix)
        self.position = _Position()
        self.history: list[dict] = []
        self.resumed_from = self._restore()
        self.model = self._wrap()
        self.trained_images, self.train_time = 0, 0.0

    def _build_datasets(self) -> Datasets:
        """Rank 0 first (it may decode or download), then the others from its cache."""
        config = self.config

        def build() -> Datasets:
            return build_datasets(
                config.data, root=config.data_dir, n_train=config.n_train, n_test=config.n_test,
                img_size=config.img_size, download=config.download, seed=config.seed,
                randaugment_magnitude=config.randaugment, random_erasing=config.random_erasing,
                progress=config.progress and self.proc.is_main)

        if not self.proc.distributed:
            return build()
        data = build() if self.proc.is_main else None
        dist.barrier()
        return data if data is not None else build()

    def _build_loaders(self) -> None:
        config, proc = self.config, self.proc
        self.train_sampler = ShardedSampler(len(self.data.train), rank=proc.rank,
                                            world_size=proc.world_size, seed=config.seed)
        self.test_sampler = ShardedSampler(len(self.data.test), rank=proc.rank,
                                           world_size=proc.world_size, shuffle=False,
                                           drop_last=False)
        common = dict(num_workers=config.num_workers, device=proc.device)
        self.train_loader = _loader(self.data.train, self.train_sampler, self.local_batch,
                                    train=True, **common)
        self.test_loader = _loader(self.data.test, self.test_sampler, self.local_batch,
                                   train=False, **common)
        self.steps_per_epoch = len(self.train_sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set ({len(self.data.train)} images) is smaller than "
                             f"one batch ({config.batch_size}); lower --batch-size")

    def _build_ema(self) -> torch.optim.swa_utils.AveragedModel | None:
        if self.config.ema_decay is None:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        return AveragedModel(self.base, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema_decay),
                             use_buffers=True)

    def _wrap(self) -> nn.Module:
        if not self.proc.distributed:
            return self.base
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
        return DistributedDataParallel(self.base, device_ids=ids)

    # checkpoints ----------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out else None

    def _resume_path(self) -> Path | None:
        resume = self.config.resume
        if not resume:
            return None
        if resume == "auto":
            path = self._checkpoint_path()
            return path if path is not None and path.is_file() else None
        return Path(resume)

    def _check_compatible(self, saved: dict, path: Path) -> None:
        mine = self.config.to_dict()
        for key in _RESUME_MUST_MATCH:
            if saved.get(key) != mine.get(key):
                raise CheckpointError(f"{path} was made with {key}={saved.get(key)!r}; this run "
                                      f"has {key}={mine.get(key)!r}. Resume with the same "
                                      f"settings, or start a new run in another --out.")

    def _restore(self) -> Path | None:
        path = self._resume_path()
        if path is None:
            return None
        state = load_checkpoint(path)  # CPU; load_state_dict moves tensors to the device
        self._check_compatible(state["config"], path)
        try:
            self.base.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{path} holds weights of another architecture: {err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.position = _Position(**state["position"])
        self.history = list(state["history"])
        rng = state["rng"]
        if len(rng) == self.proc.world_size:
            _set_rng_state(rng[self.proc.rank])
        else:  # another number of processes: a fresh, distinct stream per rank
            seed_everything(self.config.seed + 7919 * self.proc.rank + self.position.global_step)
        return path

    def _gather_rng(self) -> list[dict]:
        state = _rng_state()
        if not self.proc.distributed:
            return [state]
        states: list[Any] = [None] * self.proc.world_size
        dist.all_gather_object(states, state)
        return states

    def save(self) -> Path | None:
        """Checkpoint of the current position (all ranks call it: RNG states are gathered)."""
        rng = self._gather_rng()
        path = self._checkpoint_path()
        if path is None or not self.proc.is_main:
            return path
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "model": self.base.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "position": dataclasses.asdict(self.position), "history": self.history,
            "config": self.config.to_dict(), "rng": rng, "world_size": self.proc.world_size,
            "torch_version": str(torch.__version__),
        }
        return save_checkpoint(path, state)

    # training -------------------------------------------------------------------------------
    def _stop_now(self, stop: _StopRequest, steps_this_call: int) -> bool:
        """Signal received or step budget spent, agreed by all processes."""
        limit = self.config.max_steps
        wanted = stop.signum is not None or (limit is not None and steps_this_call >= limit)
        if not self.proc.distributed:
            return wanted
        flag = torch.tensor([float(wanted)], device=self.proc.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step on a local batch ``(b, 3, H, W)``; returns loss and top-1 hits."""
        device, config = self.proc.device, self.config
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        targets = labels
        if self.batch_transform is not None:
            images, targets = self.batch_transform(images, labels)
        with _autocast(device, self.amp_dtype):
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.base.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.base)
        hits = (logits.detach().argmax(-1) == labels).sum()
        return loss.detach(), hits

    def _train_epoch(self, stop: _StopRequest, log: _JsonLines, progress_bar) -> bool:
        """Trains the rest of the current epoch; ``False`` if stopped part-way."""
        from tqdm.auto import tqdm

        pos, config = self.position, self.config
        self.train_sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * self.local_batch)
        _set_epoch(self.data.train, pos.epoch)
        self.model.train()
        remaining = self.steps_per_epoch - pos.step_in_epoch
        bar = tqdm(total=self.steps_per_epoch, initial=pos.step_in_epoch, leave=False,
                   desc=f"epoch {pos.epoch + 1}/{config.epochs}", disable=not progress_bar)
        sums = torch.zeros(3, dtype=torch.float64, device=self.proc.device)
        start, batches = time.perf_counter(), iter(self.train_loader)
        for _ in range(remaining):
            images, labels = next(batches)
            loss, hits = self._step(images, labels)
            sums += torch.stack([loss.double() * len(labels), hits.double(),
                                 torch.tensor(float(len(labels)), device=self.proc.device,
                                              dtype=torch.float64)])
            pos.step_in_epoch += 1
            pos.global_step += 1
            self._steps_this_call += 1
            bar.update()
            self._after_step(loss, log, bar)
            if pos.step_in_epoch < self.steps_per_epoch and self._stop_now(
                    stop, self._steps_this_call):
                self._account(sums, start)
                bar.close()
                return False
        bar.close()
        self._account(sums, start)
        return True

    def _account(self, sums: Tensor, start: float) -> None:
        """Adds the epoch's sums (all-reduced over processes) and time to the position."""
        if self.proc.device.type == "cuda":
            torch.cuda.synchronize(self.proc.device)
        elapsed = time.perf_counter() - start
        if self.proc.distributed:
            dist.all_reduce(sums)
        loss_sum, top1, count = sums.tolist()
        self.position.loss_sum += loss_sum
        self.position.top1_sum += top1
        self.position.count += count
        self._epoch_time, self._epoch_images = elapsed, int(count)
        self.trained_images += int(count)
        self.train_time += elapsed

    def _after_step(self, loss: Tensor, log: _JsonLines, bar) -> None:
        pos = self.position
        every = pos.global_step % self.config.log_every == 0
        if not (every or self.on_step_end):
            return
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at epoch {pos.epoch + 1}, step "
                                     f"{pos.step_in_epoch}: lower --lr or check the data")
        row = {"epoch": pos.epoch + pos.step_in_epoch / self.steps_per_epoch,
               "step": pos.global_step, "loss": value, "lr": self.scheduler.get_last_lr()[0]}
        if every:
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{row['lr']:.2e}")
            log.write("step", **row)
        if self.on_step_end and self.proc.is_main:
            self.on_step_end(row)

    def _evaluate(self) -> dict[str, float]:
        device = self.proc.device
        models = [("test_", self.base)]
        if self.ema is not None:
            models.append(("ema_test_", self.ema.module))
        metrics: dict[str, float] = {}
        for prefix, model in models:
            model.eval()
            sums = _evaluate_sums(model, self.test_loader, device, self.amp_dtype)
            if self.proc.distributed:
                dist.all_reduce(sums)
            metrics.update(_metrics_from_sums(sums, prefix))
            model.train()
        return metrics

    def _finish_epoch(self, log: _JsonLines, started: float) -> dict:
        pos = self.position
        count = max(pos.count, 1.0)
        row = {"epoch": pos.epoch + 1, "train_loss": pos.loss_sum / count,
               "train_top1": 100.0 * pos.top1_sum / count, **self._evaluate(),
               "lr": self.scheduler.get_last_lr()[0],
               "train_images_per_s": self._epoch_images / max(self._epoch_time, 1e-9),
               "epoch_time_s": self._epoch_time, "elapsed_s": time.perf_counter() - started}
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"training loss is {row['train_loss']} in epoch "
                                     f"{pos.epoch + 1}: lower --lr or check the data")
        self.history.append(row)
        self.position = _Position(epoch=pos.epoch + 1, global_step=pos.global_step)
        log.write("epoch", **row)
        return row

    def _print(self, message: str) -> None:
        if self.config.progress and self.proc.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message)

    def run(self) -> TrainResult:
        config, proc = self.config, self.proc
        started = time.perf_counter()
        writes = self.out is not None and proc.is_main
        if writes:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.resumed_from is None and (self.out / CHECKPOINT_NAME).is_file():
                self._print(f"{self.out / CHECKPOINT_NAME} exists: starting a new run over it "
                            f"(pass --resume to continue it)")
        log = _JsonLines(self.out / "log.jsonl" if writes else None,
                         append=self.resumed_from is not None)
        log.write("resume" if self.resumed_from else "start", **self.metadata,
                  config=config.to_dict(),
                  position=dataclasses.asdict(self.position), world_size=proc.world_size,
                  data=repr(self.data), device=str(proc.device))
        if self.resumed_from:
            self._print(f"resumed from {self.resumed_from} at epoch {self.position.epoch + 1}, "
                        f"step {self.position.step_in_epoch}/{self.steps_per_epoch}")
        self._steps_this_call, interrupted, checkpoint, saved = 0, False, None, False
        with _StopRequest(config.handle_signals) as stop:
            while self.position.epoch < config.epochs:
                self._epoch_time, self._epoch_images, saved = 0.0, 0, False
                if not self._train_epoch(stop, log, config.progress and proc.is_main):
                    interrupted = True
                    break
                row = self._finish_epoch(log, started)
                self._print(_format_row(row, config.epochs))
                if self.on_epoch_end and proc.is_main:
                    self.on_epoch_end(row)
                last = self.position.epoch == config.epochs
                saved = config.save_every and (last or self.position.epoch % config.save_every == 0)
                if saved:
                    checkpoint = self.save()
                if not last and self._stop_now(stop, self._steps_this_call):
                    interrupted = True
                    break
        if interrupted:
            checkpoint = checkpoint if saved else self.save()
            reason = f"signal {stop.signum}" if stop.signum else f"max_steps={config.max_steps}"
            log.write("interrupted", reason=reason, position=dataclasses.asdict(self.position))
            if checkpoint and proc.is_main:
                self._print(f"stopped ({reason}); saved {checkpoint}: continue with --resume")
        result = self._result(started, interrupted, checkpoint, stop.signum)
        log.write("end", final=result.final, wall_time_s=result.wall_time_s)
        log.close()
        if writes:
            summary = {**self.metadata, **result.summary()}
            (self.out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
        return result

    def _result(self, started: float, interrupted: bool, checkpoint: Path | None,
                signum: int | None) -> TrainResult:
        final = dict(self.history[-1]) if self.history else {}
        if self.history:
            final["best_test_top1"] = max(row["test_top1"] for row in self.history)
        return TrainResult(
            model=self.base, ema_model=self.ema.module if self.ema is not None else None,
            config=self.config, history=self.history, final=final,
            wall_time_s=time.perf_counter() - started,
            train_images_per_s=self.trained_images / max(self.train_time, 1e-9),
            epochs_completed=self.position.epoch, global_step=self.position.global_step,
            interrupted=interrupted, num_params=sum(p.numel() for p in self.base.parameters()),
            checkpoint_path=str(checkpoint) if checkpoint else None, stop_signal=signum,
        )

    def close(self) -> None:
        if self.proc.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _format_row(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.3f}  "
            f"top-1 {row['train_top1']:5.1f}%  |  test loss {row['test_loss']:.3f}  "
            f"top-1 {row['test_top1']:5.1f}%  top-5 {row['test_top5']:5.1f}%")
    if "ema_test_top1" in row:
        text += f"  ema top-1 {row['ema_test_top1']:5.1f}%"
    return text + f"  |  {row['train_images_per_s']:.3g} img/s, {row['epoch_time_s']:.0f} s"


def train(
    config: TrainConfig,
    model: nn.Module | None = None,
    datasets: Datasets | None = None,
    *,
    on_step_end: Callable[[dict], None] | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    metadata: dict | None = None,
) -> TrainResult:
    """Trains ``model`` (default ``build_model(config, ...)``) on ``datasets`` (default
    ``build_datasets(config.data, ...)``) and returns a :class:`TrainResult`.

    ``datasets.train[i] -> ((3, H, W) float, int)``; a ``set_epoch`` method, if present, is
    called every epoch. ``on_step_end(row)`` gets ``{"epoch", "step", "loss", "lr"}`` after each
    step (it costs a device sync), ``on_epoch_end(row)`` the epoch's metrics; both run on rank 0
    only. ``metadata``: extra JSON-able fields for ``metrics.json`` and the log (the CLI
    records its command line). ``config.out=None`` writes no files; ``config.progress=False``
    prints nothing.
    Deterministic on CPU for a given ``config.seed`` (and thread count).
    """
    run = _Run(config, model, datasets, on_step_end, on_epoch_end, metadata)
    try:
        return run.run()
    finally:
        run.close()


# --- command line --------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _dataset_name(text: str) -> str:
    if text == "spectral" or text in DATASETS:
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from "
                                     f"{', '.join(DATASETS)} (or 'spectral')")


_CLI_EPILOG = """examples:
  python -m dsm_ref train --model dsm_micro --data cifar10 --epochs 5 --out runs/x
  python -m dsm_ref train --out runs/x --resume            # continue runs/x/checkpoint.pt
  python -m dsm_ref train --data spectral/band_shift --n-train 4000 --epochs 10 --out runs/s
  torchrun --nproc_per_node=8 -m dsm_ref train --preset imagenet-dsm_s \\
      --data-dir /data/imagenet --out runs/dsm_s_in1k     # the ImageNet recipe on 8 GPUs
CIFAR-10 is read from $DSM_DATA_DIR (see `python -m dsm_ref info`); --download fetches it.
--batch-size is the global batch, split over torchrun's processes."""


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m dsm_ref train``; unset options keep the preset's or the default
    :class:`TrainConfig` value."""
    parser.epilog = _CLI_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    unset = argparse.SUPPRESS
    what = parser.add_argument_group("what to train")
    what.add_argument("--preset", choices=sorted(PRESETS), default=unset,
                      help="a recipe (other options override it): " + ", ".join(PRESETS))
    what.add_argument("--model", choices=list_models(), default=unset, help="default dsm_micro")
    what.add_argument("--data", type=_dataset_name, default=unset,
                      help=f"{', '.join(DATASETS)} (default cifar10)")
    what.add_argument("--data-dir", dest="data_dir", default=unset,
                      help="data folder (default $DSM_DATA_DIR); for imagenet: the folder "
                           "holding train/ and val/")
    what.add_argument("--download", action="store_true", default=unset,
                      help="download CIFAR-10 with torchvision if no local copy is found")
    what.add_argument("--n-train", dest="n_train", type=_positive_int, default=unset,
                      help="class-balanced training subset")
    what.add_argument("--n-test", dest="n_test", type=_positive_int, default=unset)
    what.add_argument("--img-size", dest="img_size", type=_positive_int, default=unset)
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_positive_int, default=unset)
    opt.add_argument("--batch-size", dest="batch_size", type=_positive_int, default=unset,
                     help="global batch size (default 128)")
    opt.add_argument("--lr", type=_positive_float, default=unset, help="peak learning rate")
    opt.add_argument("--min-lr", dest="min_lr", type=_non_negative_float, default=unset)
    opt.add_argument("--warmup-epochs", dest="warmup_epochs", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--weight-decay", dest="weight_decay", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--grad-clip", dest="grad_clip", type=_non_negative_float, default=unset,
                     help="max gradient norm, 0 disables")
    opt.add_argument("--label-smoothing", dest="label_smoothing", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--mixup", type=_non_negative_float, default=unset, help="MixUp alpha")
    opt.add_argument("--cutmix", type=_non_negative_float, default=unset, help="CutMix alpha")
    opt.add_argument("--randaugment", type=_non_negative_int, default=unset,
                     help="RandAugment magnitude (imagenet), 0 disables")
    opt.add_argument("--random-erasing", dest="random_erasing", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--drop-path", dest="drop_path", type=_non_negative_float, default=unset)
    opt.add_argument("--ema", dest="ema_decay", type=_positive_float, default=unset,
                     help="EMA decay of the weights, e.g. 0.9998")
    run = parser.add_argument_group("running")
    run.add_argument("--amp", choices=AMP_MODES, default=unset,
                     help="auto: bf16 (or fp16) on CUDA, none on CPU")
    run.add_argument("--device", default=unset, help="cuda, cuda:1, mps or cpu")
    run.add_argument("--seed", type=int, default=unset)
    run.add_argument("--threads", dest="num_threads", type=_positive_int, default=unset,
                     help="torch CPU threads of this process (default: torch's choice); 1 on a "
                          "shared or busy CPU")
    run.add_argument("--workers", dest="num_workers", type=_non_negative_int, default=unset,
                     help="DataLoader workers (default 0: in-memory data needs none)")
    run.add_argument("--out", default=unset,
                     help="run folder: checkpoint.pt, log.jsonl, metrics.json "
                          "(default runs/<model>-<data>)")
    run.add_argument("--resume", nargs="?", const="auto", default=unset,
                     help="continue from <out>/checkpoint.pt, or from the given file")
    run.add_argument("--save-every", dest="save_every", type=_non_negative_int, default=unset,
                     help="checkpoint every N epochs (default 1; 0: only at the end/on a signal)")
    run.add_argument("--log-every", dest="log_every", type=_positive_int, default=unset)
    run.add_argument("--max-steps", dest="max_steps", type=_positive_int, default=unset,
                     help="stop (with a checkpoint) after N steps: for smoke tests")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=unset)
    run.add_argument("--print-config", dest="print_config", action="store_true",
                     help="print the resolved configuration as JSON and exit")
    # dest -> (flag, value it stores without an argument), to record the command of a run
    for action in parser._actions:
        if action.option_strings and action.dest in {f.name for f in dataclasses.fields(
                TrainConfig)} | {"preset"}:
            _FLAGS[action.dest] = (action.option_strings[0], action.const)


_FLAGS: dict[str, tuple[str, Any]] = {}


def command_line(args: argparse.Namespace) -> str:
    """The ``python -m dsm_ref train ...`` options given in ``args`` (recorded in metrics.json)."""
    parts = ["python -m dsm_ref train"]
    for dest, value in vars(args).items():
        if dest not in _FLAGS:
            continue
        flag, const = _FLAGS[dest]
        if isinstance(value, bool) or value == const:
            parts.append(flag)  # a switch: --download, --no-progress, --resume
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Default :class:`TrainConfig` < ``--preset`` < the options given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = dict(PRESETS[args.preset]) if getattr(args, "preset", None) else {}
    values.update({k: v for k, v in vars(args).items() if k in names})
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    if values.get("randaugment") == 0:
        values["randaugment"] = None
    if "out" not in values:
        data = values.get("data", TrainConfig.data).replace("/", "-")
        values["out"] = str(Path("runs") / f"{values.get('model', TrainConfig.model)}-{data}")
    return TrainConfig(**values)


def cli_main(args: argparse.Namespace) -> int:
    """``python -m dsm_ref train``: 0 done, 1 data/checkpoint error, 2 bad options,
    ``128 + signal`` when stopped by SIGINT/SIGTERM (after saving a checkpoint)."""
    try:
        config = config_from_args(args).validate()
    except (TypeError, ValueError) as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 2
    if getattr(args, "print_config", False):
        print(json.dumps(config.to_dict(), indent=1))
        return 0
    try:
        result = train(config, metadata={"command": command_line(args)})
    except (DataError, CheckpointError) as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 128 + result.stop_signal if result.stop_signal else 0
    if int(os.environ.get("RANK", "0")) == 0:
        final = result.final
        print(f"done: test top-1 {final.get('test_top1', float('nan')):.2f}% after "
              f"{result.epochs_completed} epochs, {result.wall_time_s:.0f} s, "
              f"{result.train_images_per_s:.3g} train img/s; wrote {config.out}/metrics.json")
    return 0
