"""Datasets for training a DSM: CIFAR-10 offline or online, ImageNet-style folders, and synthetic
spectral tasks. Defined in notebook 05 (training a DSM).

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

Every dataset here returns ``(image, label)`` with ``image: (3, H, W)`` float32, normalised, and
``label`` an int. Random augmentation is a pure function of ``(seed, epoch, index)`` (call
``set_epoch`` each epoch): a resumed run, a run with more loader workers and a run split over
several processes all see the same augmented image for the same sample. That is what lets the
trainer promise bit-equal resume and DDP == single process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .utils import atomic_torch_save

__all__ = [
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "CIFAR10_ARCHIVE",
    "CIFAR10_CLASSES",
    "DATASETS",
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
]

DATA_DIR_ENV = "DSM_DATA_DIR"
CACHE_DIR_ENV = "DSM_CACHE_DIR"
CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"
CIFAR10_FOLDER = "cifar10"
TORCHVISION_CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
# Channel statistics of the CIFAR-10 training set and of ImageNet (the values everyone uses).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPECTRAL_MEAN, SPECTRAL_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
_CACHE_FORMAT = "dsm_ref.cifar10-cache"
_CACHE_VERSION = 1


class DataError(RuntimeError):
    """Data that is missing, corrupt or laid out differently from what is expected."""


# --- where data lives ----------------------------------------------------------------------------

def _repo_root() -> Path | None:
    """The checkout this package runs from (editable install), or ``None`` when installed."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "dsm_ref").is_dir() else None


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder searched for datasets: ``root``, else ``$DSM_DATA_DIR``, else the default.

    Default: ``<repo>/data`` in a checkout, else ``~/.cache/dsm_ref/data``.
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    repo = _repo_root()
    return repo / "data" if repo else Path.home() / ".cache" / "dsm_ref" / "data"


def cache_dir() -> Path:
    """Folder for decoded tensors: ``$DSM_CACHE_DIR``, else ``<repo>/data/cache`` in a checkout,
    else ``~/.cache/dsm_ref``. Created on first write, never inside the data dir."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    repo = _repo_root()
    return repo / "data" / "cache" if repo else Path.home() / ".cache" / "dsm_ref"


def _source(name: str) -> str:
    return f"${name}" if os.environ.get(name) else "default"


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


# --- CIFAR-10 ------------------------------------------------------------------------------------

@dataclass
class _Decoded:
    """A decoded CIFAR-10: uint8 ``(N, 3, 32, 32)`` images and int64 labels per split."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    source: str


def _find_cifar10(root: Path) -> tuple[str, Path] | None:
    """The first CIFAR-10 source in ``root``: ``(kind, path)`` or ``None``."""
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "archive", root
    candidates = (
        ("archive", root / CIFAR10_ARCHIVE),
        ("folder", root / CIFAR10_FOLDER),
        ("torchvision", root / TORCHVISION_CIFAR10_FOLDER),
    )
    for kind, path in candidates:
        if (kind == "archive" and path.is_file()) or (kind != "archive" and path.is_dir()):
            return kind, path
    return None


