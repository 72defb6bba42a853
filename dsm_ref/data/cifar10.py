"""CIFAR-10: finding it in the data dir, decoding JPEG sources once into a cached uint8 tensor
file keyed by the source's content, torchvision's copy, and :func:`load_cifar10`."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import tarfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..files import atomic_torch_save
from .base import Datasets, ImageTensorDataset, balanced_indices
from .paths import CACHE_DIR_ENV, DATA_DIR_ENV, DataError, _source, cache_dir, data_dir

CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"
CIFAR10_FOLDER = "cifar10"
TORCHVISION_CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
# Channel statistics of the CIFAR-10 training set (the values everyone uses).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_CACHE_FORMAT = "dsm_ref.cifar10-cache"
_CACHE_VERSION = 1


@dataclass
class _Decoded:
    """A decoded CIFAR-10: uint8 ``(N, 3, 32, 32)`` images and int64 labels per split."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    source: str


# --- finding a source ----------------------------------------------------------------------------

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


# --- decoding JPEG sources -----------------------------------------------------------------------

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


# --- the decoded cache ---------------------------------------------------------------------------

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


# --- torchvision's copy, and the datasets --------------------------------------------------------

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
