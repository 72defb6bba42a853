"""dsm_ref.data: CIFAR-10 from an archive (a generated one, and the shared copy when present),
ImageNet-style folders, spectral tasks, keyed augmentation, and the errors users see."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import needs_shared_cifar
from PIL import Image

from dsm_ref import data as D


def _jpeg(seed: int, size: tuple[int, int] = (32, 32)) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _make_archive(path: Path, per_class: int = 2, classes=D.CIFAR10_CLASSES) -> Path:
    """A tiny archive in the shared layout: cifar10/{train,test}/<class>/NNNN.jpg."""
    with tarfile.open(path, "w:gz") as archive:
        for split in ("test", "train"):
            for c, cls in enumerate(classes):
                for i in range(per_class):
                    payload = _jpeg((split == "train") * 1000 + c * per_class + i)
                    info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{i:04d}.jpg")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(D.CACHE_DIR_ENV, str(folder))
    return folder


# --- locations -----------------------------------------------------------------------------------

def test_data_and_cache_dirs_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(D.CACHE_DIR_ENV, str(tmp_path / "c"))
    assert D.data_dir() == tmp_path / "d"
    assert D.cache_dir() == tmp_path / "c"
    assert D.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(D.DATA_DIR_ENV)
    assert D.data_dir().name == "data"
    locations = D.data_locations()
    assert {"data dir", "cache dir", "cifar10", "imagenet"} <= set(locations)


# --- CIFAR-10 from an archive --------------------------------------------------------------------

def test_archive_is_decoded_once_into_the_cache(tmp_path, cache, monkeypatch):
    archive = _make_archive(tmp_path / D.CIFAR10_ARCHIVE)
    data = D.load_cifar10(root=tmp_path, progress=False)
    assert len(data.train) == 20 and len(data.test) == 20
    assert data.train.images.shape == (20, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.classes == D.CIFAR10_CLASSES and data.num_classes == 10
    assert data.train.labels.bincount().tolist() == [2] * 10
    image, label = data.test[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 0
    cached = list(cache.glob("cifar10-*.pt"))
    assert len(cached) == 1
    assert not list(tmp_path.glob("cifar10/*")), "the archive must not be extracted"

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr("dsm_ref.data.cifar10._assemble", no_decode)  # where it is looked up
    again = D.load_cifar10(root=archive, n_train=10, progress=False)  # root may be the file
    assert torch.equal(again.test.images, data.test.images)
    assert again.train.labels.bincount().tolist() == [1] * 10


def test_extracted_folder_works_like_the_archive(tmp_path, cache):
    archive = _make_archive(tmp_path / "a.tar.gz", per_class=1)
    folder = tmp_path / "data"
    folder.mkdir()
    with tarfile.open(archive) as handle:
        handle.extractall(folder, filter="data")
    from_folder = D.load_cifar10(root=folder, progress=False)
    from_archive = D.load_cifar10(root=archive, progress=False)
    assert torch.equal(from_folder.train.images, from_archive.train.images)
    assert torch.equal(from_folder.train.labels, from_archive.train.labels)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path, cache, monkeypatch):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(D.DataError) as err:
        D.load_cifar10(progress=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert D.DATA_DIR_ENV in message and "--download" in message
    assert D.CIFAR10_ARCHIVE in message


def test_truncated_archive_is_a_clear_error(tmp_path, cache):
    whole = _make_archive(tmp_path / "whole.tar.gz").read_bytes()
    broken = tmp_path / "broken" / D.CIFAR10_ARCHIVE
    broken.parent.mkdir()
    broken.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(D.DataError, match="corrupt or truncated") as err:
        D.load_cifar10(root=broken.parent, progress=False)
    assert str(broken) in str(err.value)
    assert not list(cache.glob("*.pt")), "nothing may be cached from a broken archive"


def test_archive_with_another_layout_is_rejected(tmp_path, cache):
    path = _make_archive(tmp_path / D.CIFAR10_ARCHIVE, per_class=1, classes=("cats", "dogs"))
    with pytest.raises(D.DataError, match="does not look like CIFAR-10"):
        D.load_cifar10(root=path, progress=False)


def test_corrupt_cache_is_rebuilt(tmp_path, cache):
    _make_archive(tmp_path / D.CIFAR10_ARCHIVE, per_class=1)
    first = D.load_cifar10(root=tmp_path, progress=False)
    (cached,) = cache.glob("cifar10-*.pt")
    cached.write_bytes(b"not a tensor file")
    second = D.load_cifar10(root=tmp_path, progress=False)
    assert torch.equal(first.train.images, second.train.images)


def test_unwritable_cache_dir_decodes_in_memory_with_a_warning(tmp_path, monkeypatch):
    _make_archive(tmp_path / D.CIFAR10_ARCHIVE, per_class=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(D.CACHE_DIR_ENV, str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write the decoded cache"):
        data = D.load_cifar10(root=tmp_path, progress=False)
    assert len(data.train) == 10


@needs_shared_cifar
def test_shared_archive_subsets_are_balanced_and_reuse_one_decode():
    data = D.load_cifar10(n_train=500, n_test=200, progress=False)
    assert data.info["full_sizes"] == {"train": 50_000, "test": 10_000}
    assert len(data.train) == 500 and len(data.test) == 200
    assert data.train.labels.bincount().tolist() == [50] * 10
    assert data.test.labels.bincount().tolist() == [20] * 10
    assert data.train.images.shape == (500, 3, 32, 32)
    again = D.load_cifar10(n_train=500, n_test=200, progress=False)
    assert torch.equal(again.train.images, data.train.images)
    assert len(list(D.cache_dir().glob("cifar10-*.pt"))) >= 1
    images, labels = data.train.get_batch(range(8))
    assert images.shape == (8, 3, 32, 32) and abs(images.mean().item()) < 1.0


# --- in-memory datasets and keyed augmentation ---------------------------------------------------

def _tensor_dataset(n: int = 12, augment: str | None = "crop_flip") -> D.ImageTensorDataset:
    images = torch.randint(0, 256, (n, 3, 8, 10), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    return D.ImageTensorDataset(images, torch.arange(n) % 3, classes=("a", "b", "c"),
                                mean=(0.5,) * 3, std=(0.25,) * 3, augment=augment, pad=2, seed=5)


def test_crop_flip_matches_a_per_sample_reference():
    dataset = _tensor_dataset()
    dataset.set_epoch(3)
    batch, _ = dataset.get_batch(range(len(dataset)))
    for i in range(len(dataset)):
        key = D.sample_key(5, 3, i)
        dy, dx, flip = key % 5, (key // 5) % 5, (key // 25) % 2 == 1
        padded = torch.nn.functional.pad(dataset.images[i].float(), (2, 2, 2, 2))
        crop = padded[:, dy:dy + 8, dx:dx + 10]
        crop = crop.flip(-1) if flip else crop
        assert torch.allclose(batch[i], (crop / 255 - 0.5) / 0.25, atol=1e-5)


def test_augmentation_depends_on_seed_epoch_index_only():
    dataset = _tensor_dataset()
    dataset.set_epoch(1)
    together, _ = dataset.get_batch([4, 7, 9])
    alone = torch.stack([dataset[i][0] for i in (9, 7, 4)]).flip(0)
    assert torch.equal(together, alone), "a sample's crop must not depend on its batch"
    state = torch.get_rng_state()
    dataset.get_batch(range(12))
    assert torch.equal(state, torch.get_rng_state()), "augmentation must not use the global RNG"
    dataset.set_epoch(2)
    epoch2, _ = dataset.get_batch(range(12))
    dataset.set_epoch(1)
    assert not torch.equal(epoch2, dataset.get_batch(range(12))[0])


def test_subset_and_balanced_indices():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    picked = D.balanced_indices(labels, 9, seed=0)
    assert labels[picked].bincount().tolist() == [3, 3, 3]
    assert torch.equal(picked, D.balanced_indices(labels, 9, seed=0))
    assert len(D.balanced_indices(labels, 12, seed=0)) == 12
    assert len(D.balanced_indices(labels, 20, seed=0).unique()) == 20  # short class topped up
    assert torch.equal(D.balanced_indices(labels, None), torch.arange(23))
    subset = _tensor_dataset().subset([1, 2])
    assert len(subset) == 2 and subset.seed == 5 and subset.augment == "crop_flip"


def test_dataloader_batches_through_getitems():
    dataset = _tensor_dataset(augment=None)
    loader = torch.utils.data.DataLoader(dataset, batch_size=5)
    images, labels = next(iter(loader))
    assert images.shape == (5, 3, 8, 10) and labels.tolist() == [0, 1, 2, 0, 1]
    assert torch.allclose(dataset.denormalize(images[0]), dataset.images[0] / 255, atol=1e-6)


# --- ImageNet-style folders ----------------------------------------------------------------------

def _make_image_folder(root: Path, classes=("n01", "n02"), per_class: int = 3) -> Path:
    for split in ("train", "val"):
        for c, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"img_{i}.JPEG").write_bytes(_jpeg(c * 100 + i, size=(48, 40)))
    return root


def test_imagenet_folders_train_and_eval_transforms(tmp_path):
    root = _make_image_folder(tmp_path / "imagenet")
    data = D.load_imagenet_folders(root, img_size=32, n_train=4)
    assert data.num_classes == 2 and data.classes == ("n01", "n02") and data.img_size == 32
    assert len(data.train) == 4 and len(data.test) == 6
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label in (0, 1)
    assert data.test[0][0].shape == (3, 32, 32)
    state = torch.get_rng_state()
    data.train.set_epoch(1)
    first = data.train[2][0]
    assert torch.equal(first, data.train[2][0]), "train transforms are keyed by (epoch, index)"
    assert torch.equal(state, torch.get_rng_state())
    data.train.set_epoch(2)
    assert not torch.equal(first, data.train[2][0])
    loader = torch.utils.data.DataLoader(data.train, batch_size=2)
    assert next(iter(loader))[0].shape == (2, 3, 32, 32)


def test_imagenet_folder_errors(tmp_path):
    with pytest.raises(D.DataError, match="no train or val"):
        D.load_imagenet_folders(tmp_path / "missing")
    root = _make_image_folder(tmp_path / "a")
    (root / "val" / "n03").mkdir()
    (root / "val" / "n03" / "x.JPEG").write_bytes(_jpeg(1))
    with pytest.raises(D.DataError, match="different class folders"):
        D.load_imagenet_folders(root)


def test_mixup_cutmix_gives_soft_targets():
    assert D.mixup_cutmix(10) is None
    mix = D.mixup_cutmix(10, mixup=0.8, cutmix=1.0)
    images, targets = mix(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 3, 16, 16) and targets.shape == (4, 10)
    assert torch.allclose(targets.sum(-1), torch.ones(4))


# --- spectral tasks ------------------------------------------------------------------------------

@pytest.mark.parametrize("task", list(D.SPECTRAL_TASKS))
def test_spectral_tasks_are_deterministic(task):
    images, labels, bands = D.spectral_images(task, 300, num_classes=6, seed=3)
    again = D.spectral_images(task, 300, num_classes=6, seed=3)
    assert torch.equal(images, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(images, D.spectral_images(task, 300, num_classes=6, seed=4)[0])
    assert images.shape == (300, 3, 32, 32) and images.dtype == torch.uint8
    assert set(labels.tolist()) == set(range(6))
    expected_bands = {1} if task == "fixed_band" else {0, 1, 2}
    assert set(bands.tolist()) == expected_bands


def test_spectral_signal_sits_in_its_band():
    """The class grating's energy peaks at the radial frequency of the image's band."""
    images, _, bands = D.spectral_images("band_shift", 600, seed=0)
    gray = images.float().mean(1)
    power = torch.fft.fft2(gray - gray.mean((-2, -1), keepdim=True)).abs() ** 2
    frequency = torch.sqrt(torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.fftfreq(32) ** 2)
    centres = torch.tensor([(low + high) / 2 for low, high in D.SPECTRAL_BANDS])
    peak = frequency.flatten()[power.flatten(1).argmax(1)]
    nearest = (peak[:, None] - centres).abs().argmin(1)
    assert (nearest == bands).float().mean() > 0.9


def test_spectral_task_datasets_and_errors():
    data = D.build_datasets("spectral", n_train=40, n_test=20)
    assert data.name == "spectral/band_shift" and data.num_classes == 8
    assert len(data.train) == 40 and data.train.metadata["band"].shape == (40,)
    assert not torch.equal(data.train.images[:20], data.test.images)
    assert data.train.augment is None  # a flip would change the class
    with pytest.raises(ValueError, match="unknown spectral task"):
        D.build_datasets("spectral/nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        D.build_datasets("mnist")
    with pytest.raises(ValueError, match="32 px"):
        D.build_datasets("cifar10", img_size=64)


def test_distractors_task_puts_a_weaker_grating_of_another_class_in_every_other_band():
    """Every band holds a grating, and the informative one is usually the strongest."""
    images, labels, bands = D.spectral_images("distractors", 400, seed=0)
    gray = images.float().mean(1)
    power = torch.fft.fft2(gray - gray.mean((-2, -1), keepdim=True)).abs() ** 2
    frequency = torch.sqrt(torch.fft.fftfreq(32)[:, None] ** 2 + torch.fft.fftfreq(32) ** 2)
    per_band = torch.stack([
        power[:, (frequency >= low) & (frequency <= high)].amax(-1)
        for low, high in D.SPECTRAL_BANDS], dim=1)  # (N, 3): peak power in each band
    background = power[:, frequency > 0.45].mean(-1)
    assert (per_band.min(1).values > 20 * background).float().mean() > 0.9  # all bands filled
    # The informative grating is the strongest in most gray images (each grating's random colour
    # can make a distractor the stronger one in gray; the three channels still tell them apart).
    assert (per_band.argmax(1) == bands).float().mean() > 0.6