def _missing_cifar10(root: Path, explicit: bool) -> DataError:
    exists = "exists" if root.is_dir() else "does not exist"
    origin = "the root argument" if explicit else _source(DATA_DIR_ENV)
    return DataError(
        f"CIFAR-10 not found. Looked in {root} (from {origin}; the folder {exists}) "
        f"for {CIFAR10_ARCHIVE}, {CIFAR10_FOLDER}/{{train,test}}/<class>/*.jpg or "
        f"{TORCHVISION_CIFAR10_FOLDER}/. To get it: set {DATA_DIR_ENV} to a folder holding one of "
        f"these, or download it with torchvision (~170 MB, needs the network and a writable "
        f"folder): `python -m dsm_ref train --data cifar10 --download ...` or "
        f"`load_cifar10(download=True)`. See data/README.md."
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _folder_digest(files: Sequence[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _parse_member(name: str) -> tuple[str, str] | None:
    """``.../{train,test}/<class>/<file>.jpg`` -> ``(split, class)``; other names -> ``None``."""
    parts = name.replace("\\", "/").split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in CIFAR10_SIZES else None


def _decode_image(data: bytes, name: str) -> Tensor:
    """JPEG/PNG bytes -> ``(3, H, W)`` uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
            width, height = image.size
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot decode image {name}: {err}") from err
    return array.view(height, width, 3).permute(2, 0, 1)


def _archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(member name, bytes)`` of each image in a tar archive, streamed (never extracted)."""
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if member.isfile() and _parse_member(member.name):
                    handle = archive.extractfile(member)
                    yield member.name, handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(
            f"{path} is corrupt or truncated ({type(err).__name__}: {err}). Expected a tar.gz of "
            f"cifar10/{{train,test}}/<class>/*.jpg; copy or download it again."
        ) from err


def _folder_members(files: Sequence[Path], root: Path) -> Iterator[tuple[str, bytes]]:
    for path in files:
        yield str(path.relative_to(root)), path.read_bytes()


def _assemble(members: Iterator[tuple[str, bytes]], source: str, progress: bool) -> _Decoded:
    """Decodes a stream of images into sorted uint8 tensors; checks the layout."""
    from tqdm.auto import tqdm

    found: dict[str, list[tuple[str, str, Tensor]]] = {"train": [], "test": []}
    total = sum(CIFAR10_SIZES.values())
    for name, data in tqdm(members, total=total, desc="decoding CIFAR-10 (once)", unit="img",
                           disable=not progress, mininterval=2.0):
        split, cls = _parse_member(name)
        found[split].append((cls, name, _decode_image(data, name)))
    classes = tuple(sorted({cls for items in found.values() for cls, _, _ in items}))
    problems = [f"no {split} images" for split, items in found.items() if not items]
    if classes and set(classes) != set(CIFAR10_CLASSES):
        problems.append(f"classes {classes} differ from CIFAR-10's {CIFAR10_CLASSES}")
    shapes = {tuple(img.shape) for items in found.values() for _, _, img in items}
    if len(shapes) > 1:
        problems.append(f"images of several sizes {sorted(shapes)[:4]}")
    if problems:
        raise DataError(f"{source} does not look like CIFAR-10: {'; '.join(problems)}. Expected "
                        f"cifar10/{{train,test}}/<class>/*.jpg with the 10 CIFAR-10 classes.")
    tensors = {}
    for split, items in found.items():
        items.sort(key=lambda item: (item[0], item[1]))
        tensors[f"{split}_images"] = torch.stack([img for _, _, img in items])
        tensors[f"{split}_labels"] = torch.tensor([classes.index(c) for c, _, _ in items])
    return _Decoded(**tensors, classes=classes, source=source)


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` (POSIX ``flock``), so parallel processes decode once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, at worst two processes decode
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_cache(path: Path) -> _Decoded | None:
    """A decoded cache written by :func:`_decode_cached`, or ``None`` if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # corrupt cache: decode again (the source is the truth)
        return None
    if not isinstance(state, dict) or state.get("format") != _CACHE_FORMAT \
            or state.get("version") != _CACHE_VERSION:
        return None
    return _Decoded(**{k: state[k] for k in ("train_images", "train_labels", "test_images",
                                              "test_labels")},
                    classes=tuple(state["classes"]), source=state["source"])


def _decode_cached(kind: str, path: Path, progress: bool) -> _Decoded:
    """Decodes a JPEG source once into ``cache_dir()/cifar10-<key>.pt`` and loads it (mmap)."""
    if kind == "archive":
        key = _file_digest(path)
        files: list[Path] = []
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and _parse_member(str(p)))
        key = _folder_digest(files, path)
    cached_path = cache_dir() / f"cifar10-{key}.pt"
    decoded = _load_cache(cached_path)
    if decoded is not None:
        return _with_digest(decoded, kind, key)

    def decode() -> _Decoded:
        members = _archive_members(path) if kind == "archive" else _folder_members(files, path)
        return _assemble(members, str(path), progress)

    with contextlib.ExitStack() as stack:
        try:
            cached_path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_file_lock(cached_path.with_suffix(".lock")))
        except OSError as err:  # a read-only cache dir: decode in memory, and say so
            warnings.warn(f"cannot write the decoded cache to {cached_path.parent} ({err}); "
                          f"decoding {path} in memory. Set {CACHE_DIR_ENV} to a writable "
                          f"folder.", stacklevel=3)
            return decode()
        decoded = _load_cache(cached_path)  # another process may have finished meanwhile
        if decoded is None:
            decoded = decode()
            state = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION,
                     "classes": list(decoded.classes), "source": decoded.source,
                     "train_images": decoded.train_images, "train_labels": decoded.train_labels,
                     "test_images": decoded.test_images, "test_labels": decoded.test_labels}
            atomic_torch_save(state, cached_path)
    return _with_digest(decoded, kind, key)


def _with_digest(decoded: _Decoded, kind: str, key: str) -> _Decoded:
    """Names the source's content in ``source``: the archive's sha256 (first 16 hex digits),
    or for a folder a hash of its file names, sizes and modification times."""
    label = "sha256" if kind == "archive" else "listing-sha256"
    return dataclasses.replace(decoded, source=f"{decoded.source} ({label} {key})")


def _load_torchvision_cifar10(root: Path, download: bool) -> _Decoded:
    """torchvision's CIFAR-10 (the original pickled release), downloading it if asked."""
    from torchvision.datasets import CIFAR10

    splits = {}
    try:
        for split, is_train in (("train", True), ("test", False)):
            dataset = CIFAR10(str(root), train=is_train, download=download)
            splits[split] = (torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(),
                             torch.tensor(dataset.targets))
    except (RuntimeError, OSError) as err:
        raise DataError(f"torchvision could not load CIFAR-10 from {root}: {err}. With "
                        f"download=True it needs the network and a writable {root}; or set "
                        f"{DATA_DIR_ENV} to a folder holding {CIFAR10_ARCHIVE}.") from err
    return _Decoded(*splits["train"], *splits["test"], classes=CIFAR10_CLASSES,
                    source=str(root / TORCHVISION_CIFAR10_FOLDER))


def _decoded_cifar10(root: str | os.PathLike | None, download: bool, progress: bool) -> _Decoded:
    folder = data_dir(root)
    found = _find_cifar10(folder)
    if found is None:
        if not download:
            raise _missing_cifar10(folder, explicit=root is not None)
        folder.mkdir(parents=True, exist_ok=True)
        return _load_torchvision_cifar10(folder, download=True)
    kind, path = found
    if kind == "torchvision":
        return _load_torchvision_cifar10(folder, download=False)
    return _decode_cached(kind, path, progress)


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


def load_cifar10(
    n_train: int | None = None,
    n_test: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    augment: bool = True,
    seed: int = 0,
    subset_seed: int = 0,
    progress: bool = True,
) -> Datasets:
    """CIFAR-10 as in-memory datasets; ``n_train`` / ``n_test`` take class-balanced subsets.

    Args:
        root: a data dir or an archive file; default :func:`data_dir`.
        download: fetch torchvision's copy into the data dir when no local copy is found.
        augment: pad-4 random crop + flip on the training set (the standard CIFAR recipe).
        seed: augmentation seed. subset_seed: which images a subset holds (fixed by default, so
            runs with different seeds train on the same images).

    Returns train ``(n_train, 3, 32, 32)`` and test ``(n_test, 3, 32, 32)`` datasets.
    Raises :class:`DataError` when the data is missing or corrupt, saying where it looked.
    """
    decoded = _decoded_cifar10(root, download, progress)
    common = dict(classes=decoded.classes, mean=CIFAR10_MEAN, std=CIFAR10_STD, seed=seed)
    train = ImageTensorDataset(decoded.train_images, decoded.train_labels,
                               augment="crop_flip" if augment else None, **common)
    test = ImageTensorDataset(decoded.test_images, decoded.test_labels, **common)
    full = {"train": len(train), "test": len(test)}
    if n_train is not None and n_train < len(train):
        train = train.subset(balanced_indices(train.labels, n_train, subset_seed))
    if n_test is not None and n_test < len(test):
        test = test.subset(balanced_indices(test.labels, n_test, subset_seed + 1))
    return Datasets(train, test, num_classes=len(decoded.classes), img_size=32,
                    classes=decoded.classes, name="cifar10", source=decoded.source,
                    info={"full_sizes": full, "augment": "crop_flip" if augment else "none"})


# --- ImageNet-style folders ----------------------------------------------------------------------

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
    paper: "the DeiT recipe" is what its family (GFNet, DynaMixer) trains with; exact augmentation
    not stated / ours: torchvision's RandAugment, close to but not identical with timm's
    ``rand-m9-mstd0.5-inc1`` / why: no timm dependency; MixUp/CutMix act on batches
    (:func:`mixup_cutmix`).
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


# --- synthetic spectral tasks --------------------------------------------------------------------

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
