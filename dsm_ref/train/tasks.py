"""What differs between the tasks the one loop trains: the batch on the device, the loss of a
step, the test metrics and the line printed per epoch. :func:`make_task` gives the
:class:`Task` of ``TrainConfig.task``; everything else (optimizer, schedule, AMP, checkpoints,
resume, DDP, logs) is the same loop for all three.

- ``"classify"``: ``(image, label)`` samples; cross-entropy (with label smoothing and, through the
  loop's batch transform, MixUp/CutMix); ``test_loss``, ``test_top1``, ``test_top5`` (percent).
- ``"segment"``: ``(image, mask (H, W))`` samples; cross-entropy over pixels (pixels whose target
  is the data's ``ignore_index``, if it has one, count nowhere); ``test_loss`` (per pixel),
  ``test_miou`` and ``test_pixel_accuracy`` (percent, :mod:`dsm_ref.dense.metrics`: the counts
  summed over every pixel of the test set). The training accuracy is
  ``train_pixel_accuracy``, the mean over images of their pixel accuracy.
- ``"detect"``: ``(image, {"boxes", "labels"})`` samples batched as lists
  (:func:`~dsm_ref.data.collate_detection`); the loss is the sum of the torchvision detector's
  loss dict (train mode); ``test_map`` and ``test_map_50`` (COCO box mAP in percent, -1 where
  undefined, from the detections of eval mode). No test loss: a torchvision detector computes
  its losses in train mode only.

Under DDP, the classification sums and the dense losses are all-reduced; the torchmetrics metrics
gather their states across processes when they compute. The dense test metrics, loss and batch
moves are :mod:`dsm_ref.dense.inference`'s, the code :func:`dsm_ref.dense.evaluate_dense` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data import Datasets, collate_detection, datasets_task
from .evaluation import _evaluate_sums, _metrics_from_sums
from .runtime import _autocast

__all__ = ["Task", "make_task", "METRIC_LABELS"]

# How tables and plots name the test metrics the tasks log (percent).
METRIC_LABELS = {"test_top1": "top-1 %", "test_miou": "mIoU %",
                 "test_pixel_accuracy": "pixel acc. %", "test_map": "mAP %",
                 "test_map_50": "mAP@50 %"}


class Task:
    """Classification, and the interface of every task.

    ``headline``: the test metric whose best value :class:`~dsm_ref.train.TrainResult` reports
    (``best_<headline>``); ``train_metric``: the name under which the running accuracy the loop
    sums (``hits`` of :meth:`step_loss`, per sample) is logged, ``None`` for none; ``collate``:
    the loaders' ``collate_fn``.
    """

    name = "classify"
    headline = "test_top1"
    train_metric: str | None = "train_top1"
    collate: Callable | None = None

    def __init__(self, data: Datasets) -> None:
        self.num_classes = data.num_classes

    def to_device(self, images: Any, targets: Any, device: torch.device) -> tuple[Any, Any]:
        return (images.to(device, non_blocking=True), targets.to(device, non_blocking=True))

    def step_loss(self, model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor,
                  device: torch.device, amp_dtype: torch.dtype | None,
                  label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Loss of one training batch, and the number of correct samples in it (``hits``).
        ``targets``: ``labels`` after the loop's batch transform (MixUp/CutMix soft targets)."""
        with _autocast(device, amp_dtype):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        hits = (logits.detach().argmax(-1) == labels).sum()
        return loss, hits

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device,
                 amp_dtype: torch.dtype | None, distributed: bool,
                 prefix: str) -> dict[str, float]:
        """Test metrics of ``model`` (in eval mode) over this process's share, all processes'
        shares combined; keys start with ``prefix`` (``"test_"``, ``"ema_test_"``)."""
        sums = _evaluate_sums(model, loader, device, amp_dtype)
        if distributed:
            dist.all_reduce(sums)
        return _metrics_from_sums(sums, prefix)

    def format_row(self, row: dict, epochs: int) -> str:
        text = (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.3f}  "
                f"top-1 {row['train_top1']:5.1f}%  |  test loss {row['test_loss']:.3f}  "
                f"top-1 {row['test_top1']:5.1f}%  top-5 {row['test_top5']:5.1f}%")
        if "ema_test_top1" in row:
            text += f"  ema top-1 {row['ema_test_top1']:5.1f}%"
        return text + _speed(row)


def _speed(row: dict) -> str:
    return f"  |  {row['train_images_per_s']:.3g} img/s, {row['epoch_time_s']:.0f} s"


