"""Seeded dense tasks (dsm_ref.data.mosaic): mosaics for segmentation and detection from the
caller's images, and spectral regions; random source images, nothing downloaded."""

import math

import pytest
import torch

from dsm_ref.data.base import Datasets, ImageTensorDataset
from dsm_ref.data.mosaic import (
    MosaicDetection,
    MosaicSegmentation,
    SpectralRegions,
    collate_detection,
    make_mosaic_task,
    make_spectral_regions,
)
from dsm_ref.data.synthetic import SPECTRAL_BANDS


def _sources(n: int = 40, seed: int = 0, classes: range = range(10)):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=generator)]
    return images, labels


def _all(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_same_seed_same_tensors_other_seed_others():
    images, labels = _sources()
    first = _all(MosaicSegmentation(images, labels, 6, canvas_size=(64, 96), seed=5))
    again = _all(MosaicSegmentation(images, labels, 6, canvas_size=(64, 96), seed=5))
    other = _all(MosaicSegmentation(images, labels, 6, canvas_size=(64, 96), seed=6))
    for (x, m), (y, n) in zip(first, again, strict=True):
        assert torch.equal(x, y) and torch.equal(m, n)
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(first, other, strict=True))
    boxes = [MosaicDetection(images, labels, 6, seed=5)[i][1] for i in (3, 0, 3)]
    assert torch.equal(boxes[0]["boxes"], boxes[2]["boxes"])  # order of access does not matter
    regions = [SpectralRegions(3, seed=2)[1], SpectralRegions(3, seed=2)[1]]
    assert torch.equal(regions[0][0], regions[1][0]) and torch.equal(regions[0][1], regions[1][1])


def test_segmentation_masks_and_detection_boxes_describe_the_same_canvas():
    images, labels = _sources()
    segment = MosaicSegmentation(images, labels, 8, canvas_size=96, seed=1)
    detect = MosaicDetection(images, labels, 8, canvas_size=96, seed=1)
    assert segment.num_classes == 11 and segment.classes[0] == "background"
    for i in range(8):
        image, mask = segment[i]
        same, target = detect[i]
        assert image.shape == (3, 96, 96) and image.dtype == torch.float32
        assert mask.shape == (96, 96) and mask.dtype == torch.int64
        assert torch.equal(image, same)
        assert 0 <= mask.min() and mask.max() <= 10
        boxes, box_labels = target["boxes"], target["labels"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(box_labels), 4)
        assert box_labels.dtype == torch.int64 and ((box_labels >= 1) & (box_labels <= 10)).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes <= 96).all()
        for box, label in zip(boxes.long().tolist(), box_labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            inside = mask[y1:y2, x1:x2] == label
            # the box is tight: its first and last rows and columns show its object
            assert inside[0].any() and inside[-1].any()
            assert inside[:, 0].any() and inside[:, -1].any()


def test_later_pastes_cover_earlier_ones():
    images, labels = _sources()
    # two pastes, each the whole canvas: only the second shows
    data = MosaicDetection(images, labels, 4, canvas_size=64, objects=(2, 2), scale=(1.0, 1.0))
    for i in range(4):
        made = data.mosaic(i)
        assert torch.equal(made.mask, torch.full((64, 64), int(made.labels[1])))
        target = data[i][1]
        assert target["labels"].tolist() == [int(made.labels[1])]
        assert target["boxes"].tolist() == [[0.0, 0.0, 64.0, 64.0]]


def test_a_partly_covered_paste_keeps_the_box_of_what_shows():
    instances = torch.full((10, 10), -1)
    instances[2:8, 2:8] = 0
    instances[2:8, 5:10] = 1  # covers the right half of paste 0
    from dsm_ref.data.mosaic import boxes_from_instances

    target = boxes_from_instances(instances, torch.tensor([3, 4]), 0.25, torch.tensor([36, 30]))
    assert target["boxes"].tolist() == [[2.0, 2.0, 5.0, 8.0], [5.0, 2.0, 10.0, 8.0]]
    hidden = boxes_from_instances(instances, torch.tensor([3, 4]), 0.6, torch.tensor([36, 30]))
    assert hidden["labels"].tolist() == [4]  # 18 of 36 pixels show: below 0.6


def _bundle(train_classes: range, test_classes: range) -> Datasets:
    stats = dict(mean=(0.5,) * 3, std=(0.25,) * 3)
    names = tuple(f"c{i}" for i in range(10))
    train = ImageTensorDataset(*_sources(30, 0, train_classes), classes=names, **stats)
    test = ImageTensorDataset(*_sources(30, 1, test_classes), classes=names, **stats)
    return Datasets(train, test, num_classes=10, img_size=32, classes=names, name="toy")


def test_train_canvases_use_train_images_test_canvases_test_images():
    made = make_mosaic_task(_bundle(range(0, 5), range(5, 10)), "segment", 6, 6,
                            canvas_size=64, seed=0)
    assert made.num_classes == 11 and len(made.train) == len(made.test) == 6
    train_values = set(torch.cat([m.flatten() for _, m in _all(made.train)]).tolist())
    test_values = set(torch.cat([m.flatten() for _, m in _all(made.test)]).tolist())
    assert train_values - {0} <= {1, 2, 3, 4, 5} and test_values - {0} <= {6, 7, 8, 9, 10}
    assert train_values - {0} and test_values - {0}
    detect = make_mosaic_task(_bundle(range(10), range(10)), "detect", 2, 2, seed=0)
    assert isinstance(detect.train, MosaicDetection)


def test_detection_collate_keeps_lists():
    images, labels = _sources()
    data = MosaicDetection(images, labels, 5, canvas_size=64)
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate_detection)
    batch_images, targets = next(iter(loader))
    assert isinstance(batch_images, list) and len(batch_images) == 3
    assert isinstance(targets, list) and set(targets[0]) == {"boxes", "labels"}


