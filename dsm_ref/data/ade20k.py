"""ADE20K semantic segmentation (the SceneParsing challenge release, ``ADEChallengeData2016``):
the folder layout, the label convention, seeded resize/crop/flip, and :func:`load_ade20k`.

paper: DSM reports 49.9 mIoU on ADE20K (Semantic FPN) and says nothing of the data pipeline /
ours: everything here. Nothing is downloaded: the folder must be there.

Layout (as the challenge's zip unpacks)::

    ADEChallengeData2016/
        images/training/ADE_train_00000001.jpg ...    (20,210 images)
        images/validation/ADE_val_00000001.jpg ...    (2,000 images)
        annotations/training/ADE_train_00000001.png   (one 8-bit PNG per image, same stem)
        annotations/validation/ADE_val_00000001.png
        objectInfo150.txt                             (optional: the class names)

Labels: an annotation pixel holds 0 ("other": none of the 150 classes) or a class ``k`` in
1..150. We map 0 to :data:`ADE20K_IGNORE_INDEX` (255: the pixel counts in no loss and no
metric) and ``k`` to ``k - 1``, so the model predicts 150 classes ``0..149``. This is the
common practice for ADE20K (mmsegmentation's ``reduce_zero_label=True``, used by the Semantic
FPN results of PVT, PoolFormer and GFNet), not something the DSM paper states.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .base import Datasets, _EpochSeeded, random_subset, sample_key
from .imagenet import IMAGENET_MEAN, IMAGENET_STD
from .mosaic import _normalise
from .paths import DataError, dataset_folder

__all__ = ["ADE20K_FOLDER", "ADE20K_NUM_CLASSES", "ADE20K_IGNORE_INDEX", "ADE20KSegmentation",
           "reduce_zero_label", "load_ade20k"]

ADE20K_FOLDER = "ADEChallengeData2016"
ADE20K_NUM_CLASSES = 150
ADE20K_IGNORE_INDEX = 255
ADE20K_SPLITS = {"train": "training", "test": "validation"}

_LAYOUT = ("{root}/images/{split}/*.jpg with one {root}/annotations/{split}/<same name>.png "
           "each, for split = training and validation (the ADEChallengeData2016 zip, unpacked)")


def reduce_zero_label(mask: Tensor, *, name: str = "annotation") -> Tensor:
    """Raw ADE20K labels ``(H, W)`` (0 = other, 1..150 = classes) -> int64 ``(H, W)``: 0 becomes
    :data:`ADE20K_IGNORE_INDEX`, ``k`` becomes ``k - 1``. ``DataError`` (naming ``name``) for a
    value above 150."""
    top = int(mask.max()) if mask.numel() else 0
    if top > ADE20K_NUM_CLASSES:
        raise DataError(f"{name}: class {top} > {ADE20K_NUM_CLASSES}; ADE20K annotations hold "
                        f"0 (other) and the classes 1..{ADE20K_NUM_CLASSES}")
    mask = mask.long() - 1
    return mask.masked_fill_(mask < 0, ADE20K_IGNORE_INDEX)


def _class_names(root: Path) -> tuple[str, ...]:
    """The first name of each row of ``objectInfo150.txt`` (``Idx  Ratio  Train  Val  Name``,
    tab-separated, a header line first), else ``"class 1"`` .. ``"class 150"`` (by the raw
    annotation value)."""
    info = root / "objectInfo150.txt"
    if not info.is_file():
        return tuple(f"class {k}" for k in range(1, ADE20K_NUM_CLASSES + 1))
    rows = [line.split("\t") for line in info.read_text().splitlines()[1:] if line.strip()]
    names = tuple(row[-1].split(",")[0].strip() for row in rows)
    if len(names) != ADE20K_NUM_CLASSES:
        raise DataError(f"{info} names {len(names)} classes; expected {ADE20K_NUM_CLASSES} "
                        "rows after the header (Idx, Ratio, Train, Val, Name)")
    return names


def _read(path: Path, rgb: bool) -> Tensor:
    """An image file as uint8 ``(3, H, W)`` (``rgb``) or an 8-bit annotation as ``(H, W)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if not rgb and image.mode not in ("L", "P"):
                raise DataError(f"{path}: annotation of mode {image.mode!r}; expected an 8-bit "
                                "single-channel PNG (mode 'L' or 'P') of class indices")
            image = image.convert("RGB") if rgb else image
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
            height, width = image.height, image.width
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    return pixels.view(height, width, 3).permute(2, 0, 1) if rgb else pixels.view(height, width)