def _ignore_index(data: Datasets) -> int | None:
    """The target value that marks pixels to ignore: ``data.info["ignore_index"]``, else the
    training set's ``ignore_index`` attribute, else ``None`` (every pixel counts)."""
    if "ignore_index" in data.info:
        return data.info["ignore_index"]
    return getattr(data.train, "ignore_index", None)


class SegmentTask(Task):
    """Per-pixel classification: logits ``(B, K, H, W)`` against masks ``(B, H, W)``."""

    name = "segment"
    headline = "test_miou"
    train_metric = "train_pixel_accuracy"

    def __init__(self, data: Datasets) -> None:
        super().__init__(data)
        self.ignore_index = _ignore_index(data)

    def step_loss(self, model, images, labels, targets, device, amp_dtype, label_smoothing):
        from ..dense.inference import segmentation_loss

        with _autocast(device, amp_dtype):
            logits = model(images)
        loss = segmentation_loss(logits, labels, self.ignore_index, label_smoothing)
        valid = (torch.ones_like(labels, dtype=torch.bool) if self.ignore_index is None
                 else labels != self.ignore_index)
        correct = ((logits.detach().argmax(1) == labels) & valid).sum(dim=(1, 2))
        hits = (correct / valid.sum(dim=(1, 2)).clamp_min(1)).sum()  # per-image accuracies
        return loss, hits

    def evaluate(self, model, loader, device, amp_dtype, distributed, prefix):
        from ..dense.inference import evaluate_segmentation

        scores = evaluate_segmentation(model, loader, num_classes=self.num_classes,
                                       ignore_index=self.ignore_index, device=device,
                                       amp_dtype=amp_dtype,
                                       all_reduce=dist.all_reduce if distributed else None)
        return {f"{prefix}{key}": value for key, value in scores.items()}

    def format_row(self, row: dict, epochs: int) -> str:
        text = (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.3f}  "
                f"pixel acc {row['train_pixel_accuracy']:5.1f}%  |  test loss "
                f"{row['test_loss']:.3f}  mIoU {row['test_miou']:5.1f}%  pixel acc "
                f"{row['test_pixel_accuracy']:5.1f}%")
        if "ema_test_miou" in row:
            text += f"  ema mIoU {row['ema_test_miou']:5.1f}%"
        return text + _speed(row)


class DetectTask(Task):
    """A torchvision detector: ``model(images, targets) -> {loss: scalar}`` in train mode,
    ``model(images) -> [{"boxes", "scores", "labels"}]`` in eval mode."""

    name = "detect"
    headline = "test_map"
    train_metric = None
    collate = staticmethod(collate_detection)

    def to_device(self, images, targets, device):
        from ..dense.inference import move_detection_batch

        return move_detection_batch(images, targets, device)

    def step_loss(self, model, images, labels, targets, device, amp_dtype, label_smoothing):
        with _autocast(device, amp_dtype):
            losses = model(images, labels)
        loss = torch.stack([value.float() for value in losses.values()]).sum()
        return loss, torch.zeros((), device=device)

    def evaluate(self, model, loader, device, amp_dtype, distributed, prefix):
        from ..dense.inference import evaluate_detection

        scores = evaluate_detection(model, loader, device=device, amp_dtype=amp_dtype)
        return {f"{prefix}{key}": value for key, value in scores.items()}

    def format_row(self, row: dict, epochs: int) -> str:
        text = (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.3f}  |  "
                f"test mAP {row['test_map']:5.1f}%  mAP@50 {row['test_map_50']:5.1f}%")
        if "ema_test_map" in row:
            text += f"  ema mAP {row['ema_test_map']:5.1f}%"
        return text + _speed(row)


TASK_TYPES: dict[str, type[Task]] = {"classify": Task, "segment": SegmentTask,
                                     "detect": DetectTask}


def make_task(name: str, data: Datasets) -> Task:
    """The :class:`Task` ``name`` for ``data``; ``ValueError`` when ``data`` holds samples of
    another task (:func:`dsm_ref.data.datasets_task`; data of a type it does not know
    is not checked)."""
    if name not in TASK_TYPES:
        raise ValueError(f"unknown task {name!r}; expected one of: {', '.join(TASK_TYPES)}")
    holds = datasets_task(data)
    if holds is not None and holds != name:
        raise ValueError(f"task {name!r} does not match the datasets given ({data.name!r}, "
                         f"{type(data.train).__name__} samples for task {holds!r})")
    return TASK_TYPES[name](data)
