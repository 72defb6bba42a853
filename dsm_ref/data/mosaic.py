"""Dense tasks made from a seed, without files: mosaics of the caller's images (segmentation and
detection, one canvas for both) and a canvas of gratings in regions whose class is their band.

paper: DSM is evaluated on ADE20K and COCO / ours: these small stand-ins, so a dense model can be
trained and tested on 2 CPU cores in minutes, from CIFAR-10 or from any ``(N, 3, h, w)`` images
(random ones in the tests). Every sample is a pure function of ``(seed, index)``: the same seed
gives the same tensors in any order, in any worker.

Label convention, shared by both mosaic tasks: 0 is the background, the object of source class
``c`` is ``c + 1``; so CIFAR-10 gives 11 classes. ours / why: torchvision's detectors reserve
label 0 for the background, and one label map for both tasks lets a segmentation mask and a
detection target of the same canvas be compared directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .base import Datasets, ImageTensorDataset, _EpochSeeded, _splitmix64, sample_key
from .synthetic import SPECTRAL_BANDS

__all__ = [
    "Mosaic",
    "MosaicSegmentation",
    "MosaicDetection",
    "SpectralRegions",
    "boxes_from_instances",
    "collate_detection",
    "make_mosaic_task",
    "make_spectral_regions",
]

MOSAIC_TASKS = ("segment", "detect")
BAND_NAMES = ("low", "middle", "high")
REGIONS_MEAN, REGIONS_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(height, width) < 16:
        raise ValueError(f"canvas_size must be at least 16 px, got {(height, width)}")
    return height, width


def _pink_noise(channels: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """1/f noise ``(channels, H, W)``, each channel scaled to unit std."""
    white = torch.randn(channels, height, width, generator=generator)
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.fftfreq(width)[None, :]
    amplitude = 1.0 / torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(height, width))
    noise = torch.fft.ifft2(torch.fft.fft2(white) * amplitude).real
    return noise / noise.std(dim=(-2, -1), keepdim=True)


def _uniform(low: float, high: float, generator: torch.Generator, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def _normalise(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``(3, H, W)`` -> float32, ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)
    return (image.float() / 255.0 - mean_t) / std_t


# --- mosaics -------------------------------------------------------------------------------------

class Mosaic(NamedTuple):
    """One canvas before normalisation."""

    image: Tensor  #: ``(3, H, W)`` uint8
    mask: Tensor  #: ``(H, W)`` int64: 0 background, else the label of the paste on top
    instances: Tensor  #: ``(H, W)`` int64: which paste each pixel shows, -1 for the background
    labels: Tensor  #: ``(k,)`` int64: the mask value of each paste, in paste order
    areas: Tensor  #: ``(k,)`` int64: pixels of each paste before later ones covered it

class MosaicSegmentation(_EpochSeeded, Dataset):
    """Mosaics of the caller's images over a textured background, with per-pixel classes.

    Each canvas: seeded 1/f noise in a random colour (the background), then ``k`` images
    (``k`` uniform in ``objects``) drawn from ``images``, each resized to a random side in
    ``scale`` times the canvas's short side (aspect kept) and pasted at a random position fully
    inside the canvas; later pastes cover earlier ones.

    ``dataset[i] -> (image (3, H, W) float32 normalised, mask (H, W) int64)``: ``mask`` is 0 on
    the background and ``label + 1`` on a pasted image's visible pixels.

    Args:
        images: ``(N, 3, h, w)`` uint8 source images; labels: ``(N,)`` in ``[0, C)``.
        n: number of canvases.
        canvas_size: ``(H, W)`` or one int. ours: 96 (64-128 intended) / why: a pasted CIFAR
            image keeps roughly its own size, and 96 px still trains in minutes on a CPU.
        objects: ``(min, max)`` pastes per canvas.
        scale: ``(min, max)`` side of a paste over the canvas's short side.
        classes: names of the source classes (``C`` of them); default ``"0"...``.
        mean, std: per-channel statistics used to normalise (default: the source dataset's, or
            0.5 / 0.25).
        seed: fixes every canvas; canvas ``i`` is a function of ``(seed, i)`` only
            (``set_epoch``, which the training loop calls, changes nothing: no augmentation).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        n: int,
        *,
        canvas_size: int | Sequence[int] = 96,
        objects: tuple[int, int] = (1, 4),
        scale: tuple[float, float] = (0.25, 0.6),
        min_visible: float = 0.25,
        classes: Sequence[str] | None = None,
        mean: Sequence[float] = REGIONS_MEAN,
        std: Sequence[float] = REGIONS_STD,
        seed: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, h, w) uint8, got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} "
                             "images")
        if n < 1 or images.shape[0] < 1:
            raise ValueError(f"need n >= 1 canvases and at least one source image, got n={n}, "
                             f"{images.shape[0]} images")
        if not (1 <= objects[0] <= objects[1]):
            raise ValueError(f"objects must be (min, max) with 1 <= min <= max, got {objects}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale}")
        self.images = images
        self.labels = labels.long()
        num_source = int(self.labels.max()) + 1 if classes is None else len(classes)
        self.source_classes = tuple(classes) if classes is not None else tuple(
            str(c) for c in range(num_source))
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= num_source:
            raise ValueError(f"labels must lie in [0, {num_source}), got "
                             f"[{int(self.labels.min())}, {int(self.labels.max())}]")
        self.classes = ("background", *self.source_classes)
        self.num_classes = len(self.classes)
        self.n = int(n)
        self.canvas_size = _size2(canvas_size)
        self.objects = (int(objects[0]), int(objects[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.min_visible = float(min_visible)
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def mosaic(self, index: int) -> Mosaic:
        """Canvas ``index``, unnormalised (see :class:`Mosaic`)."""
        if not 0 <= index < self.n:
            raise IndexError(f"canvas {index} out of range for {self.n} canvases")
        generator = torch.Generator().manual_seed(sample_key(self.seed, 0, index))
        height, width = self.canvas_size
        colour = _uniform(0.25, 0.75, generator, 3, 1, 1)
        contrast = _uniform(0.05, 0.2, generator, 1)
        canvas = colour + contrast * _pink_noise(3, height, width, generator)
        canvas = (canvas.clamp(0, 1) * 255).round().to(torch.uint8)
        mask = torch.zeros(height, width, dtype=torch.long)
        instances = torch.full((height, width), -1, dtype=torch.long)
        count = int(torch.randint(self.objects[0], self.objects[1] + 1, (), generator=generator))
        sources = torch.randint(self.images.shape[0], (count,), generator=generator)
        paste_labels = self.labels[sources] + 1
        areas = torch.zeros(count, dtype=torch.long)
        src_h, src_w = self.images.shape[-2:]
        for k, source in enumerate(sources.tolist()):
            side = float(_uniform(*self.scale, generator, 1)) * min(height, width)
            ph = max(4, min(height, round(side)))
            pw = max(4, min(width, round(side * src_w / src_h)))
            y0 = int(torch.randint(0, height - ph + 1, (), generator=generator))
            x0 = int(torch.randint(0, width - pw + 1, (), generator=generator))
            patch = F.interpolate(self.images[source][None].float(), size=(ph, pw),
                                  mode="bilinear", align_corners=False, antialias=True)[0]
            canvas[:, y0:y0 + ph, x0:x0 + pw] = patch.round().clamp(0, 255).to(torch.uint8)
            mask[y0:y0 + ph, x0:x0 + pw] = paste_labels[k]
            instances[y0:y0 + ph, x0:x0 + pw] = k
            areas[k] = ph * pw
        return Mosaic(canvas, mask, instances, paste_labels, areas)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        made = self.mosaic(index)
        return _normalise(made.image, self.mean, self.std), made.mask

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.n}, canvas={self.canvas_size}, "
                f"objects={self.objects}, classes={self.num_classes}, seed={self.seed})")


def boxes_from_instances(instances: Tensor, paste_labels: Tensor, min_visible: float = 0.0,
                         areas: Tensor | None = None) -> dict[str, Tensor]:
    """Boxes of the visible extent of each paste: ``instances (H, W)`` (-1 = none) ->
    ``{"boxes": (K, 4) float32 x1, y1, x2, y2, "labels": (K,) int64}``.

    Pixel-edge coordinates: a paste covering columns ``a..b`` gives ``x1 = a``, ``x2 = b + 1``
    (so ``0 <= x1 < x2 <= W``). A paste with fewer than ``min_visible * areas[k]`` visible pixels
    (or none) gets no box.
    """
    boxes, labels = [], []
    for k in range(len(paste_labels)):
        visible = instances == k
        pixels = int(visible.sum())
        needed = 1 if areas is None else max(1.0, min_visible * float(areas[k]))
        if pixels < needed:
            continue
        rows = visible.any(dim=1).nonzero().flatten()
        cols = visible.any(dim=0).nonzero().flatten()
        boxes.append([float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)])
        labels.append(int(paste_labels[k]))
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long)}


