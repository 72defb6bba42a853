"""Exercises of notebook 08, dense prediction: checks and solutions.

1. ``scores_from_confusion(pred (B, H, W), target (B, H, W), num_classes) -> (mIoU, pixel
   accuracy)``: both scores from one confusion matrix; checked against
   ``dsm_ref.dense.metrics.segmentation_scores``.
2. ``boxes_from_instance_map(instances (H, W), count) -> (K, 4)``: the box of the visible pixels
   of each paste, in pixel edges; checked against ``dsm_ref.data.mosaic.boxes_from_instances``.
3. ``pyramid_grid_sizes(height, width, stem_stride, num_stages) -> [(H_i, W_i)]``: the token
   grid of every stage of a DSM backbone; checked against the backbone itself
   (``create_model(..., features_only=True)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..data.mosaic import boxes_from_instances
from ..dense.metrics import segmentation_scores
from ..models import create_model
from ._common import Mismatch, call, expect_equal, run_check

__all__ = [
    "check_scores_from_confusion", "solution_scores_from_confusion",
    "check_boxes_from_instance_map", "solution_boxes_from_instance_map",
    "check_pyramid_grid_sizes", "solution_pyramid_grid_sizes",
]

# The 4 x 4 case of the notebook's section 5 (class 3 absent from both).
TOY_TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 1], [2, 2, 2, 2]])
TOY_PRED = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 0, 1], [2, 2, 2, 2]])


# --- 1. mIoU and pixel accuracy ------------------------------------------------------------------

def solution_scores_from_confusion(pred: Tensor, target: Tensor,
                                   num_classes: int) -> tuple[float, float]:
    """One ``bincount`` gives the ``K x K`` counts (rows: target, columns: prediction); TP on the
    diagonal, FP = column sum - TP, FN = row sum - TP; classes absent from both are left out."""
    matrix = torch.bincount(target.flatten() * num_classes + pred.flatten(),
                            minlength=num_classes**2).reshape(num_classes, num_classes).double()
    tp = matrix.diag()
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    present = (tp + fp + fn) > 0
    miou = (tp[present] / (tp + fp + fn)[present]).mean()
    return miou.item(), (tp.sum() / matrix.sum()).item()


def check_scores_from_confusion(function: Callable) -> bool:
    """``function(pred, target, num_classes)`` must return ``(mIoU, pixel accuracy)`` in
    ``[0, 1]``, as ``segmentation_scores``."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(1)
        score_cases = [("the 4x4 case of section 5", TOY_PRED[None], TOY_TARGET[None], 4)]
        for k in (3, 6):
            target = torch.randint(k - 1, (2, 9, 7), generator=generator)  # class k-1 never occurs
            pred = torch.where(torch.rand(2, 9, 7, generator=generator) < 0.7, target,
                               torch.randint(k - 1, (2, 9, 7), generator=generator))
            score_cases.append((f"random masks, {k} classes, the last one absent", pred,
                                target, k))
        perfect = torch.randint(5, (1, 6, 6), generator=generator)
        score_cases.append(("a perfect prediction", perfect, perfect.clone(), 5))
        for case, pred, target, k in score_cases:
            expected = segmentation_scores(pred, target, k)
            answer = call(function, case, pred.clone(), target.clone(), k)
            try:
                miou, accuracy = (float(v) for v in answer)
            except (TypeError, ValueError):
                raise Mismatch(f"On {case} your function returned {answer!r}; expected two "
                               "numbers, (mIoU, pixel accuracy).") from None
            want_miou = float(expected["miou"])
            want_accuracy = float(expected["pixel_accuracy"])
            if abs(accuracy - want_accuracy) > 1e-6:
                raise Mismatch(f"On {case} the pixel accuracy is {want_accuracy:.4f}, you gave "
                               f"{accuracy:.4f}: correct pixels over all pixels, in [0, 1].")
            if abs(miou - want_miou) > 1e-6:
                iou = expected["iou_per_class"]
                with_absent = float(torch.nan_to_num(iou, nan=0.0).mean())
                hint = ("IoU_c = TP / (TP + FP + FN): TP on the diagonal, FP from the column sums "
                        "(predicted c), FN from the row sums (truly c).")
                if abs(miou - with_absent) < 1e-6:
                    hint = ("A class absent from both the prediction and the target has no IoU: "
                            "leave it out of the mean instead of counting it as 0.")
                raise Mismatch(f"On {case} the mIoU is {want_miou:.4f}, you gave {miou:.4f}. "
                               f"{hint}")
        return ("mIoU and pixel accuracy match segmentation_scores, absent classes and a perfect "
                "prediction included.")

    return run_check("scores_from_confusion", function, cases)


# --- 2. boxes from an instance map ---------------------------------------------------------------

