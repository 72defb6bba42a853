"""ImageNet-style class folders: the DeiT/GFNet transforms, a folder dataset whose random
transforms are keyed by ``(seed, epoch, index)``, and :func:`load_imagenet_folders`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .base import Datasets, _EpochSeeded, balanced_indices, sample_key
from .paths import DataError, data_dir

# Channel statistics of ImageNet (the values everyone uses).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_transforms(
    img_size: int = 224,
    *,
    randaugment_magnitude: int | None = 9,
    random_erasing: float = 0.25,
    crop_ratio: float = 0.875,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[Callable, Callable]:
    """The DeiT/GFNet train and eval transforms (PIL image -> ``(3, S, S)`` float32).

    train: RandomResizedCrop(S, scale 0.08-1, bicubic) -> flip -> RandAugment(2 ops, magnitude m)
    -> normalise -> RandomErasing(p). eval: resize to ``S / crop_ratio`` (bicubic) -> centre crop.
    paper: no augmentation stated (DESIGN.md section 1) / ours: DeiT's transforms, common
    practice for this family (GFNet trains with them), with torchvision's RandAugment, close to
    but not identical with timm's ``rand-m9-mstd0.5-inc1`` / why: no timm dependency; MixUp/CutMix
    act on batches (:func:`mixup_cutmix`).
    """
    from torchvision.transforms import InterpolationMode, v2

    bicubic = InterpolationMode.BICUBIC
    train = [v2.RandomResizedCrop(img_size, scale=(0.08, 1.0), interpolation=bicubic,
                                  antialias=True),
             v2.RandomHorizontalFlip()]
    if randaugment_magnitude:
        train.append(v2.RandAugment(num_ops=2, magnitude=randaugment_magnitude,
                                    interpolation=bicubic))
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train += tail
    if random_erasing > 0:
        train.append(v2.RandomErasing(p=random_erasing, value=0))
    evaluation = [v2.Resize(int(math.floor(img_size / crop_ratio)), interpolation=bicubic,
                            antialias=True), v2.CenterCrop(img_size), *tail]
    return v2.Compose(train), v2.Compose(evaluation)


class SeededImageFolder(_EpochSeeded, Dataset):
    """An ImageNet-style folder ``root/<class>/*`` whose random transforms are keyed by
    ``(seed, epoch, index)``: torchvision's ``ImageFolder`` for listing and decoding.

    ``dataset[i] -> ((3, S, S) float32, int)``. The global torch RNG is forked around each
    sample's transform, so it is left untouched (the fork costs well under the JPEG decode).
    """

    def __init__(self, root: str | os.PathLike, transform: Callable, *, seed: int = 0) -> None:
        from torchvision.datasets import ImageFolder

        folder = ImageFolder(str(root))
        self.root = str(root)
        self.loader = folder.loader
        self.classes = folder.classes
        self.samples = list(folder.samples)
        self.targets = [target for _, target in self.samples]
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, indices: Sequence[int] | Tensor) -> SeededImageFolder:
        """Restricts the dataset to ``indices`` in place (a subset that keeps ``set_epoch``)."""
        self.samples = [self.samples[int(i)] for i in indices]
        self.targets = [target for _, target in self.samples]
        return self

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, target = self.samples[index]
        image = self.loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_key(self.seed, self.epoch, index))
            return self.transform(image), target


def load_imagenet_folders(
    root: str | os.PathLike | None = None,
    *,
    img_size: int = 224,
    n_train: int | None = None,
    n_test: int | None = None,
    randaugment_magnitude: int | None = 9,
    random_erasing: float = 0.25,
    seed: int = 0,
    subset_seed: int = 0,
) -> Datasets:
    """ImageNet-style folders ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*``.

    Default ``root``: ``<data dir>/imagenet``. Train and val must have the same class folders
    (the usual val re-organisation into class folders). Images come out ``(3, img_size,
    img_size)`` through :func:`imagenet_transforms`; subsets are class-balanced.
    """
    base = data_dir() / "imagenet" if root is None else Path(root).expanduser()
    missing = [name for name in ("train", "val") if not (base / name).is_dir()]
    if missing:
        raise DataError(
            f"ImageNet-style data not found: {base} has no {' or '.join(missing)}/ folder. "
            f"Expected {base}/train/<class>/*.JPEG and {base}/val/<class>/* (val sorted into "
            f"class folders); pass --data-dir or put it under {data_dir()}/imagenet."
        )
    train_tf, eval_tf = imagenet_transforms(
        img_size, randaugment_magnitude=randaugment_magnitude, random_erasing=random_erasing)
    try:
        train = SeededImageFolder(base / "train", train_tf, seed=seed)
        test = SeededImageFolder(base / "val", eval_tf, seed=seed)
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"cannot read the image folders under {base}: {err}") from err
    if train.classes != test.classes:
        raise DataError(f"{base}/train and {base}/val have different class folders "
                        f"({len(train.classes)} vs {len(test.classes)})")
    if n_train is not None:
        train.keep(balanced_indices(torch.tensor(train.targets), n_train, subset_seed))
    if n_test is not None:
        test.keep(balanced_indices(torch.tensor(test.targets), n_test, subset_seed + 1))
    return Datasets(train, test, num_classes=len(train.classes), img_size=img_size,
                    classes=tuple(train.classes), name="imagenet", source=str(base),
                    info={"randaugment": randaugment_magnitude, "random_erasing": random_erasing})
