"""Dense evaluation and prediction outside the trainer (dsm_ref.dense.inference): hand-worked
scores from models whose predictions are known, the same numbers as the trainer's tasks, class
maps at the input size, detections in eval mode, and the errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dsm_ref import data as D
from dsm_ref.dense import create_dense_model, dense_task, evaluate_dense, predict_dense
from dsm_ref.train.tasks import make_task

TINY = dict(dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), neck_channels=32)

# The hand-worked case of test_dense.py: class 0: IoU 4/5, class 1: 3/6, class 2: 6/8,
# class 3 in neither (left out of the mean); 13 of 16 pixels right.
TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
PREDS = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 1, 1]])


class ClassFromChannel0(nn.Module):
    """Predicts, at each pixel, the class written in the image's channel 0: logits 1 for that
    class, 0 for the other ``num_classes - 1``, at ``1 / stride`` of the input resolution."""

    def __init__(self, num_classes: int = 4, stride: int = 1) -> None:
        super().__init__()
        self.num_classes, self.stride = num_classes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = x[:, 0, :: self.stride, :: self.stride].round().long()
        return nn.functional.one_hot(classes, self.num_classes).permute(0, 3, 1, 2).float()


class Masks(Dataset):
    """Images whose channel 0 holds the prediction, and their masks."""

    def __init__(self, preds: torch.Tensor, masks: torch.Tensor, ignore_index=None) -> None:
        self.preds, self.masks = preds, masks
        if ignore_index is not None:
            self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i):
        return self.preds[i].float()[None].expand(3, -1, -1), self.masks[i]


def test_segmentation_scores_on_a_hand_worked_case():
    loader = DataLoader(Masks(PREDS[None], TARGET[None]), batch_size=1)
    scores = evaluate_dense(ClassFromChannel0(), loader, task="segment")
    assert scores["miou"] == pytest.approx(100 * (0.8 + 0.5 + 0.75) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(100 * 13 / 16)
    # logits 1 for the predicted class, 0 for 3 others: -log(e / (e + 3)) right, log(e + 3) wrong
    right, wrong = math.log(1 + 3 / math.e), math.log(math.e + 3)
    assert scores["loss"] == pytest.approx((13 * right + 3 * wrong) / 16)


def test_ignored_pixels_count_nowhere_and_the_dataset_names_them():
    ignored = TARGET.masked_fill(TARGET == 1, 255)  # class 1's 4 pixels: 10 of 12 left right
    loader = DataLoader(Masks(PREDS[None], ignored[None], ignore_index=255), batch_size=1)
    scores = evaluate_dense(ClassFromChannel0(), loader, task="segment")  # 255 from the data
    assert scores["pixel_accuracy"] == pytest.approx(100 * 10 / 12)
    # class 0: 4 / 4 (its miss was on a class-1 pixel); class 1: predicted on 2 kept pixels and
    # in no target, 0 / 2; class 2: 6 / 8
    assert scores["miou"] == pytest.approx(100 * (1.0 + 0.0 + 0.75) / 3)


def test_counts_are_summed_over_the_data_not_averaged_per_batch():
    preds = torch.stack([PREDS, torch.zeros_like(PREDS)])
    masks = torch.stack([TARGET, torch.zeros_like(TARGET)])
    one = evaluate_dense(ClassFromChannel0(), DataLoader(Masks(preds, masks), batch_size=2),
                         task="segment")
    two = evaluate_dense(ClassFromChannel0(), DataLoader(Masks(preds, masks), batch_size=1),
                         task="segment")
    assert one == pytest.approx(two)
    assert one["pixel_accuracy"] == pytest.approx(100 * (13 + 16) / 32)
    assert one["miou"] == pytest.approx(100 * (20 / 21 + 0.5 + 0.75) / 3)


def test_evaluate_dense_is_what_the_trainer_logs():
    data = D.make_spectral_regions(4, 4, canvas_size=32, seed=0)
    torch.manual_seed(0)
    model = create_dense_model("dsm_micro", "segment", 3, img_size=32, head_channels=16, **TINY)
    model.train()
    loader = DataLoader(data.test, batch_size=2)
    scores = evaluate_dense(model, loader)  # task and num_classes from the model
    assert model.training  # its mode is restored
    model.eval()
    logged = make_task("segment", data).evaluate(model, loader, torch.device("cpu"), None,
                                                 False, "test_")
    assert logged == {f"test_{key}": value for key, value in scores.items()}


def test_predict_gives_class_maps_at_the_input_size():
    images = PREDS.float()[None, None].expand(2, 3, -1, -1)
    assert torch.equal(predict_dense(ClassFromChannel0(), images, task="segment"),
                       PREDS.expand(2, -1, -1))
    # logits at half the resolution are resized (bilinear) first: each pixel takes its block's
    blocks = torch.tensor([[0, 1], [2, 3]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    half = predict_dense(ClassFromChannel0(stride=2), blocks.float()[None, None].expand(
        1, 3, -1, -1), task="segment")
    assert half.shape == (1, 4, 4) and torch.equal(half[0], blocks)
    torch.manual_seed(0)
    model = create_dense_model("dsm_micro", "segment", 5, img_size=64, head_channels=16, **TINY)
    x = torch.randn(2, 3, 37, 53)
    maps = predict_dense(model, x)
    assert maps.shape == (2, 37, 53) and maps.dtype == torch.int64 and model.training
    with torch.no_grad():
        assert torch.equal(maps, model.eval()(x).argmax(1))


class Oracle(nn.Module):
    """A 'detector' returning fixed detections, chosen by the value of each image's first pixel."""

    def __init__(self, answers: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.answers = answers

    def forward(self, images):
        return [self.answers[int(image[0, 0, 0])] for image in images]


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_detection_scores_on_a_hand_worked_case():
    target = {"boxes": _boxes([0, 0, 20, 20], [30, 30, 60, 60]), "labels": torch.tensor([1, 2])}
    # class 1: found with IoU 20 x 14.4 / 400 = 0.72, a hit at the thresholds 0.50 ... 0.70
    # (5 of 10): AP 0.5, AP@50 1; class 2: missed, AP 0. So mAP 0.25, mAP@50 0.5.
    found = {"boxes": _boxes([0, 0, 20, 14.4]), "scores": torch.tensor([0.9]),
             "labels": torch.tensor([1])}
    loader = DataLoader([(torch.zeros(3, 64, 64), target)], batch_size=1,
                        collate_fn=D.collate_detection)
    scores = evaluate_dense(Oracle([found]), loader, task="detect")
    assert scores == pytest.approx({"map": 25.0, "map_50": 50.0})
    nothing = {"boxes": _boxes(), "labels": torch.zeros(0, dtype=torch.long)}
    loader = DataLoader([(torch.zeros(3, 64, 64), nothing)], batch_size=1,
                        collate_fn=D.collate_detection)
    empty = {**nothing, "scores": torch.zeros(0)}
    assert evaluate_dense(Oracle([empty]), loader, task="detect") == {"map": -1.0,
                                                                      "map_50": -1.0}


def test_a_detector_predicts_and_evaluates_in_eval_mode():
    source = D.make_spectral_task("band_shift", 8, 8, img_size=32, seed=0)
    data = D.make_mosaic_task(source, "detect", 2, 2, canvas_size=64, seed=0)
    torch.manual_seed(0)
    model = create_dense_model("dsm_micro", "detect", data.num_classes, img_size=64, **TINY)
    assert dense_task(model) == "detect"
    images = [data.test[i][0] for i in range(2)]
    found = predict_dense(model, images)
    assert model.training and len(found) == 2
    for detections in found:
        assert set(detections) == {"boxes", "scores", "labels"}
        assert detections["boxes"].dtype == torch.float32 and detections["boxes"].shape[1] == 4
        assert detections["boxes"].device.type == "cpu"
    assert [len(d["boxes"]) for d in predict_dense(model, torch.stack(images))] == [
        len(d["boxes"]) for d in found]
    loader = DataLoader(data.test, batch_size=2, collate_fn=D.collate_detection)
    scores = evaluate_dense(model, loader)
    assert set(scores) == {"map", "map_50"} and all(-1 <= v <= 100 for v in scores.values())
    assert model.training


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="cannot tell the task of a ClassFromChannel0"):
        evaluate_dense(ClassFromChannel0(), DataLoader(Masks(PREDS[None], TARGET[None])))
    with pytest.raises(ValueError, match="expected a DataLoader"):
        evaluate_dense(ClassFromChannel0(), Masks(PREDS[None], TARGET[None]), task="segment")
    with pytest.raises(ValueError, match="unknown task 'panoptic'"):
        predict_dense(ClassFromChannel0(), torch.zeros(1, 3, 4, 4), task="panoptic")
    with pytest.raises(ValueError, match=r"expected an image batch \(B, 3, H, W\)"):
        predict_dense(ClassFromChannel0(), torch.zeros(3, 4, 4), task="segment")
    bare = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="pass num_classes"):
        evaluate_dense(bare, DataLoader(Masks(PREDS[None], TARGET[None])), task="segment")