def solution_boxes_from_instance_map(instances: Tensor, count: int) -> Tensor:
    """Rows and columns where paste ``k`` shows; ``x2``, ``y2`` one past the last pixel; a paste
    with no visible pixel gets no box."""
    boxes = []
    for k in range(count):
        rows = (instances == k).any(dim=1).nonzero().flatten()
        cols = (instances == k).any(dim=0).nonzero().flatten()
        if len(rows):
            boxes.append([cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def _pasted(size: tuple[int, int], rectangles: list[tuple[int, int, int, int]]) -> Tensor:
    """An instance map: paste ``k`` fills rows ``y1:y2``, columns ``x1:x2``; later pastes cover
    earlier ones, as on a mosaic canvas."""
    instances = torch.full(size, -1)
    for k, (x1, y1, x2, y2) in enumerate(rectangles):
        instances[y1:y2, x1:x2] = k
    return instances


def check_boxes_from_instance_map(function: Callable) -> bool:
    """``function(instances, count)`` must return the ``(K, 4)`` boxes ``x1, y1, x2, y2`` of the
    visible pixels of pastes ``0 .. count - 1``, in order, skipping pastes with none."""

    def cases() -> str:
        toy = torch.full((5, 6), -1)
        toy[1:3, 2:5] = 0  # rows 1-2, columns 2-4
        toy[4, 0] = 1      # one pixel
        generator = torch.Generator().manual_seed(4)
        random_rectangles = []
        for _ in range(4):
            x1, y1 = (int(v) for v in torch.randint(0, 20, (2,), generator=generator))
            w, h = (int(v) for v in torch.randint(3, 12, (2,), generator=generator))
            random_rectangles.append((x1, y1, min(x1 + w, 24), min(y1 + h, 20)))
        box_cases = [
            ("a 5x6 toy map", toy, 2),
            ("two pastes, the second half covering the first",
             _pasted((10, 12), [(1, 1, 7, 6), (4, 3, 11, 9)]), 2),
            ("three pastes, the first entirely covered",
             _pasted((10, 10), [(3, 3, 5, 5), (7, 0, 10, 2), (2, 2, 6, 6)]), 3),
            ("a paste touching the right and bottom edges",
             _pasted((8, 9), [(5, 4, 9, 8)]), 1),
            ("four random overlapping pastes", _pasted((20, 24), random_rectangles), 4),
        ]
        for case, instances, count in box_cases:
            labels = torch.zeros(count, dtype=torch.long)
            expected = boxes_from_instances(instances, labels)["boxes"]
            answer = call(function, case, instances.clone(), count)
            try:
                boxes = torch.as_tensor(answer).float().reshape(-1, 4)
            except (TypeError, ValueError, RuntimeError):
                raise Mismatch(f"On {case} your function returned {answer!r}; expected a (K, 4) "
                               "tensor of x1, y1, x2, y2.") from None
            if boxes.shape != expected.shape:
                raise Mismatch(f"On {case} {len(expected)} pastes are visible, you returned "
                               f"{len(boxes)} boxes (a paste that is entirely covered gets no "
                               "box).")
            if not torch.equal(boxes, expected):
                k = int((boxes != expected).any(1).nonzero()[0])
                hint = "x2 and y2 are one past the last pixel"
                if torch.equal(boxes[k], expected[k][[1, 0, 3, 2]]):
                    hint = "x is the column and y the row: the order is x1, y1, x2, y2"
                raise Mismatch(f"On {case}, box {k}: got {boxes[k].tolist()}, expected "
                               f"{expected[k].tolist()} ({hint}).")
        return ("Boxes match boxes_from_instances: covered pastes skipped, pixel edges, x before "
                "y.")

    return run_check("boxes_from_instance_map", function, cases)


# --- 3. pyramid sizes ----------------------------------------------------------------------------

def solution_pyramid_grid_sizes(height: int, width: int, stem_stride: int = 2,
                                num_stages: int = 4) -> list[tuple[int, int]]:
    """The stem (kernel = stride = ``s``, no padding) floors ``H / s``; every later stage starts
    with a 2x2 convolution of stride 2, which floors a half."""
    grids = [(height // stem_stride, width // stem_stride)]  # floor: the remainder is dropped
    for _ in range(num_stages - 1):
        grids.append((grids[-1][0] // 2, grids[-1][1] // 2))
    return grids


def _backbone_grids(name: str, size: tuple[int, int], **options) -> list[tuple[int, int]]:
    torch.manual_seed(0)
    body = create_model(name, features_only=True, **options).eval()
    with torch.no_grad():
        return [tuple(level.shape[-2:]) for level in body(torch.zeros(1, 3, *size))]


def check_pyramid_grid_sizes(function: Callable) -> bool:
    """``function(height, width, stem_stride=..., num_stages=...)`` must return the ``(H_i, W_i)``
    token grid of every stage, as the backbone produces it."""

    def cases() -> str:
        backbones = [("dsm_micro", 2, dict(dims=(16, 32, 48, 64)),
                      [(64, 64), (70, 90), (97, 81), (33, 120)]),
                     ("dsm_nano", 4, dict(dims=(8, 16, 24, 32), depths=(1, 1, 1, 1)),
                      [(64, 64), (97, 130), (35, 63)])]
        for name, stride, options, sizes in backbones:
            for size in sizes:
                case = f"a {size[0]}x{size[1]} input with stem stride {stride}"
                actual = _backbone_grids(name, size, **options)
                answer = call(function, case, *size, stem_stride=stride, num_stages=4)
                try:
                    predicted = [tuple(int(v) for v in grid) for grid in answer]
                except (TypeError, ValueError):
                    raise Mismatch(f"On {case} your function returned {answer!r}; expected a "
                                   "list of 4 (H_i, W_i) pairs.") from None
                hint = ("What does a strided convolution without padding do with a remainder? "
                        "Each stage after the first halves the grid of the one before.")
                if len(predicted) != len(actual):
                    hint = "One (H_i, W_i) per stage, the stem's output first."
                expect_equal(predicted, actual, case, hint)
        return ("Your grids are the backbone's for stem strides 2 and 4, at sizes that are not "
                "multiples of 16.")

    return run_check("pyramid_grid_sizes", function, cases)
