"""COCO object detection through ``torchvision.datasets.CocoDetection`` (pycocotools): its
annotations as the detection targets of :mod:`dsm_ref.dense`, images and boxes resized together,
and :func:`load_coco`.

paper: DSM "transfers to detection" and names no data pipeline / ours: everything here. Nothing
is downloaded: the folder must be there, in the COCO 2017 layout::

    coco/
        annotations/instances_train2017.json
        annotations/instances_val2017.json
        train2017/000000000009.jpg ...
        val2017/000000000139.jpg ...

Targets follow the mosaic detection set and torchvision's detectors: ``{"boxes": (K, 4) float32
x1, y1, x2, y2 pixels, "labels": (K,) int64}`` with label 0 the background, which no box has,
and COCO's category ids (1..90 with gaps) mapped in increasing order to ``1..C`` (``C = 80`` for
COCO 2017); ``classes[label]`` is the category's name.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .base import Datasets, _EpochSeeded, random_subset, sample_key
from .imagenet import IMAGENET_MEAN, IMAGENET_STD
from .mosaic import _normalise
from .paths import DataError, dataset_folder

__all__ = ["COCO_FOLDER", "COCO_SPLITS", "COCODetection", "coco_target", "load_coco"]

COCO_FOLDER = "coco"
COCO_SPLITS = {"train": "train2017", "test": "val2017"}

_LAYOUT = ("{root}/annotations/instances_<split>.json and the images in {root}/<split>/, for "
           "split = train2017 and val2017 (the COCO 2017 zips, unpacked)")


def coco_target(annotations: Sequence[Mapping], label_of: Mapping[int, int], width: int,
                height: int) -> dict[str, Tensor]:
    """COCO annotations of one ``width x height`` image -> ``{"boxes": (K, 4) float32 x1, y1, x2,
    y2, "labels": (K,) int64}``, ``label_of[category_id]`` the label.

    Crowd regions (``iscrowd=1``) are skipped, boxes (``[x, y, w, h]``) are clipped to the image,
    and those with no area left (``x2 <= x1`` or ``y2 <= y1``) are dropped: torchvision's
    detection references do the same, and its detectors reject a degenerate box. ``DataError``
    for a category not in ``label_of``.
    """
    boxes, labels = [], []
    for annotation in annotations:
        if annotation.get("iscrowd", 0):
            continue
        category = annotation["category_id"]
        if category not in label_of:
            raise DataError(f"annotation {annotation.get('id')} has category_id {category}, "
                            f"which the file's 'categories' do not list")
        x, y, w, h = (float(v) for v in annotation["bbox"])
        x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x2 > x1 and y2 > y1:
            boxes.append([x1, y1, x2, y2])
            labels.append(label_of[category])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long)}


class COCODetection(_EpochSeeded, Dataset):
    """One COCO split: ``dataset[i] -> (image (3, h, w) float32 normalised with ImageNet's
    statistics, {"boxes": (K, 4) float32, "labels": (K,) int64})`` (see :func:`coco_target`),
    batched with :func:`~dsm_ref.data.collate_detection`.

    Each image is resized, aspect kept, so that its long side is ``img_size`` (bilinear,
    antialiased), and its boxes by the same factors per axis; with ``augment``, a horizontal flip
    of both with p = 0.5, keyed by ``(seed, epoch, index)``. common practice (mmdetection's and
    torchvision's COCO recipes): short side 800, long side at most 1333, flip / ours: long side
    ``S``, flip / why: an image then fits the ``S x S`` the detector of
    :func:`~dsm_ref.dense.create_dense_model` is built for (its transform leaves it as it is),
    and boxes stay in the pixels of the image the model sees. IoU does not change with a uniform
    scale, so mAP on these boxes is mAP on the original ones up to rounding (not so the
    small/medium/large split, whose area thresholds are absolute).

    Args:
        images: the folder of the split's images (``.../val2017``).
        annotations: its ``instances_*.json``.
        img_size: ``S``, the long side.
        augment: flip (the training split).
        drop_empty: leave out images without a box (after crowd and degenerate boxes are
            dropped). torchvision's references do so for training; keep them for evaluation,
            where a detection on them is a false positive.
        seed: augmentation seed.

    Raises ``DataError`` for a missing folder or annotation file, a file that is not COCO
    json, and (when read) a missing or unreadable image.
    """

    def __init__(self, images: str | os.PathLike, annotations: str | os.PathLike, *,
                 img_size: int = 512, augment: bool = False, drop_empty: bool = False,
                 seed: int = 0) -> None:
        from torchvision.datasets import CocoDetection

        images, annotations = Path(images).expanduser(), Path(annotations).expanduser()
        if not annotations.is_file():
            raise DataError(f"COCO annotation file not found: {annotations}. Expected "
                            f"{_LAYOUT.format(root=annotations.parent.parent)}")
        if not images.is_dir():
            raise DataError(f"COCO image folder not found: {images}. Expected "
                            f"{_LAYOUT.format(root=images.parent)}")
        if img_size < 1:
            raise ValueError(f"img_size must be >= 1, got {img_size}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                self.coco = CocoDetection(str(images), str(annotations))
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as err:
            raise DataError(f"{annotations} is not a COCO instances file ({type(err).__name__}:"
                            f" {err})") from err
        index = self.coco.coco
        categories = index.loadCats(sorted(index.getCatIds()))
        self.category_ids = tuple(int(c["id"]) for c in categories)
        self.label_of = {cid: label for label, cid in enumerate(self.category_ids, start=1)}
        self.classes = ("background", *(str(c["name"]) for c in categories))
        self.num_classes = len(self.classes)
        self.images, self.annotations = images, annotations
        self.img_size = int(img_size)
        self.augment = bool(augment)
        self.seed = seed
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        if drop_empty:
            self.coco.ids = [i for i in self.coco.ids if len(self._target(i)["labels"])]

    def _target(self, image_id: int) -> dict[str, Tensor]:
        """The target of image ``image_id`` in its stored pixels."""
        index = self.coco.coco
        info = index.imgs[image_id]
        return coco_target(index.loadAnns(index.getAnnIds(imgIds=image_id)), self.label_of,
                           int(info["width"]), int(info["height"]))

    @property
    def ids(self) -> list[int]:
        """COCO image id of each sample."""
        return self.coco.ids

    def __len__(self) -> int:
        return len(self.coco)

    def keep(self, indices: Sequence[int] | Tensor) -> COCODetection:
        """Restricts the dataset to ``indices`` in place (a subset that keeps ``set_epoch``)."""
        self.coco.ids = [self.coco.ids[int(i)] for i in indices]
        return self

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        from torchvision.transforms.v2.functional import pil_to_tensor

        try:
            pil_image, annotations = self.coco[int(index)]
        except OSError as err:
            name = self.coco.coco.imgs[self.coco.ids[index]].get("file_name")
            raise DataError(f"cannot read COCO image {self.images / str(name)}: {err}") from err
        image = pil_to_tensor(pil_image)
        height, width = image.shape[-2:]
        target = coco_target(annotations, self.label_of, width, height)
        scale = self.img_size / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear",
                              align_corners=False, antialias=True)[0]
        image = _normalise(image.round().clamp(0, 255).to(torch.uint8), self.mean, self.std)
        boxes = target["boxes"] * torch.tensor([size[1] / width, size[0] / height] * 2)
        if self.augment:
            generator = torch.Generator().manual_seed(sample_key(self.seed, self.epoch, index))
            if bool(torch.rand((), generator=generator) < 0.5):
                image = image.flip(-1)
                boxes = torch.stack([size[1] - boxes[:, 2], boxes[:, 1],
                                     size[1] - boxes[:, 0], boxes[:, 3]], dim=1)
        return image.contiguous(), {"boxes": boxes, "labels": target["labels"]}

    def __repr__(self) -> str:
        return (f"COCODetection({self.images.name!r}, n={len(self)}, img_size={self.img_size}, "
                f"classes={self.num_classes}, augment={self.augment})")


def load_coco(root: str | os.PathLike | None = None, *, img_size: int = 512,
              n_train: int | None = None, n_test: int | None = None, seed: int = 0,
              subset_seed: int = 0) -> Datasets:
    """COCO 2017 ``train2017`` (flipped, images without a box left out) and ``val2017`` (all
    images) as :class:`Datasets`; ``num_classes`` counts the background (81 for COCO 2017).

    ``root``: the folder holding ``annotations/`` and the image folders (default
    ``<data dir>/coco``). ``img_size``: the long side ``S`` of :class:`COCODetection`; ours: 512
    / why: the size of the ADE20K recipe, so one ``--img-size`` serves both (pass a smaller one on
    a CPU). ``n_train``/``n_test``: a random subset of that many images, chosen by
    ``subset_seed``. Nothing is downloaded.
    """
    base = dataset_folder(root, COCO_FOLDER, "COCO", _LAYOUT,
                          "the folder holding annotations/")
    splits = {}
    for name, split in COCO_SPLITS.items():
        train = name == "train"
        dataset = COCODetection(base / split, base / "annotations" / f"instances_{split}.json",
                                img_size=img_size, augment=train, drop_empty=train, seed=seed)
        count = n_train if train else n_test
        if count is not None:
            dataset.keep(random_subset(len(dataset), count, subset_seed + (not train)))
        splits[name] = dataset
    if splits["train"].classes != splits["test"].classes:
        raise DataError(f"{base}: the train and val annotation files list different categories")
    return Datasets(splits["train"], splits["test"], num_classes=splits["train"].num_classes,
                    img_size=img_size, classes=splits["train"].classes, name="coco",
                    source=str(base), info={"category_ids": splits["train"].category_ids})
