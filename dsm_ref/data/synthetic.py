"""Synthetic spectral tasks, generated from a seed without files: oriented gratings in one of
three radial frequency bands over 1/f noise, whose class is the orientation."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Datasets, ImageTensorDataset, _splitmix64

SPECTRAL_MEAN, SPECTRAL_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

# Radial frequency bands in cycles per pixel (Nyquist is 0.5): low, middle, high.
SPECTRAL_BANDS = ((0.07, 0.12), (0.16, 0.24), (0.30, 0.42))

SPECTRAL_TASKS: dict[str, str] = {
    "band_shift": (
        "The class is the orientation of a grating whose radial frequency band (low, middle or "
        "high) is drawn per image, over 1/f noise. Tests content-adaptive band selection: a "
        "static filter must keep all three bands open (and so lets in their noise), a dynamic "
        "one can open the band this image uses."
    ),
    "distractor": (
        "As band_shift, plus a weaker grating of random orientation in another band. The class is "
        "carried by the stronger of the two. Tests *selecting* a band per image: every band holds "
        "a grating in some images, so no fixed filter can suppress the distractor."
    ),
    "distractors": (
        "The hard variant: every band holds a grating. The image's informative band (drawn per "
        "image) carries the class; each other band carries a weaker grating (0.7 of the "
        "amplitude, before each grating's random colour) oriented as another class. A model "
        "that pools orientation evidence over all bands sees three classes; it must weigh the "
        "bands of each image to find the strongest."
    ),
    "fixed_band": (
        "Control: the class grating always sits in the middle band. A static filter suffices, so "
        "a dynamic and a static mixer should tie here; a gap means something else differs."
    ),
}


def _pink_noise(count: int, channels: int, size: int, generator: torch.Generator) -> Tensor:
    """1/f noise, ``(count, channels, size, size)``, each image scaled to unit std."""
    white = torch.randn(count, channels, size, size, generator=generator)
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.fftfreq(size)[None, :]
    amplitude = 1.0 / torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / size)
    noise = torch.fft.ifft2(torch.fft.fft2(white) * amplitude).real
    return noise / noise.std(dim=(-2, -1), keepdim=True)


def _grating(theta: Tensor, frequency: Tensor, phase: Tensor, size: int) -> Tensor:
    """Plane waves ``cos(2 pi f (x cos t + y sin t) + phase)``, ``(count, size, size)``."""
    coords = torch.arange(size, dtype=torch.float32)
    y, x = coords[:, None], coords[None, :]
    along = x * theta.cos()[:, None, None] + y * theta.sin()[:, None, None]
    return torch.cos(2 * math.pi * frequency[:, None, None] * along + phase[:, None, None])


def _uniform(low: float | Tensor, high: float | Tensor, count: int,
             generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _spectral_chunk(task: str, count: int, size: int, num_classes: int,
                    generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` images of one task: uint8 ``(count, 3, size, size)``, labels, informative bands."""
    labels = torch.randint(num_classes, (count,), generator=generator)
    spacing = math.pi / num_classes
    theta = labels * spacing + _uniform(-0.2 * spacing, 0.2 * spacing, count, generator)
    if task == "fixed_band":
        bands = torch.ones(count, dtype=torch.long)
    else:
        bands = torch.randint(len(SPECTRAL_BANDS), (count,), generator=generator)
    edges = torch.tensor(SPECTRAL_BANDS)
    frequency = _uniform(edges[bands, 0], edges[bands, 1], count, generator)
    phase = _uniform(0.0, 2 * math.pi, count, generator)
    color = _uniform(0.5, 1.0, count * 3, generator).view(count, 3, 1, 1)
    signal = _grating(theta, frequency, phase, size)[:, None] * color
    if task == "distractors":
        for shift in range(1, len(SPECTRAL_BANDS)):
            other = (bands + shift) % len(SPECTRAL_BANDS)
            other_label = (labels + torch.randint(1, num_classes, (count,), generator=generator)
                           ) % num_classes
            other_theta = other_label * spacing + _uniform(-0.2 * spacing, 0.2 * spacing, count,
                                                           generator)
            other_frequency = _uniform(edges[other, 0], edges[other, 1], count, generator)
            other_phase = _uniform(0.0, 2 * math.pi, count, generator)
            other_color = _uniform(0.5, 1.0, count * 3, generator).view(count, 3, 1, 1)
            signal = signal + 0.7 * _grating(other_theta, other_frequency, other_phase,
                                             size)[:, None] * other_color
    if task == "distractor":
        offset = torch.randint(1, len(SPECTRAL_BANDS), (count,), generator=generator)
        other = (bands + offset) % len(SPECTRAL_BANDS)
        other_frequency = _uniform(edges[other, 0], edges[other, 1], count, generator)
        other_theta = _uniform(0.0, math.pi, count, generator)
        other_phase = _uniform(0.0, 2 * math.pi, count, generator)
        other_color = _uniform(0.5, 1.0, count * 3, generator).view(count, 3, 1, 1)
        signal = signal + 0.6 * _grating(other_theta, other_frequency, other_phase,
                                         size)[:, None] * other_color
    image = 0.5 + 0.15 * (signal + 1.2 * _pink_noise(count, 3, size, generator))
    image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image, labels, bands


