"""The datasets by name: :data:`DATASETS`, :func:`build_datasets`, and what
:func:`data_locations` finds (for ``python -m dsm_ref info``)."""

from __future__ import annotations

import os

from .ade20k import ADE20K_FOLDER, ADE20KSegmentation, load_ade20k
from .base import Datasets, ImageTensorDataset
from .cifar10 import _find_cifar10, load_cifar10
from .coco import COCO_FOLDER, COCODetection, load_coco
from .imagenet import load_imagenet_folders
from .mosaic import (
    MosaicDetection,
    MosaicSegmentation,
    SpectralRegions,
    make_mosaic_task,
    make_spectral_regions,
)
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, _source, cache_dir, data_dir
from .synthetic import SPECTRAL_TASKS, make_spectral_task


def data_locations() -> dict[str, str]:
    """Where data is looked for and cached, and what was found: for ``python -m dsm_ref info``."""
    root = data_dir()
    cifar = _find_cifar10(root)
    caches = sorted(cache_dir().glob("cifar10-*.pt")) if cache_dir().is_dir() else []
    imagenet, ade20k, coco = root / "imagenet", root / ADE20K_FOLDER, root / COCO_FOLDER
    return {
        "data dir": f"{root} ({_source(DATA_DIR_ENV)}; exists: {root.is_dir()})",
        "cache dir": f"{cache_dir()} ({_source(CACHE_DIR_ENV)})",
        "cifar10": f"{cifar[0]}: {cifar[1]}" if cifar else "not found (see data/README.md)",
        "cifar10 cache": ", ".join(p.name for p in caches) or "none yet",
        "imagenet": f"{imagenet} (exists: {imagenet.is_dir()}; or pass --data-dir)",
        "ade20k": f"{ade20k} (exists: {ade20k.is_dir()}; or pass --data-dir)",
        "coco": f"{coco} (exists: {coco.is_dir()}; or pass --data-dir)",
        "spectral tasks": ", ".join(SPECTRAL_TASKS) + " (generated, no files)",
    }


# --- one entry point -----------------------------------------------------------------------------

DATASETS = ("cifar10", "imagenet", *(f"spectral/{task}" for task in SPECTRAL_TASKS),
            "mosaic-segment/cifar10", "mosaic-detect/cifar10", "spectral-regions", "ade20k",
            "coco")

# What each dataset's samples are: ``(image, int)`` ("classify"), ``(image, (H, W) mask)``
# ("segment") or ``(image, {"boxes", "labels"})`` ("detect"). The trainer's ``task`` must match.
DATASET_TASKS = {"mosaic-segment/cifar10": "segment", "mosaic-detect/cifar10": "detect",
                 "spectral-regions": "segment", "ade20k": "segment", "coco": "detect"}


def dataset_task(name: str) -> str | None:
    """``"classify"``, ``"segment"`` or ``"detect"``: what the samples of the dataset ``name``
    hold (see :data:`DATASET_TASKS`); ``None`` for a name :func:`build_datasets` does not know."""
    if name in DATASET_TASKS:
        return DATASET_TASKS[name]
    if name in DATASETS or name == "spectral":
        return "classify"
    return None


def datasets_task(data: Datasets) -> str | None:
    """What the samples of built ``data`` hold, from the type of its training set: the task of
    the mosaic, region, ADE20K and COCO datasets, ``"classify"`` for in-memory images and
    ImageNet folders, ``None`` for a dataset of another type (not checked)."""
    from .imagenet import SeededImageFolder

    train = data.train
    # MosaicDetection before MosaicSegmentation, its base class
    if isinstance(train, (MosaicDetection, COCODetection)):
        return "detect"
    if isinstance(train, (MosaicSegmentation, SpectralRegions, ADE20KSegmentation)):
        return "segment"
    if isinstance(train, (ImageTensorDataset, SeededImageFolder)):
        return "classify"
    return None


def build_datasets(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    img_size: int | None = None,
    download: bool = False,
    seed: int = 0,
    randaugment_magnitude: int | None = 9,
    random_erasing: float = 0.25,
    progress: bool = True,
) -> Datasets:
    """Datasets by name: ``"cifar10"``, ``"imagenet"``, ``"spectral"`` or ``"spectral/<task>"``
    (classification); ``"mosaic-segment/cifar10"``, ``"mosaic-detect/cifar10"`` (mosaics of
    CIFAR-10 images, :func:`~dsm_ref.data.mosaic.make_mosaic_task`) and ``"spectral-regions"``
    (:func:`~dsm_ref.data.mosaic.make_spectral_regions`), ``"ade20k"``
    (:func:`~dsm_ref.data.ade20k.load_ade20k`) and ``"coco"``
    (:func:`~dsm_ref.data.coco.load_coco`) for dense prediction.

    ``img_size`` applies to ImageNet folders (default 224), spectral tasks (default 32), the
    mosaics' canvas (default 96), the spectral regions' canvas (default 64), ADE20K's crop and
    COCO's long side (default 512); CIFAR-10 is 32 px. ``randaugment_magnitude`` and
    ``random_erasing`` apply to ImageNet. For the generated dense datasets ``n_train`` /
    ``n_test`` count canvases (default 2000 / 500); a mosaic pastes images of the whole CIFAR-10
    split. ``root`` is the data dir for CIFAR-10, and the dataset's own folder for ImageNet,
    ADE20K (``ADEChallengeData2016``) and COCO (the folder holding ``annotations/``); their
    default is that folder in the data dir. Nothing but CIFAR-10 is ever downloaded.
    """
    if name == "cifar10":
        if img_size not in (None, 32):
            raise ValueError(f"CIFAR-10 images are 32 px; got img_size={img_size}")
        return load_cifar10(n_train, n_test, root=root, download=download, seed=seed,
                            progress=progress)
    if name == "imagenet":
        return load_imagenet_folders(root, img_size=img_size or 224, n_train=n_train,
                                     n_test=n_test, randaugment_magnitude=randaugment_magnitude,
                                     random_erasing=random_erasing, seed=seed)
    if name == "spectral" or name.startswith("spectral/"):
        task = name.partition("/")[2] or "band_shift"
        return make_spectral_task(task, n_train, n_test, img_size=img_size or 32, seed=seed)
    if name in ("mosaic-segment/cifar10", "mosaic-detect/cifar10"):
        task = name.partition("/")[0].removeprefix("mosaic-")
        source = load_cifar10(root=root, download=download, augment=False, seed=seed,
                              progress=progress)
        return make_mosaic_task(source, task, *_canvas_counts(n_train, n_test),
                                canvas_size=img_size or 96, seed=seed)
    if name == "spectral-regions":
        return make_spectral_regions(*_canvas_counts(n_train, n_test),
                                     canvas_size=img_size or 64, seed=seed)
    if name == "ade20k":
        return load_ade20k(root, img_size=img_size or 512, n_train=n_train, n_test=n_test,
                           seed=seed)
    if name == "coco":
        return load_coco(root, img_size=img_size or 512, n_train=n_train, n_test=n_test,
                         seed=seed)
    raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)} "
                     f"(or 'spectral' for spectral/band_shift)")


def _canvas_counts(n_train: int | None, n_test: int | None) -> tuple[int, int]:
    """``n_train``, ``n_test`` of a generated dense task (default 2000, 500, as the makers')."""
    return (2000 if n_train is None else n_train), (500 if n_test is None else n_test)