def _resize(image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """uint8 ``(3, H, W)`` and ``(H, W)`` to ``size``: the image bilinear (antialiased), the mask
    by its nearest pixel (no new labels)."""
    image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                          antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
    mask = F.interpolate(mask[None, None], size=size, mode="nearest-exact")[0, 0]
    return image, mask


class ADE20KSegmentation(_EpochSeeded, Dataset):
    """One split of ``ADEChallengeData2016``: ``dataset[i] -> (image (3, S, S) float32
    normalised with ImageNet's statistics, mask (S, S) int64 in 0..149 or 255)``.

    Geometry. eval: image and mask resized to ``S x S``. train (``augment``): resized to
    ``rS x rS`` with ``r`` uniform in ``scale_range``, a random ``S x S`` crop (padded at the
    bottom and right, image with 0 = the mean colour, mask with the ignore index, where ``rS <
    S``), a horizontal flip with p = 0.5. Random draws are keyed by ``(seed, epoch, index)``.
    common practice (mmsegmentation's ADE20K pipeline for Semantic FPN): short side to 512
    keeping the aspect ratio, ratio 0.5-2.0, 512 crop, flip, photometric distortion; predictions
    scored at the original size / ours: the same scale range, crop and flip on the image squeezed
    to ``S x S``, no photometric distortion, scored at ``S x S`` / why: fixed-size batches for
    the one trainer, and the same geometry at train and test time. An mIoU from this set is
    therefore not on the protocol behind published ADE20K numbers (the paper's 49.9 included).

    Args:
        root: the ``ADEChallengeData2016`` folder.
        split: ``"training"`` or ``"validation"``.
        img_size: ``S``.
        augment: the train geometry above (else the eval one).
        scale_range: ``(min, max)`` of ``r``.
        seed: augmentation seed.

    Raises ``DataError`` for a missing folder, an image without its annotation, and (when read)
    an unreadable file, an annotation of another size or with a class above 150.
    """

    ignore_index = ADE20K_IGNORE_INDEX

    def __init__(self, root: str | os.PathLike, split: str = "training", *, img_size: int = 512,
                 augment: bool = False, scale_range: tuple[float, float] = (0.5, 2.0),
                 seed: int = 0) -> None:
        if split not in ADE20K_SPLITS.values():
            raise ValueError(f"unknown ADE20K split {split!r}; expected one of: "
                             f"{', '.join(ADE20K_SPLITS.values())}")
        if img_size < 1:
            raise ValueError(f"img_size must be >= 1, got {img_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got "
                             f"{scale_range}")
        self.root = Path(root).expanduser()
        images, annotations = self.root / "images" / split, self.root / "annotations" / split
        for folder in (images, annotations):
            if not folder.is_dir():
                raise DataError(f"ADE20K folder not found: {folder}. Expected "
                                f"{_LAYOUT.format(root=self.root, split='<split>')}")
        self.samples = [(path, annotations / f"{path.stem}.png")
                        for path in sorted(images.glob("*.jpg"))]
        missing = [image.name for image, mask in self.samples if not mask.is_file()]
        if missing:
            raise DataError(f"{len(missing)} ADE20K image(s) in {images} have no annotation in "
                            f"{annotations} (e.g. {missing[0]} needs {annotations}/"
                            f"{Path(missing[0]).stem}.png)")
        self.split = split
        self.img_size = int(img_size)
        self.augment = bool(augment)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.seed = seed
        self.classes = _class_names(self.root)
        self.num_classes = ADE20K_NUM_CLASSES
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: Sequence[int] | Tensor) -> ADE20KSegmentation:
        """Restricts the dataset to ``indices`` in place (a subset that keeps ``set_epoch``)."""
        self.samples = [self.samples[int(i)] for i in indices]
        return self

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        """Sample ``index`` as stored: uint8 image ``(3, H, W)`` and its mask ``(H, W)`` after
        :func:`reduce_zero_label`, as uint8 (0..149, 255) so that it resizes like an image."""
        image_path, mask_path = self.samples[index]
        image, mask = _read(image_path, rgb=True), _read(mask_path, rgb=False)
        if image.shape[-2:] != mask.shape:
            raise DataError(f"{mask_path} is {tuple(mask.shape)} (H, W) but its image "
                            f"{image_path.name} is {tuple(image.shape[-2:])}")
        return image, reduce_zero_label(mask, name=str(mask_path)).to(torch.uint8)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self._load(index)
        size = self.img_size
        if not self.augment:
            image, mask = _resize(image, mask, (size, size))
            return _normalise(image, self.mean, self.std), mask.long()
        generator = torch.Generator().manual_seed(sample_key(self.seed, self.epoch, index))
        low, high = self.scale_range
        ratio = low + (high - low) * float(torch.rand((), generator=generator))
        side = max(1, round(size * ratio))
        y0 = int(torch.randint(max(side - size, 0) + 1, (), generator=generator))
        x0 = int(torch.randint(max(side - size, 0) + 1, (), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5)
        image, mask = _resize(image, mask, (side, side))
        image = _normalise(image, self.mean, self.std)[:, y0:y0 + size, x0:x0 + size]
        mask = mask.long()[y0:y0 + size, x0:x0 + size]
        pad = (0, size - image.shape[-1], 0, size - image.shape[-2])  # right, bottom
        image = F.pad(image, pad, value=0.0)
        mask = F.pad(mask, pad, value=ADE20K_IGNORE_INDEX)
        if flip:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.contiguous(), mask.contiguous()

    def __repr__(self) -> str:
        return (f"ADE20KSegmentation({self.split!r}, n={len(self)}, img_size={self.img_size}, "
                f"augment={self.augment})")


def load_ade20k(root: str | os.PathLike | None = None, *, img_size: int = 512,
                n_train: int | None = None, n_test: int | None = None,
                scale_range: tuple[float, float] = (0.5, 2.0), seed: int = 0,
                subset_seed: int = 0) -> Datasets:
    """ADE20K's ``training`` (augmented) and ``validation`` splits as :class:`Datasets`
    (150 classes, ``info["ignore_index"] = 255``).

    ``root``: the ``ADEChallengeData2016`` folder (default ``<data dir>/ADEChallengeData2016``).
    ``img_size``: ``S`` of :class:`ADE20KSegmentation`; ours: 512 / why: the crop of the common
    ADE20K recipe (pass a smaller one on a CPU). ``n_train``/``n_test``: a random subset of that
    many images, chosen by ``subset_seed`` (not by file order, which follows the scene). Nothing
    is downloaded.
    """
    base = dataset_folder(root, ADE20K_FOLDER, "ADE20K",
                          _LAYOUT.format(root="{root}", split="<split>"),
                          f"the {ADE20K_FOLDER} folder")
    splits = {}
    for name, split in ADE20K_SPLITS.items():
        dataset = ADE20KSegmentation(base, split, img_size=img_size, augment=name == "train",
                                     scale_range=scale_range, seed=seed)
        count = n_train if name == "train" else n_test
        if count is not None:
            dataset.keep(random_subset(len(dataset), count, subset_seed + (name == "test")))
        splits[name] = dataset
    return Datasets(splits["train"], splits["test"], num_classes=ADE20K_NUM_CLASSES,
                    img_size=img_size, classes=splits["train"].classes, name="ade20k",
                    source=str(base),
                    info={"ignore_index": ADE20K_IGNORE_INDEX, "reduce_zero_label": True,
                          "scale_range": scale_range})