def test_spectral_regions_are_labelled_by_their_band():
    data = make_spectral_regions(4, 2, canvas_size=(64, 80), seed=0)
    assert data.num_classes == 3 and data.classes == ("low", "middle", "high")
    image, mask = data.train[0]
    assert image.shape == (3, 64, 80) and mask.shape == (64, 80)
    assert set(mask.unique().tolist()) <= {0, 1, 2}
    # one region, no noise: the image's strongest frequency lies in the labelled band
    single = SpectralRegions(6, canvas_size=64, regions=(1, 1), noise=0.0, seed=3)
    for i in range(6):
        image, mask = single.canvas(i)
        band = int(mask[0, 0])
        assert (mask == band).all()
        gray = image.float().mean(0)
        power = torch.fft.fft2(gray - gray.mean()).abs()
        peak = int(power.flatten().argmax())
        fy, fx = torch.fft.fftfreq(64)[peak // 64], torch.fft.fftfreq(64)[peak % 64]
        low, high = SPECTRAL_BANDS[band]
        assert low - 1 / 64 <= math.hypot(fy, fx) <= high + 1 / 64


@pytest.mark.parametrize(("options", "message"), [
    ({"canvas_size": 8}, "at least 16 px"),
    ({"objects": (3, 2)}, "1 <= min <= max"),
    ({"scale": (0.0, 0.5)}, "0 < min <= max <= 1"),
])
def test_bad_options_are_named(options, message):
    images, labels = _sources()
    with pytest.raises(ValueError, match=message):
        MosaicSegmentation(images, labels, 2, **options)


def test_sources_must_be_images_in_memory():
    bundle = _bundle(range(10), range(10))
    bundle.train = torch.utils.data.TensorDataset(torch.zeros(2))
    with pytest.raises(ValueError, match="need in-memory images"):
        make_mosaic_task(bundle, "segment", 2, 2)
    with pytest.raises(ValueError, match="unknown mosaic task"):
        make_mosaic_task(_bundle(range(10), range(10)), "classify", 2, 2)
