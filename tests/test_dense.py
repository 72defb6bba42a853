"""Dense prediction on a DSM (dsm_ref.dense): Semantic FPN, torchvision's detectors on the DSM
pyramid, checkpoint transfer across resolutions, input checks and the metrics, on tiny models."""

import math
import warnings

import pytest
import torch

from dsm_ref import create_model
from dsm_ref.dense import (
    DETECTORS,
    SemanticFPN,
    anchor_generator,
    create_dense_model,
    detection_backbone,
    load_backbone_weights,
)
from dsm_ref.dense.metrics import detection_scores, segmentation_scores
from dsm_ref.mixers import resize_spectral_weight
from dsm_ref.models import TOKEN_MIXERS

# dsm_micro (stem stride 2: stage strides 2, 4, 8, 16) shrunk to run in milliseconds.
TINY = dict(dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), drop_path_rate=0.0)
NECK = dict(neck_channels=32)


def _segmenter(**options) -> SemanticFPN:
    torch.manual_seed(0)
    options = {"img_size": 64, "head_channels": 16, **NECK, **TINY, **options}
    return create_dense_model("dsm_micro", "segment", 11, **options)


def _detector(detector: str, **options):
    torch.manual_seed(0)
    options = {"img_size": 64, **NECK, **TINY, **options}
    return create_dense_model("dsm_micro", "detect", 11, detector=detector, **options)


def _targets(n: int = 2):
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 28.0], [20.0, 30.0, 60.0, 62.0]]),
             "labels": torch.tensor([1, 7])} for _ in range(n)]


# --- segmentation ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(72, 100), (64, 64)], ids=["72x100", "64x64"])
def test_segmentation_forward_backward(size):
    model = _segmenter()
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert logits.shape == (2, 11, *size)
    torch.nn.functional.cross_entropy(logits, torch.randint(11, (2, *size))).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["backbone.body.stem.proj.weight"].abs().sum() > 0


def test_segmentation_at_a_size_not_divisible_by_the_strides():
    model = _segmenter().eval()
    assert model(torch.randn(1, 3, 37, 53)).shape == (1, 11, 37, 53)


