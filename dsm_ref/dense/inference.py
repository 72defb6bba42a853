"""Evaluating and running a dense model outside :func:`dsm_ref.train.train`, with the one
implementation the trainer's segmentation and detection tasks use too.

- :func:`evaluate_dense`: test metrics of a model over a loader (segmentation: per-pixel loss,
  mIoU and pixel accuracy; detection: COCO box mAP and mAP@50), in percent as the trainer logs
  them. It sets eval mode and the device, then calls :func:`evaluate_segmentation` or
  :func:`evaluate_detection`, which the trainer calls directly (the model already in eval mode,
  on its device, and a hook to all-reduce across processes).
- :func:`predict_dense`: class maps ``(B, H, W)`` at the input size, or torchvision's detections.

The metrics are :mod:`dsm_ref.dense.metrics` (torchmetrics, imported when a function runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from ..checks import check_choice
from .factory import TASKS
from .segmentation import SemanticFPN

__all__ = ["dense_task", "segmentation_loss", "move_detection_batch", "evaluate_segmentation",
           "evaluate_detection", "evaluate_dense", "predict_dense"]

_NO_IGNORE = -100  # F.cross_entropy's default ignore_index
_DETECTORS = (RetinaNet, FCOS, GeneralizedRCNN)  # GeneralizedRCNN: Faster R-CNN and its kin


def dense_task(model: nn.Module) -> str:
    """``"segment"`` for a :class:`~dsm_ref.dense.segmentation.SemanticFPN`, ``"detect"`` for a
    torchvision RetinaNet, FCOS or R-CNN; ``ValueError`` for another model (pass ``task=``)."""
    if isinstance(model, SemanticFPN):
        return "segment"
    if isinstance(model, _DETECTORS):
        return "detect"
    raise ValueError(f"cannot tell the task of a {type(model).__name__}; pass task='segment' "
                     "(logits (B, K, H, W)) or task='detect' (a torchvision detector)")


def segmentation_loss(logits: Tensor, masks: Tensor, ignore_index: int | None = None,
                      label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the pixels of ``logits (B, K, H, W)`` (cast to float32) against
    ``masks (B, H, W)``; pixels whose target is ``ignore_index`` count nowhere."""
    return F.cross_entropy(logits.float(), masks,
                           ignore_index=_NO_IGNORE if ignore_index is None else ignore_index,
                           label_smoothing=label_smoothing)


