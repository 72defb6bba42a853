"""What every data source shares: augmentation keyed by ``(seed, epoch, index)``, the
in-memory image dataset, class-balanced subsets, the train/test bundle and batch mixing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Dataset

# --- keyed randomness ----------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One step of SplitMix64: a fast, well-mixed 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_key(seed: int, epoch: int, index: int) -> int:
    """63-bit key of one sample's augmentation in one epoch (the same on every machine)."""
    return _splitmix64(_splitmix64(_splitmix64(seed) ^ epoch) ^ index) >> 1


class _EpochSeeded:
    """Mixin: augmentation keyed by ``(seed, epoch, index)``; the loop calls ``set_epoch``."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


# --- in-memory image tensors ---------------------------------------------------------------------

class ImageTensorDataset(_EpochSeeded, Dataset):
    """uint8 images in memory, normalised (and augmented) on the fly, a batch at a time.

    Args:
        images: ``(N, C, H, W)`` uint8.
        labels: ``(N,)`` int64.
        classes: class names, ``classes[label]``.
        mean, std: per-channel statistics in ``[0, 1]`` units used to normalise.
        augment: ``"crop_flip"`` (zero-pad ``pad`` pixels, random ``H x W`` crop, horizontal flip
            with p = 0.5: the standard CIFAR recipe) or ``None``.
        seed: augmentation seed; with ``set_epoch`` it fixes every random crop.
        metadata: extra per-sample tensors ``(N, ...)`` kept through :meth:`subset` (e.g. the
            informative band of a spectral task).

    ``dataset[i] -> ((C, H, W) float32, int)``; the DataLoader fetches whole batches through
    ``__getitems__``, so the augmentation runs vectorised over the batch.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        augment: str | None = None,
        pad: int = 4,
        seed: int = 0,
        metadata: dict[str, Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"augment must be None or 'crop_flip', got {augment!r}")
        self.images = images
        self.labels = labels.long()
        self.classes = tuple(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.pad = pad
        self.seed = seed
        self.metadata = dict(metadata or {})
        channels = images.shape[1]
        self._shift = torch.tensor(self.mean).view(1, channels, 1, 1) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std).view(1, channels, 1, 1) * 255.0)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def subset(self, indices: Sequence[int] | Tensor) -> ImageTensorDataset:
        """A new dataset over ``indices`` (copies those images), same transforms and seed."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorDataset(
            self.images[index].contiguous(), self.labels[index], classes=self.classes,
            mean=self.mean, std=self.std, augment=self.augment, pad=self.pad, seed=self.seed,
            metadata={k: v[index] for k, v in self.metadata.items()},
        )

    def with_augment(self, augment: str | None) -> ImageTensorDataset:
        """The same images (shared, not copied) with another augmentation."""
        return ImageTensorDataset(
            self.images, self.labels, classes=self.classes, mean=self.mean, std=self.std,
            augment=augment, pad=self.pad, seed=self.seed, metadata=self.metadata,
        )

    def _crop_flip(self, images: Tensor, indices: Sequence[int]) -> Tensor:
        """Random pad-and-crop plus horizontal flip, per sample. ``(B, C, H, W)`` uint8 in/out.

        One ``gather`` over the flattened padded images does both (cheaper than per-sample
        slicing, and the offsets come from :func:`sample_key`, not from the torch RNG).
        """
        b, c, h, w = images.shape
        pad, span = self.pad, 2 * self.pad + 1
        keys = [sample_key(self.seed, self.epoch, int(i)) for i in indices]
        dy = torch.tensor([k % span for k in keys])
        dx = torch.tensor([(k // span) % span for k in keys])
        flip = torch.tensor([(k // span // span) % 2 == 1 for k in keys])
        rows = dy[:, None] + torch.arange(h)  # (B, H) rows of the padded image
        cols = torch.where(flip[:, None], torch.arange(w - 1, -1, -1), torch.arange(w))
        cols = dx[:, None] + cols  # (B, W)
        flat = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]  # (B, H, W)
        padded = images.new_zeros(b, c, h + 2 * pad, w + 2 * pad)
        padded[..., pad:pad + h, pad:pad + w] = images
        cropped = torch.gather(padded.view(b, c, -1), 2, flat.view(b, 1, -1).expand(b, c, -1))
        return cropped.view(b, c, h, w)

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``indices`` -> ``(B, C, H, W)`` float32 normalised images and ``(B,)`` labels."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if self.augment == "crop_flip":
            images = self._crop_flip(images, index.tolist())
        images = (images.float() - self._shift) * self._scale
        return images.contiguous(), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, int]]:
        images, labels = self.get_batch(indices)
        return list(zip(images.unbind(0), labels.tolist(), strict=True))

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        images, labels = self.get_batch([index])
        return images[0], int(labels[0])

    def denormalize(self, images: Tensor) -> Tensor:
        """Normalised ``(..., C, H, W)`` back to ``[0, 1]`` for display."""
        channels = images.shape[-3]
        mean = torch.tensor(self.mean).view(channels, 1, 1)
        std = torch.tensor(self.std).view(channels, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def __repr__(self) -> str:
        return (f"ImageTensorDataset(n={len(self)}, image_size={self.image_size}, "
                f"classes={len(self.classes)}, augment={self.augment!r})")


def balanced_indices(labels: Tensor, n: int | None, seed: int = 0) -> Tensor:
    """``n`` indices with the classes as equal as possible, chosen by ``seed``; sorted.

    ``labels: (N,)``. ``n=None`` or ``n >= N`` returns all indices. Class ``c`` gets
    ``n // K`` samples (+1 for the first ``n % K`` classes in a seeded order), each a seeded
    random pick among that class, so ``n=1000`` of CIFAR-10 is 100 per class.
    """
    total = labels.shape[0]
    if n is None or n >= total:
        return torch.arange(total)
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    order = classes[torch.randperm(len(classes), generator=generator)]
    per_class = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    chosen = []
    for cls, count in zip(order.tolist(), per_class, strict=True):
        members = torch.nonzero(labels == cls).flatten()
        pick = members[torch.randperm(len(members), generator=generator)[:count]]
        chosen.append(pick)
    picked = torch.cat(chosen)
    if len(picked) < n:  # a class had fewer samples than its share: top up from the rest
        rest = torch.ones(total, dtype=torch.bool)
        rest[picked] = False
        others = torch.nonzero(rest).flatten()
        extra = others[torch.randperm(len(others), generator=generator)[: n - len(picked)]]
        picked = torch.cat([picked, extra])
    return picked.sort().values


def random_subset(total: int, n: int, seed: int) -> Tensor:
    """``n`` of ``range(total)`` picked at random by ``seed``, sorted (all when ``n >= total``):
    subsets of unlabelled collections such as ADE20K or COCO images, whose file order follows
    the scene, so taking the first ``n`` would not be a fair sample."""
    return balanced_indices(torch.zeros(total, dtype=torch.long), n, seed)


# --- the dataset bundle --------------------------------------------------------------------------

@dataclass
class Datasets:
    """A train/test pair and what the trainer needs to know about it."""

    train: Dataset
    test: Dataset
    num_classes: int
    img_size: int
    classes: tuple[str, ...]
    name: str
    source: str = ""
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Datasets({self.name!r}: train {len(self.train)}, test {len(self.test)}, "
                f"{self.num_classes} classes, {self.img_size}px, from {self.source})")


# --- batch mixing --------------------------------------------------------------------------------

def mixup_cutmix(num_classes: int, mixup: float = 0.0, cutmix: float = 0.0) -> Callable | None:
    """Batch transform ``(images (B, 3, H, W), labels (B,)) -> (images, soft targets (B, K))``.

    One of MixUp(alpha=``mixup``) / CutMix(alpha=``cutmix``) per batch, chosen with equal odds
    (timm's ``switch_prob=0.5``); ``None`` when both are 0. torchvision.transforms.v2.
    """
    from torchvision.transforms import v2

    ops = []
    if mixup > 0:
        ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