def test_segmentation_trace_matches_eager():
    model = _segmenter().eval()
    for name, param in model.named_parameters():  # as one training step would move them
        if name.endswith("dswg.fc2.weight"):
            torch.nn.init.normal_(param, std=0.05)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the shapes are fixed on purpose
            traced = torch.jit.trace(model, x, check_trace=False)
        torch.testing.assert_close(traced(x), model(x), rtol=1e-4, atol=1e-5)
        other = torch.randn(1, 3, 64, 80)
        torch.testing.assert_close(traced(other), model(other), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mixer", sorted(TOKEN_MIXERS))
def test_every_token_mixer_runs_both_tasks(mixer):
    segmenter = _segmenter(token_mixer=mixer, img_size=32).eval()
    with torch.no_grad():
        assert segmenter(torch.randn(1, 3, 32, 48)).shape == (1, 11, 32, 48)
    detector = _detector("retinanet", token_mixer=mixer, img_size=32)
    losses = detector([torch.randn(3, 32, 32)],
                      [{"boxes": torch.tensor([[2.0, 3.0, 20.0, 30.0]]),
                        "labels": torch.tensor([4])}])
    assert all(torch.isfinite(v) for v in losses.values())


# --- detection -------------------------------------------------------------------------------

@pytest.mark.parametrize("detector", DETECTORS)
def test_detector_train_and_eval(detector):
    options = {} if detector == "faster_rcnn" else {"score_thresh": 0.0}
    model = _detector(detector, detector_options=options)
    images = [torch.randn(3, 64, 64), torch.randn(3, 64, 64)]
    losses = model(images, _targets())
    assert losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    stem = model.backbone.body.body.stem.proj.weight.grad
    assert stem is not None and stem.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out in outputs:
        assert set(out) == {"boxes", "scores", "labels"}
        assert out["boxes"].ndim == 2 and out["boxes"].shape[1] == 4
        assert len(out["boxes"]) > 0
        assert (out["boxes"] >= 0).all() and (out["boxes"] <= 64).all()


def test_detector_keeps_small_images_at_their_size():
    model = _detector("fcos", img_size=(48, 80)).eval()
    batch, _ = model.transform([torch.randn(3, 48, 80)])
    assert batch.image_sizes == [(48, 80)]


@pytest.mark.parametrize("detector", DETECTORS)
def test_pyramid_strides_and_anchors_agree(detector):
    body = create_model("dsm_micro", features_only=True, img_size=64, **TINY)
    backbone = detection_backbone(body, detector, 32)
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [64 // m.shape[-1] for m in maps.values()] == backbone.strides
    assert all(m.shape[1] == backbone.out_channels == 32 for m in maps.values())
    sizes = anchor_generator(backbone.strides, detector).sizes
    factor = {"retinanet": 4, "fcos": 1, "faster_rcnn": 8}[detector]
    assert [s[0] for s in sizes] == [factor * s for s in backbone.strides]
    if detector == "faster_rcnn":  # MultiScaleRoIAlign reads levels "0".."3"
        assert list(maps) == ["0", "1", "2", "3", "pool"]


def test_detector_trains_on_mosaics():
    from dsm_ref.data.mosaic import MosaicDetection, collate_detection

    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    data = MosaicDetection(images, torch.arange(20) % 10, 4, canvas_size=64, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=collate_detection)
    batch_images, targets = next(iter(loader))
    model = _detector("faster_rcnn")
    losses = model(batch_images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        scores = detection_scores(model(batch_images), targets)
    assert 0.0 <= float(scores["map_50"]) <= 1.0


# --- classification checkpoints ------------------------------------------------------------

def _classifier():
    torch.manual_seed(1)
    return create_model("dsm_micro", img_size=32, num_classes=10, **TINY)


@pytest.mark.parametrize("form", ["state_dict", "half", "checkpoint"])
def test_classification_checkpoint_loads_at_another_resolution(tmp_path, form):
    classifier = _classifier()
    state = classifier.state_dict()
    if form == "half":  # as dsm_ref.ablation's save_weights writes it
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    saved = {"model": state, "epoch": 3} if form == "checkpoint" else state
    path = tmp_path / "classifier.pt"
    torch.save(saved, path)
    fresh = _segmenter().backbone.body.state_dict()
    model = _segmenter(pretrained_path=path)
    loaded = model.backbone.body.state_dict()
    tolerance = {"rtol": 1e-3, "atol": 1e-3} if form == "half" else {}
    torch.testing.assert_close(loaded["stem.proj.weight"],
                               classifier.state_dict()["stem.proj.weight"], **tolerance)
    assert not torch.equal(loaded["stem.proj.weight"], fresh["stem.proj.weight"])
    key = "stages.0.blocks.0.mixer.spectral_weight"
    assert classifier.state_dict()[key].shape[:2] == (16, 16)
    assert loaded[key].shape[:2] == (32, 32)  # built for 64 px at stem stride 2
    torch.testing.assert_close(
        loaded[key], resize_spectral_weight(classifier.state_dict()[key], (32, 32)), **tolerance)
    model.eval()
    assert torch.isfinite(model(torch.randn(1, 3, 64, 64))).all()


def test_checkpoint_of_another_architecture_is_refused():
    body = create_model("dsm_micro", features_only=True, img_size=64,
                        **{**TINY, "depths": (1, 1, 2, 1)})
    with pytest.raises(ValueError, match="not this backbone's architecture"):
        load_backbone_weights(body, _classifier().state_dict())
    report = load_backbone_weights(create_model("dsm_micro", features_only=True, img_size=64,
                                                **TINY), _classifier().state_dict())
    assert set(report["dropped"]) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "options", "message"), [
    (("segment", 0), {}, "num_classes must be an int >= 1"),
    (("detect", 1), {}, "num_classes must be >= 2 for detection"),
    (("classify", 3), {}, "unknown task 'classify'; expected one of: segment, detect"),
    (("detect", 3), {"detector": "yolo"}, "unknown detector 'yolo'; expected one of"),
])
def test_bad_arguments_say_what_was_expected(args, options, message):
    with pytest.raises(ValueError, match=message):
        create_dense_model("dsm_micro", *args, **TINY, **options)


@pytest.mark.parametrize(("box", "label", "message"), [
    ([10.0, 5.0, 10.0, 20.0], 1, "x2 <= x1"),
    ([10.0, 5.0, 4.0, 20.0], 1, "x2 <= x1"),
    ([10.0, 5.0, 70.0, 20.0], 1, "outside the 64x64 image"),
    ([-1.0, 5.0, 30.0, 20.0], 1, "outside the 64x64 image"),
    ([10.0, 5.0, 30.0, 20.0], 0, "0 is the background"),
    ([10.0, 5.0, 30.0, 20.0], 11, r"outside 1\.\.10"),
])
def test_bad_detection_targets_are_named(box, label, message):
    model = _detector("retinanet")
    with pytest.raises(ValueError, match=message):
        model([torch.randn(3, 64, 64)], [{"boxes": torch.tensor([box]),
                                          "labels": torch.tensor([label])}])


def test_images_smaller_than_the_largest_stride_are_refused():
    with pytest.raises(ValueError, match="smaller than the pyramid's largest stride 16"):
        _segmenter()(torch.randn(1, 3, 12, 40))
    with pytest.raises(ValueError, match="image 1 of size .* largest stride 16"):
        _detector("fcos").eval()([torch.randn(3, 64, 64), torch.randn(3, 8, 64)])


# --- metrics ---------------------------------------------------------------------------------

def test_segmentation_metrics_on_a_hand_worked_mask():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1],
                           [2, 2, 2, 2],
                           [2, 2, 2, 2]])[None]
    preds = torch.tensor([[0, 0, 0, 1],
                          [0, 0, 1, 1],
                          [2, 2, 2, 2],
                          [2, 2, 1, 1]])[None]
    # class 0: 4 common / 5 in the union; class 1: 3 / 6; class 2: 6 / 8; class 3 absent
    scores = segmentation_scores(preds, target, num_classes=4)
    torch.testing.assert_close(scores["iou_per_class"][:3], torch.tensor([0.8, 0.5, 0.75]))
    assert math.isnan(scores["iou_per_class"][3])
    assert float(scores["miou"]) == pytest.approx((0.8 + 0.5 + 0.75) / 3)
    assert float(scores["pixel_accuracy"]) == pytest.approx(13 / 16)
    logits = torch.nn.functional.one_hot(preds, 4).permute(0, 3, 1, 2).float()
    assert float(segmentation_scores(logits, target, 4)["miou"]) == pytest.approx(0.68333, 1e-4)
    ignored = segmentation_scores(preds, target.masked_fill(target == 1, 255), 4,
                                  ignore_index=255)
    assert float(ignored["pixel_accuracy"]) == pytest.approx(10 / 12)  # class 1's pixels out


def test_detection_metrics_on_a_hit_and_a_miss():
    target = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]]),
              "labels": torch.tensor([1, 2])}
    hit_only = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]), "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1])}
    scores = detection_scores([hit_only], [target])
    # class 1: one exact hit (AP 1 at every IoU threshold); class 2: missed (AP 0)
    assert float(scores["map"]) == pytest.approx(0.5)
    assert float(scores["map_50"]) == pytest.approx(0.5)
    perfect = {**target, "scores": torch.tensor([0.9, 0.8])}
    assert float(detection_scores([perfect], [target])["map"]) == pytest.approx(1.0)
