"""ADE20K and COCO folders (dsm_ref.data.ade20k, dsm_ref.data.coco) on tiny copies written in
``tmp_path``: the label conventions, seeded geometry, images and targets transformed together,
the errors that name the expected layout, and the registry and trainer finding them. No network,
no real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dsm_ref import data as D
from dsm_ref import train as T
from dsm_ref.cli import main
from dsm_ref.data.ade20k import reduce_zero_label
from dsm_ref.data.coco import coco_target

RED, BLUE = (230, 20, 20), (20, 20, 230)


# --- fixtures ------------------------------------------------------------------------------------

def _write_ade_pair(root: Path, split: str, stem: str, mask: torch.Tensor,
                    colours: dict[int, tuple[int, int, int]] | None = None) -> None:
    """A JPEG whose pixels of raw class ``k`` have ``colours[k]`` (grey otherwise), and its PNG."""
    colours = colours or {}
    image = torch.full((*mask.shape, 3), 128, dtype=torch.uint8)
    for k, colour in colours.items():
        image[mask == k] = torch.tensor(colour, dtype=torch.uint8)
    for kind, array in (("images", image), ("annotations", mask.to(torch.uint8))):
        folder = root / kind / split
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "jpg" if kind == "images" else "png"
        Image.fromarray(array.numpy()).save(folder / f"{stem}.{suffix}", quality=95)


def _halves(height: int, width: int, left: int, right: int) -> torch.Tensor:
    mask = torch.full((height, width), right, dtype=torch.long)
    mask[:, : width // 2] = left
    return mask


@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    """``ADEChallengeData2016`` with 3 training and 2 validation images of 40x64 pixels: the
    left half raw class 0 ("other") or 1, the right half 150 or 2."""
    root = tmp_path / "ADEChallengeData2016"
    for i in range(3):
        _write_ade_pair(root, "training", f"ADE_train_{i:08d}", _halves(40, 64, 1, 2),
                        {1: RED, 2: BLUE})
    for i in range(2):
        _write_ade_pair(root, "validation", f"ADE_val_{i:08d}", _halves(40, 64, 0, 150))
    return root


# Category ids with gaps, as COCO's: 3 -> label 1, 7 -> 2, 18 -> 3.
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]


def _annotation(ident: int, image_id: int, category: int, bbox: list[float],
                crowd: int = 0) -> dict:
    return {"id": ident, "image_id": image_id, "category_id": category, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": crowd}


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """COCO 2017 layout, the same 3 images in both splits: ``a.jpg`` (40x30, a white rectangle
    at the box of category 7, a crowd region, a degenerate box and one that leaves the image),
    ``b.jpg`` (20x40, one box), ``c.jpg`` (30x30, a crowd region only)."""
    root = tmp_path / "coco"
    a = torch.zeros(30, 40, 3, dtype=torch.uint8)
    a[5:13, 4:14] = 255  # the box [4, 5, 10, 8] of category 7
    images = {"a.jpg": a, "b.jpg": torch.full((40, 20, 3), 90, dtype=torch.uint8),
              "c.jpg": torch.full((30, 30, 3), 60, dtype=torch.uint8)}
    annotations = [
        _annotation(1, 1, 7, [4, 5, 10, 8]),
        _annotation(2, 1, 3, [0, 0, 40, 30], crowd=1),
        _annotation(3, 1, 18, [10, 10, 0, 5]),  # no width
        _annotation(4, 1, 18, [35, 20, 10, 20]),  # leaves the image: clipped to [35, 20, 40, 30]
        _annotation(5, 2, 3, [0, 0, 20, 40]),
        _annotation(6, 3, 18, [0, 0, 30, 30], crowd=1),
    ]
    info = {"images": [{"id": i, "file_name": name, "width": int(im.shape[1]),
                        "height": int(im.shape[0])}
                       for i, (name, im) in enumerate(images.items(), start=1)],
            "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        for name, image in images.items():
            Image.fromarray(image.numpy()).save(root / split / name, quality=95)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(info))
    return root


def _coco_split(root: Path, split: str = "val2017", **options) -> D.COCODetection:
    return D.COCODetection(root / split, root / "annotations" / f"instances_{split}.json",
                           **options)


# --- ADE20K --------------------------------------------------------------------------------------

def test_ade20k_maps_other_to_ignore_and_k_to_k_minus_1(ade_root):
    data = D.load_ade20k(ade_root, img_size=32)
    assert data.name == "ade20k" and data.num_classes == D.ADE20K_NUM_CLASSES == 150
    assert data.info["ignore_index"] == D.ADE20K_IGNORE_INDEX == 255
    assert len(data.train) == 3 and len(data.test) == 2 and data.img_size == 32
    assert data.classes == tuple(f"class {k}" for k in range(1, 151))  # no objectInfo150.txt
    image, mask = data.test[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    # 64 -> 32 columns by the nearest pixel: the left 16 columns were 0 ("other"), the right 150
    assert (mask[:, :16] == 255).all() and (mask[:, 16:] == 149).all()
    assert torch.equal(reduce_zero_label(torch.tensor([[0, 1, 150]])),
                       torch.tensor([[255, 0, 149]]))


def test_ade20k_class_names_come_from_object_info(ade_root):
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [
        f"{k}\t0.01\t1\t1\tname{k}, synonym" for k in range(1, 151)]
    (ade_root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    classes = D.load_ade20k(ade_root, img_size=32).classes
    assert len(classes) == 150 and classes[0] == "name1" and classes[149] == "name150"
    (ade_root / "objectInfo150.txt").write_text("\n".join(rows[:10]))
    with pytest.raises(D.DataError, match="names 9 classes; expected 150"):
        D.load_ade20k(ade_root, img_size=32)


def test_ade20k_training_geometry_is_seeded_and_moves_image_and_mask_together(ade_root):
    train = D.load_ade20k(ade_root, img_size=32, seed=3).train
    again = D.load_ade20k(ade_root, img_size=32, seed=3).train
    other = D.load_ade20k(ade_root, img_size=32, seed=4).train
    samples = [train[i] for i in range(3)]
    for i, (image, mask) in enumerate(samples):
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
        assert torch.equal(image, again[i][0]) and torch.equal(mask, again[i][1])
        assert set(mask.unique().tolist()) <= {0, 1, 255}
        red = image[0] - image[2]  # red minus blue, normalised units
        assert red[mask == 0].min() > 0 > red[mask == 1].max()  # class 1 red, class 2 blue
    assert not all(torch.equal(x, other[i][0]) for i, (x, _) in enumerate(samples))
    train.set_epoch(1)
    assert not all(torch.equal(x, train[i][0]) for i, (x, _) in enumerate(samples))


def test_ade20k_crop_smaller_than_the_size_is_padded_with_ignore(ade_root):
    train = D.ADE20KSegmentation(ade_root, "training", img_size=32, augment=True,
                                 scale_range=(0.5, 0.5))
    image, mask = train[0]
    kept = mask != 255
    assert int(kept.sum()) == 16 * 16  # the 16x16 resized image, the rest padding
    assert (image[:, ~kept] == 0).all()  # padded with 0, the mean colour once normalised


def test_ade20k_subsets_are_seeded(ade_root):
    first = D.load_ade20k(ade_root, img_size=32, n_train=2, n_test=1)
    again = D.load_ade20k(ade_root, img_size=32, n_train=2, n_test=1)
    assert len(first.train) == 2 and len(first.test) == 1
    assert first.train.samples == again.train.samples


def test_ade20k_errors_name_the_problem(ade_root, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(D.DataError, match="images/<split>/\\*.jpg") as err:
        D.load_ade20k(missing)
    assert str(missing) in str(err.value)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "data"))
    with pytest.raises(D.DataError, match=str(tmp_path / "data" / "ADEChallengeData2016")):
        D.load_ade20k()
    (ade_root / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(D.DataError, match="ADE_val_00000001.jpg needs .*ADE_val_00000001.png"):
        D.load_ade20k(ade_root)
    _write_ade_pair(ade_root, "validation", "ADE_val_00000001", _halves(40, 64, 0, 151))
    bad = D.ADE20KSegmentation(ade_root, "validation", img_size=32)
    with pytest.raises(D.DataError, match="ADE_val_00000001.png: class 151 > 150"):
        bad[1]
    with pytest.raises(ValueError, match="unknown ADE20K split 'val'"):
        D.ADE20KSegmentation(ade_root, "val")


# --- COCO ----------------------------------------------------------------------------------------

def test_coco_target_skips_crowds_and_degenerate_boxes_and_clips():
    label_of = {3: 1, 7: 2, 18: 3}
    annotations = [_annotation(1, 1, 7, [4, 5, 10, 8]), _annotation(2, 1, 3, [0, 0, 40, 30], 1),
                   _annotation(3, 1, 18, [10, 10, 0, 5]), _annotation(4, 1, 18, [35, 20, 10, 20]),
                   _annotation(5, 1, 3, [-5, 40, 10, 5])]  # entirely below the image: no area
    target = coco_target(annotations, label_of, width=40, height=30)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["boxes"].tolist() == [[4, 5, 14, 13], [35, 20, 40, 30]]
    assert target["labels"].tolist() == [2, 3]
    empty = coco_target([], label_of, 10, 10)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    with pytest.raises(D.DataError, match="category_id 99"):
        coco_target([_annotation(9, 1, 99, [0, 0, 2, 2])], label_of, 10, 10)


def test_coco_categories_become_contiguous_labels_with_their_names(coco_root):
    dataset = _coco_split(coco_root)
    assert dataset.category_ids == (3, 7, 18)
    assert dataset.classes == ("background", "car", "train", "dog") and dataset.num_classes == 4
    assert len(dataset) == 3 and dataset.ids == [1, 2, 3]
    assert dataset[2][1]["boxes"].shape == (0, 4)  # the crowd-only image: kept for evaluation


def test_coco_resizes_image_and_boxes_together(coco_root):
    dataset = _coco_split(coco_root, img_size=80)
    image, target = dataset[0]  # 40x30 -> 80x60: twice the size
    assert image.shape == (3, 60, 80) and image.dtype == torch.float32
    assert target["boxes"].tolist() == [[8, 10, 28, 26], [70, 40, 80, 60]]
    assert target["labels"].tolist() == [2, 3]
    x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
    inside = image[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2]
    outside = torch.cat([image[:, :, :x1 - 2].flatten(1), image[:, :, x2 + 2:].flatten(1)], 1)
    assert inside.min() > 1.5 and outside.max() < -1.5  # the white rectangle is in the box
    tall, target = dataset[1]  # 20x40 -> 40x80
    assert tall.shape == (3, 80, 40) and target["boxes"].tolist() == [[0, 0, 40, 80]]


def test_coco_flip_is_seeded_and_flips_the_boxes(coco_root):
    plain = _coco_split(coco_root, img_size=80)[0]
    dataset = _coco_split(coco_root, img_size=80, augment=True, seed=0)
    seen = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        image, target = dataset[0]
        assert torch.equal(image, dataset[0][0])  # the same key, the same draw
        flipped = not torch.equal(image, plain[0])
        if flipped:
            assert torch.equal(image, plain[0].flip(-1))
            assert target["boxes"].tolist() == [[52, 10, 72, 26], [0, 40, 10, 60]]
        else:
            assert torch.equal(target["boxes"], plain[1]["boxes"])
        seen.add(flipped)
    assert seen == {True, False}


def test_load_coco_drops_training_images_without_a_box(coco_root):
    data = D.load_coco(coco_root, img_size=64)
    assert data.name == "coco" and data.num_classes == 4 and data.img_size == 64
    assert data.train.ids == [1, 2] and data.test.ids == [1, 2, 3]
    assert data.train.augment and not data.test.augment
    assert data.info["category_ids"] == (3, 7, 18)
    subset = D.load_coco(coco_root, img_size=64, n_train=1, n_test=2)
    assert len(subset.train) == 1 and len(subset.test) == 2


def test_coco_errors_name_the_problem(coco_root, tmp_path):
    with pytest.raises(D.DataError, match="annotations/instances_<split>.json") as err:
        D.load_coco(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    (coco_root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(D.DataError, match="COCO annotation file not found: .*instances_val2017"):
        D.load_coco(coco_root)
    with pytest.raises(D.DataError, match="COCO image folder not found: .*nope"):
        D.COCODetection(coco_root / "nope", coco_root / "annotations/instances_train2017.json")
    (coco_root / "train2017" / "b.jpg").unlink()
    dataset = _coco_split(coco_root, "train2017")
    with pytest.raises(D.DataError, match="cannot read COCO image .*b.jpg"):
        dataset[1]
    (coco_root / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(D.DataError, match="is not a COCO instances file"):
        _coco_split(coco_root, "train2017")


# --- the registry and the trainer ----------------------------------------------------------------

def test_the_registry_finds_both_in_the_data_dir(ade_root, coco_root, tmp_path, monkeypatch):
    assert {"ade20k", "coco"} <= set(D.DATASETS)
    assert D.dataset_task("ade20k") == "segment" and D.dataset_task("coco") == "detect"
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))  # holds ADEChallengeData2016/ and coco/
    ade = D.build_datasets("ade20k", img_size=32)
    coco = D.build_datasets("coco", img_size=48)
    assert isinstance(ade.train, D.ADE20KSegmentation) and ade.source == str(ade_root)
    assert isinstance(coco.test, D.COCODetection) and coco.source == str(coco_root)
    assert D.datasets_task(ade) == "segment" and D.datasets_task(coco) == "detect"
    assert D.build_datasets("ade20k").img_size == 512  # the default crop
    locations = D.data_locations()
    assert "exists: True" in locations["ade20k"] and "exists: True" in locations["coco"]
    with pytest.raises(ValueError, match="task 'segment' does not match data 'coco'"):
        T.TrainConfig(task="segment", data="coco").validate()


TINY_ARGS = ["--model", "dsm_micro", "--model-option", "dims=(16, 32, 48, 64)",
             "--model-option", "depths=(1, 1, 1, 1)", "--model-option", "neck_channels=32",
             "--model-option", "head_channels=32", "--n-train", "2", "--n-test", "2",
             "--batch-size", "2", "--epochs", "1", "--img-size", "64", "--device", "cpu",
             "--no-progress", "--threads", "1"]


@pytest.mark.parametrize("task, data, headline", [("segment", "ade20k", "test mIoU"),
                                                  ("detect", "coco", "test mAP")])
def test_cli_trains_on_the_folders(task, data, headline, ade_root, coco_root, tmp_path, capsys):
    root = ade_root if data == "ade20k" else coco_root
    out = tmp_path / "run"
    assert main(["train", "--task", task, "--data", data, "--data-dir", str(root),
                 *TINY_ARGS, "--out", str(out)]) == 0
    assert f"done: {headline}" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["data"] == data and summary["config"]["task"] == task


def test_cli_without_the_folder_exits_1_naming_the_layout(tmp_path, capsys):
    argv = ["train", "--task", "segment", "--data", "ade20k", "--data-dir",
            str(tmp_path / "nowhere"), *TINY_ARGS, "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "ADE20K not found" in err and "annotations/<split>/<same name>.png" in err