class MosaicDetection(MosaicSegmentation):
    """The same canvases as :class:`MosaicSegmentation` (same arguments, same seed -> same
    images), with torchvision detection targets.

    ``dataset[i] -> (image (3, H, W) float32, {"boxes": (K, 4) float32, "labels": (K,) int64})``:
    one box per paste around its *visible* pixels (``x1, y1, x2, y2`` pixel edges), label
    ``source label + 1`` (0 is the background, as torchvision expects). A paste covered so
    that less than ``min_visible`` of it shows gets no box. ours: 0.25 / why: a sliver of a
    covered image carries no recognisable object, and COCO's crowd-free boxes are of objects one
    can name; its pixels stay labelled in the segmentation mask. Batch with
    :func:`collate_detection`.
    """

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        made = self.mosaic(index)
        target = boxes_from_instances(made.instances, made.labels, self.min_visible, made.areas)
        return _normalise(made.image, self.mean, self.std), target


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Tensor]]]
                      ) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """DataLoader ``collate_fn`` for detection: ``[(image, target), ...] -> ([images],
    [targets])`` (lists: torchvision's detectors take images and box sets of varying size)."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)


# --- spectral regions ----------------------------------------------------------------------------

class SpectralRegions(_EpochSeeded, Dataset):
    """A canvas cut into Voronoi regions, each a grating of one frequency band, over 1/f noise;
    the per-pixel class is the band (low, middle, high: :data:`SPECTRAL_BANDS`).

    Each region's grating has a random orientation, phase and colour, and its frequency is drawn
    inside its band, so neither orientation nor colour nor contrast gives the class away: only the
    local frequency does. A canvas mixes bands, so a fixed filter must pass all three; the DSM's
    band weights are per image and can weigh the bands this canvas uses, but the head must still
    place them. ours: 2-5 regions, noise 1.0 of the signal / why: regions large enough to hold a
    few periods of the lowest band at 64 px, and noise enough that the highest band is not free.

    ``dataset[i] -> (image (3, H, W) float32 normalised, mask (H, W) int64 in {0, 1, 2})``.
    """

    def __init__(self, n: int, *, canvas_size: int | Sequence[int] = 64,
                 regions: tuple[int, int] = (2, 5), noise: float = 1.0, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"need n >= 1 canvases, got {n}")
        if not (1 <= regions[0] <= regions[1]):
            raise ValueError(f"regions must be (min, max) with 1 <= min <= max, got {regions}")
        self.n = int(n)
        self.canvas_size = _size2(canvas_size)
        self.regions = (int(regions[0]), int(regions[1]))
        self.noise = float(noise)
        self.seed = seed
        self.classes = BAND_NAMES
        self.num_classes = len(SPECTRAL_BANDS)
        self.mean, self.std = REGIONS_MEAN, REGIONS_STD

    def __len__(self) -> int:
        return self.n

    def canvas(self, index: int) -> tuple[Tensor, Tensor]:
        """Canvas ``index``: ``image (3, H, W)`` uint8 and ``mask (H, W)`` int64 bands."""
        if not 0 <= index < self.n:
            raise IndexError(f"canvas {index} out of range for {self.n} canvases")
        generator = torch.Generator().manual_seed(sample_key(self.seed, 0, index))
        height, width = self.canvas_size
        count = int(torch.randint(self.regions[0], self.regions[1] + 1, (), generator=generator))
        centres = torch.rand(count, 2, generator=generator) * torch.tensor([height, width])
        y = torch.arange(height, dtype=torch.float32)[:, None, None]
        x = torch.arange(width, dtype=torch.float32)[None, :, None]
        distance = (y - centres[:, 0]) ** 2 + (x - centres[:, 1]) ** 2  # (H, W, count)
        region = distance.argmin(dim=-1)
        bands = torch.randint(len(SPECTRAL_BANDS), (count,), generator=generator)
        edges = torch.tensor(SPECTRAL_BANDS)
        frequency = edges[bands, 0] + (edges[bands, 1] - edges[bands, 0]) * torch.rand(
            count, generator=generator)
        theta = _uniform(0.0, math.pi, generator, count)
        phase = _uniform(0.0, 2 * math.pi, generator, count)
        colour = _uniform(0.5, 1.0, generator, count, 3)
        along = (x[..., 0] * theta.cos()[:, None, None]
                 + y[..., 0] * theta.sin()[:, None, None])  # (count, H, W)
        waves = torch.cos(2 * math.pi * frequency[:, None, None] * along + phase[:, None, None])
        chosen = waves.gather(0, region[None]).squeeze(0)  # (H, W): each pixel's region's wave
        signal = chosen[None] * colour[region].permute(2, 0, 1)  # (3, H, W)
        noise = _pink_noise(3, height, width, generator)
        image = 0.5 + 0.15 * (signal + self.noise * noise)
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        return image, bands[region]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.canvas(index)
        return _normalise(image, self.mean, self.std), mask

    def __repr__(self) -> str:
        return f"SpectralRegions(n={self.n}, canvas={self.canvas_size}, seed={self.seed})"


# --- train/test bundles --------------------------------------------------------------------------

def _split_seeds(seed: int) -> dict[str, int]:
    """Independent streams for the two splits (as the spectral tasks draw theirs)."""
    return {"train": _splitmix64(seed) >> 1, "test": _splitmix64(seed + 1) >> 1}


def make_mosaic_task(
    source: Datasets,
    task: str = "segment",
    n_train: int = 2000,
    n_test: int = 500,
    *,
    canvas_size: int = 96,
    seed: int = 0,
    **options,
) -> Datasets:
    """Mosaic segmentation or detection from the images of ``source`` (e.g. ``load_cifar10``'s):
    train canvases paste only ``source.train`` images, test canvases only ``source.test`` ones,
    each split from its own stream of ``seed``. ``options`` go to :class:`MosaicSegmentation`
    (``objects``, ``scale``, ``min_visible``). ``num_classes`` is the source's + 1 (background).

    ``source`` must hold its images in memory (:class:`~dsm_ref.data.base.ImageTensorDataset`:
    CIFAR-10, the spectral tasks), not ImageNet-style folders.
    """
    if task not in MOSAIC_TASKS:
        raise ValueError(f"unknown mosaic task {task!r}; expected one of: "
                         f"{', '.join(MOSAIC_TASKS)}")
    made = {}
    kind = MosaicSegmentation if task == "segment" else MosaicDetection
    for split, count in (("train", n_train), ("test", n_test)):
        split_data = getattr(source, split)
        if not isinstance(split_data, ImageTensorDataset):
            raise ValueError(f"mosaics need in-memory images (ImageTensorDataset, e.g. "
                             f"load_cifar10); {source.name}'s {split} split is "
                             f"{type(split_data).__name__}")
        made[split] = kind(split_data.images, split_data.labels, count,
                           canvas_size=canvas_size, classes=source.classes,
                           mean=split_data.mean, std=split_data.std,
                           seed=_split_seeds(seed)[split], **options)
    classes = made["train"].classes
    return Datasets(made["train"], made["test"], num_classes=len(classes),
                    img_size=max(_size2(canvas_size)), classes=classes,
                    name=f"mosaic-{task}/{source.name}", source=f"generated from {source.name}",
                    info={"task": task, "canvas_size": _size2(canvas_size),
                          "background": 0, "label_offset": 1})


def make_spectral_regions(n_train: int = 2000, n_test: int = 500, *, canvas_size: int = 64,
                          seed: int = 0, **options) -> Datasets:
    """:class:`SpectralRegions` as train/test datasets (independent streams of ``seed``)."""
    made = {split: SpectralRegions(count, canvas_size=canvas_size,
                                   seed=_split_seeds(seed)[split], **options)
            for split, count in (("train", n_train), ("test", n_test))}
    return Datasets(made["train"], made["test"], num_classes=len(BAND_NAMES),
                    img_size=max(_size2(canvas_size)), classes=BAND_NAMES,
                    name="spectral-regions", source="generated",
                    info={"bands_cycles_per_pixel": SPECTRAL_BANDS})
