"""Object detection on a DSM through torchvision's own detectors (RetinaNet, FCOS, Faster R-CNN):
the pyramid each needs, anchors that match its strides, and input checks with clear errors.

paper: DSM "transfers to detection" and gives no detector / ours: torchvision's models
unchanged, each built in one line on :class:`~dsm_ref.dense.backbone.DSMBackboneWithFPN`, so the
detection code is torchvision's, tested by its users, and only the backbone is ours.

Labels follow torchvision: ``num_classes`` counts the background, index 0, which no target
uses; object labels are ``1 .. num_classes - 1``.

Images pass through torchvision's ``GeneralizedRCNNTransform``, which normalises and resizes
them (short side to ``min_size``, long side at most ``max_size``). ours: ``min_size``,
``max_size`` = the short and long side of ``img_size`` and an identity normalisation / why:
images at ``img_size`` then reach the backbone as given (torchvision's 800/1333 would blow a
64-px mosaic up 12x), and dsm_ref's datasets already return normalised images. Other sizes are
resized as torchvision does, and predicted boxes are mapped back to each input's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ..checks import check_choice
from ..models import DSM
from .backbone import DSMBackboneWithFPN, DSMFeatures, check_image_size

__all__ = ["DETECTORS", "anchor_generator", "detection_backbone", "build_detector",
           "check_detection_inputs"]

DETECTORS = ("retinanet", "fcos", "faster_rcnn")

# Which DSM stages feed the FPN, and what the FPN adds on top (torchvision's choices for ResNet):
# RetinaNet and FCOS: C3-C5 -> P3-P5, plus P6, P7 by stride-2 convs on P5 (5 levels, strides
# s*2 .. s*32 with s the stem stride); Faster R-CNN: C2-C5 -> P2-P5, plus a max-pooled P6.
_PYRAMIDS = {
    "retinanet": ((1, 2, 3), "p6p7"),
    "fcos": ((1, 2, 3), "p6p7"),
    "faster_rcnn": ((0, 1, 2, 3), "maxpool"),
}


def anchor_generator(strides: Sequence[int], detector: str) -> AnchorGenerator:
    """Anchors for pyramid levels of ``strides``, scaled as torchvision scales them for ResNet
    (where the strides are 4..128), so they follow a DSM's strides (half those at ``stem_stride``
    2):

    - RetinaNet: sizes ``4 * stride * 2**(k/3)`` for ``k = 0, 1, 2``, ratios 0.5, 1, 2 (9 per
      position: torchvision's 32..512 on strides 8..128);
    - FCOS: one point per position, size ``stride`` (torchvision's 8..128);
    - Faster R-CNN (RPN): size ``8 * stride``, ratios 0.5, 1, 2 (torchvision's 32..512 on
      strides 4..64).
    """
    check_choice("detector", detector, DETECTORS)
    if detector == "retinanet":
        sizes = tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3)))
                      for s in strides)
        ratios = ((0.5, 1.0, 2.0),) * len(strides)
    elif detector == "fcos":
        sizes, ratios = tuple((s,) for s in strides), ((1.0,),) * len(strides)
    else:
        sizes, ratios = tuple((8 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides)
    return AnchorGenerator(sizes, ratios)


def detection_backbone(body: DSM, detector: str, out_channels: int = 256, *,
                       out_norm: bool = True) -> DSMBackboneWithFPN:
    """The pyramid ``detector`` expects on the features-only DSM ``body`` (see ``_PYRAMIDS``)."""
    check_choice("detector", detector, DETECTORS)
    stages, extra = _PYRAMIDS[detector]
    features = DSMFeatures(body, stages, out_norm=out_norm)
    if extra == "p6p7":
        return DSMBackboneWithFPN(features, out_channels,
                                  LastLevelP6P7(out_channels, out_channels), extra_strides=2)
    return DSMBackboneWithFPN(features, out_channels, LastLevelMaxPool(), extra_strides=1)


def check_detection_inputs(images: Any, targets: Any, *, num_classes: int,
                           min_size: int) -> None:
    """``ValueError`` naming what is wrong with a detector's inputs, before torchvision's asserts.

    ``images``: a list of ``(3, H, W)`` float tensors (or a ``(B, 3, H, W)`` batch), each with
    ``H, W >= min_size``; ``targets`` (or ``None``): one dict per image with ``"boxes"`` float
    ``(K, 4)`` as ``x1, y1, x2, y2`` pixels with ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``,
    and ``"labels"`` int64 ``(K,)`` in ``1 .. num_classes - 1``.
    """
    if isinstance(images, Tensor) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)) or not all(
            isinstance(im, Tensor) and im.ndim == 3 for im in images):
        raise ValueError("expected images as a list of (3, H, W) tensors (or a (B, 3, H, W) "
                         f"batch), got {type(images).__name__}")
    for i, image in enumerate(images):
        check_image_size(int(image.shape[-2]), int(image.shape[-1]), min_size,
                         what=f"image {i}")
    if targets is None:
        return
    if len(targets) != len(images):
        raise ValueError(f"expected one target per image, got {len(targets)} targets for "
                         f"{len(images)} images")
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
            raise ValueError(f"target {i}: expected a dict with 'boxes' (K, 4) and 'labels' (K,)")
        boxes, labels = target["boxes"], target["labels"]
        height, width = image.shape[-2:]
        if not (isinstance(boxes, Tensor) and boxes.is_floating_point() and boxes.ndim == 2
                and boxes.shape[1] == 4):
            raise ValueError(f"target {i}: expected 'boxes' as a float (K, 4) tensor of x1, y1, "
                             f"x2, y2, got {getattr(boxes, 'dtype', type(boxes).__name__)} "
                             f"{tuple(getattr(boxes, 'shape', ()))}")
        if not (isinstance(labels, Tensor) and not labels.is_floating_point()
                and labels.shape == boxes.shape[:1]):
            raise ValueError(f"target {i}: expected 'labels' as an int64 ({boxes.shape[0]},) "
                             f"tensor, got {getattr(labels, 'dtype', type(labels).__name__)} "
                             f"{tuple(getattr(labels, 'shape', ()))}")
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if empty.any():
            k = int(empty.nonzero()[0])
            raise ValueError(f"target {i}: box {k} {boxes[k].tolist()} has x2 <= x1 or y2 <= y1; "
                             "expected x1 < x2 and y1 < y2 (xyxy pixels)")
        outside = ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width)
                   | (boxes[:, 3] > height))
        if outside.any():
            k = int(outside.nonzero()[0])
            raise ValueError(f"target {i}: box {k} {boxes[k].tolist()} lies outside the "
                             f"{int(width)}x{int(height)} image; expected 0 <= x1 < x2 <= "
                             f"{int(width)} and 0 <= y1 < y2 <= {int(height)}")
        bad = (labels < 1) | (labels >= num_classes)
        if bad.any():
            k = int(bad.nonzero()[0])
            raise ValueError(f"target {i}: label {int(labels[k])} of box {k} is outside "
                             f"1..{num_classes - 1}; 0 is the background, which no box has")


def _check_hook(module: nn.Module, args: tuple, kwargs: dict, *, num_classes: int,
                min_size: int) -> None:
    images = args[0] if args else kwargs.get("images")
    targets = args[1] if len(args) > 1 else kwargs.get("targets")
    check_detection_inputs(images, targets, num_classes=num_classes, min_size=min_size)


def build_detector(body: DSM, detector: str, num_classes: int, *,
                   img_size: int | tuple[int, int], neck_channels: int = 256,
                   out_norm: bool = True, **detector_options) -> nn.Module:
    """A torchvision ``RetinaNet``, ``FCOS`` or ``FasterRCNN`` on the features-only DSM ``body``.

    Train mode: ``model(images, targets) -> {loss name: scalar}``; eval mode:
    ``model(images) -> [{"boxes" (N, 4), "scores" (N,), "labels" (N,)}]`` per image, in its
    pixels. A forward pre-hook runs :func:`check_detection_inputs` first.

    ``detector_options`` go to the torchvision constructor and override ours: ``min_size``,
    ``max_size`` (from ``img_size``), ``image_mean`` (0), ``image_std`` (1), ``size_divisible``
    (the largest stage stride instead of torchvision's 32: no padding beyond what the stages
    need), and any other of its options (``score_thresh``, ``detections_per_img``, ...).
    """
    check_choice("detector", detector, DETECTORS)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for detection (it counts the background, "
                         f"index 0, and at least one object class), got {num_classes}")
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    backbone = detection_backbone(body, detector, neck_channels, out_norm=out_norm)
    options = dict(min_size=min(height, width), max_size=max(height, width),
                   image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                   size_divisible=body.min_input_size)
    options.update(detector_options)
    anchors = anchor_generator(backbone.strides, detector)
    if detector == "retinanet":
        model = RetinaNet(backbone, num_classes, anchor_generator=anchors, **options)
    elif detector == "fcos":
        model = FCOS(backbone, num_classes, anchor_generator=anchors, **options)
    else:
        model = FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **options)
    model.register_forward_pre_hook(
        partial(_check_hook, num_classes=num_classes, min_size=body.min_input_size),
        with_kwargs=True)
    return model