def move_detection_batch(images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]],
                         device: torch.device) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """A detection batch (lists, as :func:`~dsm_ref.data.collate_detection` gives) on
    ``device``."""
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{key: value.to(device, non_blocking=True) for key, value in target.items()}
               for target in targets]
    return images, targets


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def _percent(value: Tensor) -> float:
    """A torchmetrics score in [0, 1] as percent; -1 (undefined: no target box) stays -1."""
    value = float(value)
    return 100.0 * value if value >= 0 else value


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, loader: Iterable, *, num_classes: int,
                          ignore_index: int | None = None, device: torch.device,
                          amp_dtype: torch.dtype | None = None,
                          all_reduce: Callable[[Tensor], Any] | None = None) -> dict[str, float]:
    """``{"loss", "miou", "pixel_accuracy"}`` of ``model`` (already in eval mode, on ``device``)
    over batches ``(images (B, 3, H, W), masks (B, H, W) int64)``.

    ``loss``: the per-pixel cross-entropy, averaged over images; ``miou`` and
    ``pixel_accuracy``: percent, from the counts summed over every pixel
    (:func:`~dsm_ref.dense.metrics.segmentation_metrics`). ``all_reduce`` (e.g.
    ``torch.distributed.all_reduce``) sums the loss over processes; torchmetrics gathers its
    counts itself when a process group is up.
    """
    from .metrics import segmentation_metrics

    metrics = segmentation_metrics(num_classes, ignore_index).to(device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * images, images
    for images, masks in loader:
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        loss = segmentation_loss(logits, masks, ignore_index)
        sums += torch.stack([loss.double() * len(masks),
                             torch.tensor(len(masks), dtype=torch.float64, device=device)])
        metrics.update(logits.argmax(1), masks)
    if all_reduce is not None:
        all_reduce(sums)
    scores = metrics.compute()
    return {"loss": (sums[0] / sums[1].clamp_min(1)).item(),
            "miou": 100.0 * float(scores["miou"]),
            "pixel_accuracy": 100.0 * float(scores["pixel_accuracy"])}


@torch.no_grad()
def evaluate_detection(model: nn.Module, loader: Iterable, *, device: torch.device,
                       amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """``{"map", "map_50"}`` (percent; -1 where undefined) of a torchvision detector (already in
    eval mode, on ``device``) over batches ``([images (3, H, W)], [{"boxes", "labels"}])``
    (:func:`~dsm_ref.dense.metrics.detection_metric`; torchmetrics gathers the other processes'
    boxes when a process group is up). No loss: a torchvision detector computes its losses in
    train mode only."""
    from .metrics import detection_metric

    metric = detection_metric().to(device)
    for images, targets in loader:
        images, targets = move_detection_batch(images, targets, device)
        with _autocast(device, amp_dtype):
            detections = model(images)
        metric.update([{key: value.float() if key != "labels" else value
                        for key, value in found.items()} for found in detections], targets)
    scores = metric.compute()
    return {"map": _percent(scores["map"]), "map_50": _percent(scores["map_50"])}


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` (the model is moved there), else the device of the model's parameters."""
    if device is not None:
        device = torch.device(device)
        model.to(device)
        return device
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def evaluate_dense(model: nn.Module, loader: Iterable, *, task: str | None = None,
                   num_classes: int | None = None, ignore_index: int | None = None,
                   device: str | torch.device | None = None,
                   amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Test metrics of a dense ``model`` over ``loader``, in eval mode (its mode is restored).

    - ``task="segment"``: ``{"loss", "miou", "pixel_accuracy"}`` (:func:`evaluate_segmentation`),
      batches ``(images (B, 3, H, W), masks (B, H, W))``; ``num_classes`` defaults to the
      model's ``num_classes``, ``ignore_index`` to the dataset's (``loader.dataset.ignore_index``,
      e.g. 255 for ADE20K), else none.
    - ``task="detect"``: ``{"map", "map_50"}`` (:func:`evaluate_detection`), batches of lists
      (``DataLoader(..., collate_fn=dsm_ref.data.collate_detection)``).

    ``task`` defaults to :func:`dense_task` of the model; ``device`` to the model's (given, the
    model is moved there); ``amp_dtype``: autocast to that dtype (``None``: float32).
    The numbers are those :func:`dsm_ref.train.train` logs as ``test_*``.
    """
    if isinstance(loader, Dataset):
        raise ValueError("expected a DataLoader (batches), got a Dataset: wrap it as "
                         "DataLoader(dataset, batch_size=..., collate_fn=collate_detection for "
                         "detection)")
    task = dense_task(model) if task is None else check_choice("task", task, TASKS)
    device = _model_device(model, device)
    with _eval_mode(model):
        if task == "detect":
            return evaluate_detection(model, loader, device=device, amp_dtype=amp_dtype)
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
            if num_classes is None:
                raise ValueError(f"pass num_classes: a {type(model).__name__} does not say "
                                 "how many classes it predicts")
        if ignore_index is None:
            ignore_index = getattr(getattr(loader, "dataset", None), "ignore_index", None)
        return evaluate_segmentation(model, loader, num_classes=num_classes,
                                     ignore_index=ignore_index, device=device,
                                     amp_dtype=amp_dtype)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block; its train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_dense(model: nn.Module, images: Tensor | Sequence[Tensor], *, task: str | None = None,
                  device: str | torch.device | None = None,
                  amp_dtype: torch.dtype | None = None) -> Tensor | list[dict[str, Tensor]]:
    """Predictions of a dense ``model`` in eval mode (its mode is restored), on the CPU.

    - ``task="segment"``: ``images (B, 3, H, W)`` -> class map ``(B, H, W)`` int64, the argmax of
      the logits, which are first resized (bilinear) to ``(H, W)`` if the model gives another
      size (a :class:`~dsm_ref.dense.segmentation.SemanticFPN` gives ``(H, W)`` already).
    - ``task="detect"``: ``images`` a list of ``(3, H, W)`` (or a ``(B, 3, H, W)`` batch) ->
      one dict per image, ``{"boxes" (N, 4) float32 x1, y1, x2, y2 in its pixels, "scores" (N,),
      "labels" (N,) int64}``, as torchvision's detector returns them.

    ``task``, ``device``, ``amp_dtype``: as for :func:`evaluate_dense`.
    """
    task = dense_task(model) if task is None else check_choice("task", task, TASKS)
    device = _model_device(model, device)
    with _eval_mode(model):
        if task == "detect":
            batch = list(images.unbind(0) if isinstance(images, Tensor) and images.ndim == 4
                         else images)
            with _autocast(device, amp_dtype):
                found = model([image.to(device) for image in batch])
            return [{key: (value if key == "labels" else value.float()).cpu()
                     for key, value in detections.items()} for detections in found]
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"expected an image batch (B, 3, H, W) for segmentation, got "
                             f"{shape}")
        with _autocast(device, amp_dtype):
            logits = model(images.to(device))
        logits = logits.float()
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return logits.argmax(1).cpu()
