"""Dense prediction on a DSM backbone: semantic segmentation (Semantic FPN) and detection
(torchvision's RetinaNet, FCOS and Faster R-CNN), both on ``features_only`` stage maps.

paper: DSM transfers to detection and segmentation (49.9 mIoU on ADE20K) and gives no details /
ours: every design choice in this package; each is marked where it is made.

Modules, one job each: ``backbone`` (stage maps as pyramid levels, the FPN, loading a
classification checkpoint), ``segmentation`` (the Semantic FPN head and model), ``detection``
(pyramids, anchors and input checks for torchvision's detectors), ``factory``
(:func:`create_dense_model`), ``metrics`` (mIoU, pixel accuracy, mAP through torchmetrics) and
``inference`` (:func:`evaluate_dense`, :func:`predict_dense`, and the evaluation loops the
trainer's dense tasks share). The metrics are imported from ``dsm_ref.dense.metrics``
(torchmetrics loads only when asked, also by ``inference``).
"""

from __future__ import annotations

from .backbone import DSMBackboneWithFPN, DSMFeatures, check_image_size, load_backbone_weights
from .detection import (
    DETECTORS,
    anchor_generator,
    build_detector,
    check_detection_inputs,
    detection_backbone,
)
from .factory import TASKS, create_dense_model
from .inference import dense_task, evaluate_dense, predict_dense
from .segmentation import SemanticFPN, SemanticFPNHead

__all__ = [
    "DETECTORS",
    "TASKS",
    "DSMBackboneWithFPN",
    "DSMFeatures",
    "SemanticFPN",
    "SemanticFPNHead",
    "anchor_generator",
    "build_detector",
    "check_detection_inputs",
    "check_image_size",
    "create_dense_model",
    "dense_task",
    "detection_backbone",
    "evaluate_dense",
    "load_backbone_weights",
    "predict_dense",
]
