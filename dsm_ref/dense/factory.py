"""One builder for every dense model: :func:`create_dense_model` (a DSM variant by name, a task,
a detector, optionally a classification checkpoint to start from)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..checks import check_choice
from ..models import create_model
from .backbone import DSMFeatures, load_backbone_weights
from .detection import DETECTORS, build_detector
from .segmentation import SemanticFPN

__all__ = ["TASKS", "create_dense_model"]

TASKS = ("segment", "detect")


def create_dense_model(
    backbone: str,
    task: str,
    num_classes: int,
    *,
    detector: str = "retinanet",
    token_mixer: str = "dsm",
    mixer_options: dict[str, Any] | None = None,
    img_size: int | tuple[int, int] = 64,
    pretrained_path: str | os.PathLike | None = None,
    neck_channels: int = 256,
    head_channels: int = 128,
    dropout: float = 0.1,
    out_norm: bool = True,
    detector_options: dict[str, Any] | None = None,
    **backbone_options,
) -> nn.Module:
    """A segmentation or detection model on the registered DSM variant ``backbone``.

    - ``task="segment"``: :class:`~dsm_ref.dense.segmentation.SemanticFPN`,
      ``(B, 3, H, W) -> (B, num_classes, H, W)`` logits.
    - ``task="detect"``: torchvision's ``RetinaNet``, ``FCOS`` or ``FasterRCNN`` (``detector``)
      on the DSM pyramid (:func:`~dsm_ref.dense.detection.build_detector`); ``num_classes``
      counts the background (index 0) as torchvision does.

    Args:
        backbone: a name from ``dsm_ref.list_models()``, built with ``features_only=True``.
        token_mixer, mixer_options: the mixer of every block (``dsm_ref.models.TOKEN_MIXERS``).
        img_size: ``(H, W)`` or one int: the size the spectral weights are built for and, for
            detection, the size images are given at (the detector's ``min_size``/``max_size``).
            ours: 64 / why: the smallest mosaic canvas; name the size of your data.
        pretrained_path: a classification state dict to start the backbone from (any input
            size: the spectral weights are resized; the head is dropped). See
            :func:`~dsm_ref.dense.backbone.load_backbone_weights`.
        neck_channels: FPN width (256 in Semantic FPN, RetinaNet, FCOS and Faster R-CNN).
        head_channels, dropout: Semantic FPN head width and dropout (segmentation only).
        out_norm: LayerNorm on each stage map (:class:`~dsm_ref.dense.backbone.DSMFeatures`).
        detector_options: passed to the torchvision constructor (detection only).
        **backbone_options: overrides of the variant (``dims``, ``depths``, ``stem_stride``,
            ``drop_path_rate``, ...), as for :func:`dsm_ref.create_model`.

    Raises ``ValueError`` for an unknown task, detector, variant or mixer, ``num_classes < 1``
    (``< 2`` for detection) or a checkpoint of another architecture.
    """
    check_choice("task", task, TASKS)
    check_choice("detector", detector, DETECTORS)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if task == "detect" and num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for detection (the background, index 0, "
                         f"and at least one object class), got {num_classes}")
    if task == "segment" and detector_options:
        raise ValueError("detector_options apply to task='detect' only")
    body = create_model(backbone, features_only=True, img_size=img_size,
                        token_mixer=token_mixer, mixer_options=mixer_options,
                        **backbone_options)
    if pretrained_path is not None:
        load_backbone_weights(body, pretrained_path)
    if task == "segment":
        return SemanticFPN(DSMFeatures(body, out_norm=out_norm), num_classes,
                           neck_channels=neck_channels, head_channels=head_channels,
                           dropout=dropout)
    return build_detector(body, detector, num_classes, img_size=img_size,
                          neck_channels=neck_channels, out_norm=out_norm,
                          **(detector_options or {}))
