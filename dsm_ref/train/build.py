"""What a config builds: the model, the AdamW optimizer and the per-step cosine lr schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import create_model, weight_decay_groups
from .config import TrainConfig

__all__ = ["build_model", "build_dense_model", "build_optimizer", "build_scheduler",
           "cosine_lr_factor"]


def build_model(config: TrainConfig, num_classes: int, img_size: int) -> nn.Module:
    """``create_model(config.model)`` for this data: ``(B, 3, S, S) -> (B, num_classes)``; for
    ``config.task`` ``"segment"`` or ``"detect"``, :func:`build_dense_model`."""
    if config.task != "classify":
        return build_dense_model(config, num_classes, img_size)
    options = dict(config.model_options)
    options.setdefault("num_classes", num_classes)
    options.setdefault("img_size", img_size)
    if config.drop_path is not None:
        options["drop_path_rate"] = config.drop_path
    return create_model(config.model, **options)


def build_dense_model(config: TrainConfig, num_classes: int, img_size: int) -> nn.Module:
    """``create_dense_model(config.model, config.task, num_classes, ...)``: the model options
    ``token_mixer``, ``mixer_options`` and the dense model's own (``detector``,
    ``neck_channels``, ...) go to it, the others to the backbone (``dims``, ``depths``, ...);
    ``img_size`` is the data's unless a model option names one; ``config.drop_path`` is the
    backbone's ``drop_path_rate``. ``num_classes`` counts the background where the data has one
    (detection: index 0, as torchvision's detectors expect)."""
    from ..dense import create_dense_model  # torchvision's detectors: only for dense tasks

    options = dict(config.model_options)
    options.setdefault("img_size", img_size)
    if config.drop_path is not None:
        options["drop_path_rate"] = config.drop_path
    return create_dense_model(config.model, config.task, num_classes, **options)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`weight_decay_groups`: no decay on spectral weights, norms, biases."""
    groups = weight_decay_groups(model, config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def cosine_lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_factor: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Linear warmup ``(step + 1) / warmup_steps``, then a half cosine from 1 to ``min_factor``
    at ``total_steps``. paper: cosine decay (DESIGN.md section 1) / ours: the linear warmup before
    it (common practice since DeiT), updated every step rather than every epoch / why: warmup
    guards the first steps; short CPU runs have few epochs, and a per-step schedule does not jump
    at epoch boundaries.
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

