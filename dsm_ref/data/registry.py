"""The datasets by name: :data:`DATASETS`, :func:`build_datasets`, and what
:func:`data_locations` finds (for ``python -m dsm_ref info``)."""

from __future__ import annotations

import os

from .base import Datasets
from .cifar10 import _find_cifar10, load_cifar10
from .imagenet import load_imagenet_folders
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, _source, cache_dir, data_dir
from .synthetic import SPECTRAL_TASKS, make_spectral_task


def data_locations() -> dict[str, str]:
    """Where data is looked for and cached, and what was found: for ``python -m dsm_ref info``."""
    root = data_dir()
    cifar = _find_cifar10(root)
    caches = sorted(cache_dir().glob("cifar10-*.pt")) if cache_dir().is_dir() else []
    imagenet = root / "imagenet"
    return {
        "data dir": f"{root} ({_source(DATA_DIR_ENV)}; exists: {root.is_dir()})",
        "cache dir": f"{cache_dir()} ({_source(CACHE_DIR_ENV)})",
        "cifar10": f"{cifar[0]}: {cifar[1]}" if cifar else "not found (see data/README.md)",
        "cifar10 cache": ", ".join(p.name for p in caches) or "none yet",
        "imagenet": f"{imagenet} (exists: {imagenet.is_dir()}; or pass --data-dir)",
        "spectral tasks": ", ".join(SPECTRAL_TASKS) + " (generated, no files)",
    }


# --- one entry point -----------------------------------------------------------------------------

DATASETS = ("cifar10", "imagenet", *(f"spectral/{task}" for task in SPECTRAL_TASKS))


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
    """Datasets by name: ``"cifar10"``, ``"imagenet"``, ``"spectral"`` or ``"spectral/<task>"``.

    ``img_size`` applies to ImageNet folders (default 224) and spectral tasks (default 32);
    CIFAR-10 is 32 px. ``randaugment_magnitude`` and ``random_erasing`` apply to ImageNet.
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
    raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)} "
                     f"(or 'spectral' for spectral/band_shift)")