def spectral_images(
    task: str = "band_shift",
    n: int = 1000,
    *,
    img_size: int = 32,
    num_classes: int = 8,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Generates ``n`` images of a spectral task, deterministically from ``seed``.

    Returns ``images (n, 3, S, S)`` uint8, ``labels (n,)`` in ``[0, num_classes)`` (the grating's
    orientation: class ``c`` is ``c * 180 / num_classes`` degrees, +-20% of the spacing) and
    ``bands (n,)`` in ``{0, 1, 2}``: the band that carries the class in each image. See
    :data:`SPECTRAL_TASKS` for what each task tests.
    """
    if task not in SPECTRAL_TASKS:
        raise ValueError(f"unknown spectral task {task!r}; expected one of {list(SPECTRAL_TASKS)}")
    if n < 1 or img_size < 8 or num_classes < 2:
        raise ValueError(f"need n >= 1, img_size >= 8, num_classes >= 2; got {n}, {img_size}, "
                         f"{num_classes}")
    generator = torch.Generator().manual_seed(seed)
    chunks = [_spectral_chunk(task, min(1024, n - start), img_size, num_classes, generator)
              for start in range(0, n, 1024)]
    return tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))


def make_spectral_task(
    task: str = "band_shift",
    n_train: int | None = 8000,
    n_test: int | None = 2000,
    *,
    img_size: int = 32,
    num_classes: int = 8,
    seed: int = 0,
) -> Datasets:
    """A synthetic spectral task as train/test datasets (no files, no augmentation).

    Train and test are generated from different streams of ``seed``. No flips or crops: a flip
    would change a grating's orientation, i.e. its class. Each dataset keeps the informative band
    of every image in ``dataset.metadata["band"]``.
    """
    n_train = 8000 if n_train is None else n_train
    n_test = 2000 if n_test is None else n_test
    names = tuple(f"{round(c * 180 / num_classes)} deg" for c in range(num_classes))
    split_seeds = {"train": _splitmix64(seed) >> 1, "test": _splitmix64(seed + 1) >> 1}
    made = {}
    for split, count in (("train", n_train), ("test", n_test)):
        images, labels, bands = spectral_images(task, count, img_size=img_size,
                                                num_classes=num_classes, seed=split_seeds[split])
        made[split] = ImageTensorDataset(images, labels, classes=names, mean=SPECTRAL_MEAN,
                                         std=SPECTRAL_STD, seed=seed, metadata={"band": bands})
    return Datasets(made["train"], made["test"], num_classes=num_classes, img_size=img_size,
                    classes=names, name=f"spectral/{task}", source="generated",
                    info={"task": task, "description": SPECTRAL_TASKS[task],
                          "bands_cycles_per_pixel": SPECTRAL_BANDS})
