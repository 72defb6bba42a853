"""Evaluation: loss and top-1/top-5 accuracy (:func:`evaluate`), all logits in order
(:func:`predict`), and the confusion matrix. :func:`dsm_ref.train.train` evaluates each process's
shard with :func:`_evaluate_sums` and all-reduces the sums."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..utils import pick_device
from .runtime import ShardedSampler, _amp_dtype, _autocast, _loader

__all__ = ["evaluate", "predict", "confusion_matrix"]


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

