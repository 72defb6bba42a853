"""Dense-prediction scores through torchmetrics: mIoU and pixel accuracy for segmentation, COCO
mAP and mAP@50 for detection. Each comes as a stateful metric (``update`` per batch, ``compute``
at the end of an epoch) and as a one-shot function."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

__all__ = ["segmentation_metrics", "segmentation_scores", "detection_metric",
           "detection_scores"]


def segmentation_metrics(num_classes: int, ignore_index: int | None = None) -> MetricCollection:
    """Stateful segmentation metrics; ``update(preds, target)`` with ``preds`` class indices
    ``(B, H, W)`` (or logits ``(B, K, H, W)``) and ``target`` ``(B, H, W)`` int64.

    ``compute()`` gives:

    - ``"miou"``: mean over classes of ``IoU_c = TP / (TP + FP + FN)``, the counts summed over
      every pixel of the data set (``JaccardIndex``, ``average="macro"``); a class with no pixel
      in either prediction or target is left out of the mean (mmsegmentation's ADE20K mIoU).
      Not torchmetrics' ``segmentation.MeanIoU``, which averages per-image IoUs.
    - ``"iou_per_class"``: ``(K,)``, NaN for the classes left out.
    - ``"pixel_accuracy"``: correct pixels / pixels (``Accuracy``, ``average="micro"``).

    Pixels whose target is ``ignore_index`` count nowhere.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MetricCollection({
        "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index),
        "iou_per_class": MulticlassJaccardIndex(num_classes, average="none",
                                                ignore_index=ignore_index,
                                                zero_division=float("nan")),
        "pixel_accuracy": MulticlassAccuracy(num_classes, average="micro",
                                             ignore_index=ignore_index),
    }, compute_groups=False)


def _as_indices(preds: Tensor, target: Tensor) -> Tensor:
    if preds.ndim == target.ndim + 1:  # logits (B, K, H, W)
        return preds.argmax(dim=1)
    if preds.shape != target.shape:
        raise ValueError(f"expected preds (B, H, W) class indices or (B, K, H, W) logits for "
                         f"a target {tuple(target.shape)}, got {tuple(preds.shape)}")
    return preds


def segmentation_scores(preds: Tensor, target: Tensor, num_classes: int,
                        ignore_index: int | None = None) -> dict[str, Tensor]:
    """:func:`segmentation_metrics` over one set of predictions: ``{"miou": (), "iou_per_class":
    (K,), "pixel_accuracy": ()}`` tensors."""
    metrics = segmentation_metrics(num_classes, ignore_index)
    metrics.update(_as_indices(preds, target), target)
    return metrics.compute()


def detection_metric(**options) -> MeanAveragePrecision:
    """Stateful COCO box mAP (``MeanAveragePrecision``, ``box_format="xyxy"``, pycocotools).

    ``update(preds, targets)``: per image, ``preds`` dicts ``{"boxes" (N, 4), "scores" (N,),
    "labels" (N,)}`` (what torchvision's detectors return in eval mode) and ``targets`` dicts
    ``{"boxes" (K, 4), "labels" (K,)}``. ``compute()["map"]`` is AP averaged over IoU thresholds
    0.50:0.05:0.95 and the classes that have a target; ``["map_50"]`` is AP at IoU 0.5. Other
    ``options`` go to ``MeanAveragePrecision`` (e.g. ``class_metrics=True``).
    """
    options = {"box_format": "xyxy", "iou_type": "bbox", **options}
    return MeanAveragePrecision(**options)


def detection_scores(preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                     **options) -> dict[str, Tensor]:
    """:func:`detection_metric` over one set of predictions: ``{"map": (), "map_50": (), ...}``
    (torchmetrics' full result dict; -1 where a value is undefined, e.g. no small objects)."""
    metric = detection_metric(**options)
    metric.update([{k: v.detach().cpu() for k, v in p.items()} for p in preds],
                  [{k: v.detach().cpu() for k, v in t.items()} for t in targets])
    return {k: torch.as_tensor(v) for k, v in metric.compute().items()}
