"""Datasets for training a DSM: CIFAR-10 offline or online, ImageNet-style folders, synthetic
spectral tasks, and dense tasks (mosaics for segmentation and detection, spectral regions,
ADE20K and COCO folders).
Defined in notebook 05 (training a DSM).

Where data is looked for (``python -m dsm_ref info`` prints it):

- **data dir**: ``$DSM_DATA_DIR`` if set, else ``<repo>/data`` when running from a checkout of this
  repository, else ``~/.cache/dsm_ref/data``. It may be read-only: nothing is written there except
  by an explicit ``download=True``.
- **cache dir** (decoded tensors): ``$DSM_CACHE_DIR`` if set, else ``<repo>/data/cache`` in a
  checkout, else ``~/.cache/dsm_ref``.

CIFAR-10 is found in the data dir as, in this order: ``cifar10-jpg.tar.gz`` (the 60,000 images as
JPEG files, ``cifar10/{train,test}/<class>/NNNN.jpg``), the same tree extracted (``cifar10/``), or
torchvision's ``cifar-10-batches-py/``; ``download=True`` fetches the last with torchvision. JPEG
sources are decoded once (a streaming read of the archive, never extracted) into one uint8 tensor
file in the cache dir, keyed by the archive's SHA-256, so every subset reuses the one full decode
and later epochs never touch a JPEG.

Every classification dataset here returns ``(image, label)`` with ``image: (3, H, W)`` float32,
normalised, and ``label`` an int; the dense ones return ``(image, mask (H, W) int64)`` or
``(image, {"boxes", "labels"})`` (batched with :func:`collate_detection`); ADE20K (150 classes,
0 = "other" -> ignore index 255) and COCO (categories -> labels ``1..C``, 0 the background)
are read from their usual folders in the data dir, never downloaded. Random augmentation
is a pure function of ``(seed, epoch, index)`` (call ``set_epoch`` each epoch): a resumed run, a
run with more loader workers and a run split over several processes all see the same augmented
image for the same sample. That is what lets the
trainer promise bit-equal resume and DDP == single process.

Modules, one job each: ``paths`` (data and cache dirs, ``DataError``), ``base`` (keyed
augmentation, :class:`ImageTensorDataset`, balanced subsets, :class:`Datasets`, MixUp/CutMix),
``cifar10``, ``imagenet`` (ImageNet-style folders), ``synthetic`` (spectral tasks), ``mosaic``
(dense tasks: :class:`MosaicSegmentation`, :class:`MosaicDetection`, :class:`SpectralRegions`),
``ade20k`` (:class:`ADE20KSegmentation`), ``coco`` (:class:`COCODetection`) and ``registry``
(:func:`build_datasets` by name, :func:`dataset_task`, :func:`data_locations`).
"""

from __future__ import annotations

from .ade20k import ADE20K_FOLDER as ADE20K_FOLDER
from .ade20k import ADE20K_IGNORE_INDEX, ADE20K_NUM_CLASSES, ADE20KSegmentation, load_ade20k
from .base import Datasets, ImageTensorDataset, balanced_indices, mixup_cutmix, sample_key
from .cifar10 import CIFAR10_ARCHIVE, CIFAR10_CLASSES, load_cifar10
from .cifar10 import CIFAR10_FOLDER as CIFAR10_FOLDER
from .cifar10 import CIFAR10_MEAN as CIFAR10_MEAN
from .cifar10 import CIFAR10_SIZES as CIFAR10_SIZES
from .cifar10 import CIFAR10_STD as CIFAR10_STD
from .cifar10 import TORCHVISION_CIFAR10_FOLDER as TORCHVISION_CIFAR10_FOLDER
from .coco import COCO_FOLDER as COCO_FOLDER
from .coco import COCODetection, load_coco
from .imagenet import IMAGENET_MEAN as IMAGENET_MEAN
from .imagenet import IMAGENET_STD as IMAGENET_STD
from .imagenet import SeededImageFolder, imagenet_transforms, load_imagenet_folders
from .mosaic import (
    MosaicDetection,
    MosaicSegmentation,
    SpectralRegions,
    collate_detection,
    make_mosaic_task,
    make_spectral_regions,
)
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, DataError, cache_dir, data_dir
from .registry import (
    DATASET_TASKS,
    DATASETS,
    build_datasets,
    data_locations,
    dataset_task,
    datasets_task,
)
from .synthetic import SPECTRAL_BANDS, SPECTRAL_TASKS, make_spectral_task, spectral_images
from .synthetic import SPECTRAL_MEAN as SPECTRAL_MEAN
from .synthetic import SPECTRAL_STD as SPECTRAL_STD

# ``__all__`` is the single-file module's; the ``X as X`` imports above keep its other public
# constants (channel statistics, folder names) importable from here too.
__all__ = [
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "CIFAR10_ARCHIVE",
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATASET_TASKS",
    "SPECTRAL_TASKS",
    "SPECTRAL_BANDS",
    "DataError",
    "Datasets",
    "ImageTensorDataset",
    "SeededImageFolder",
    "data_dir",
    "cache_dir",
    "data_locations",
    "balanced_indices",
    "sample_key",
    "load_cifar10",
    "load_imagenet_folders",
    "imagenet_transforms",
    "mixup_cutmix",
    "spectral_images",
    "make_spectral_task",
    "build_datasets",
    "dataset_task",
    "datasets_task",
    "MosaicSegmentation",
    "MosaicDetection",
    "SpectralRegions",
    "collate_detection",
    "make_mosaic_task",
    "make_spectral_regions",
    "ADE20K_NUM_CLASSES",
    "ADE20K_IGNORE_INDEX",
    "ADE20KSegmentation",
    "load_ade20k",
    "COCODetection",
    "load_coco",
]
