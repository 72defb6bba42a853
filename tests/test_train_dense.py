"""dsm_ref.train on dense tasks: the one loop trains a Semantic FPN (``task="segment"``) and a
torchvision detector (``task="detect"``), logs their metrics, resumes exactly, and refuses a task
that does not match its data; classification is unchanged. Tiny models (dsm_micro at widths
16-64, one block per stage), a few canvases, one epoch: seconds each on one thread. The CIFAR-10
mosaics need ``$DSM_DATA_DIR`` and skip without it; the always-on tests use
``spectral-regions`` and mosaics of spectral images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import needs_shared_cifar

from dsm_ref import data as D
from dsm_ref import train as T
from dsm_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), neck_channels=32, head_channels=32)
TINY_ARGS = ["--model", "dsm_micro", "--model-option", "dims=(16, 32, 48, 64)",
             "--model-option", "depths=(1, 1, 1, 1)", "--model-option", "neck_channels=32",
             "--model-option", "head_channels=32"]
SMALL_ARGS = ["--n-train", "16", "--n-test", "8", "--batch-size", "8", "--epochs", "1",
              "--img-size", "64", "--device", "cpu", "--no-progress", "--threads", "1"]


def _config(out: Path | None = None, **overrides) -> T.TrainConfig:
    """Segmentation of 32 spectral-region canvases of 32 px, batch 8 (4 steps per epoch)."""
    settings = dict(task="segment", data="spectral-regions", model_options=dict(TINY),
                    n_train=32, n_test=8, img_size=32, epochs=2, batch_size=8,
                    warmup_epochs=0.5, device="cpu", progress=False,
                    out=str(out) if out else None)
    return T.TrainConfig(**{**settings, **overrides})


def _spectral_mosaics(task: str, n_train: int = 16, n_test: int = 8) -> D.Datasets:
    """Mosaics of spectral-task images (no files needed), 64 px canvases."""
    source = D.make_spectral_task("band_shift", 64, 32, img_size=32, seed=0)
    return D.make_mosaic_task(source, task, n_train, n_test, canvas_size=64, seed=0)


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").open()]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_b = b.state_dict()
    for name, value in a.state_dict().items():
        assert torch.equal(value, state_b[name]), f"{name} differs"


# --- data wiring ---------------------------------------------------------------------------------

def test_dense_datasets_are_registered_with_their_task():
    for name in ("mosaic-segment/cifar10", "mosaic-detect/cifar10", "spectral-regions"):
        assert name in D.DATASETS
    assert D.dataset_task("spectral-regions") == "segment"
    assert D.dataset_task("mosaic-detect/cifar10") == "detect"
    assert D.dataset_task("cifar10") == D.dataset_task("spectral") == "classify"
    assert D.dataset_task("nope") is None
    regions = D.build_datasets("spectral-regions", n_train=4, n_test=2, img_size=32, seed=1)
    assert isinstance(regions.train, D.SpectralRegions) and regions.img_size == 32
    assert len(regions.train) == 4 and len(regions.test) == 2
    image, mask = regions.train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert D.datasets_task(regions) == "segment"
    assert D.datasets_task(_spectral_mosaics("detect", 2, 2)) == "detect"
    assert D.build_datasets("spectral-regions", n_train=2, n_test=2).img_size == 64
    with pytest.raises(ValueError, match="canvas_size must be at least 16 px"):
        D.build_datasets("spectral-regions", n_train=2, n_test=2, img_size=8)


@needs_shared_cifar
def test_cifar10_mosaics_build_from_the_registry():
    segment = D.build_datasets("mosaic-segment/cifar10", n_train=4, n_test=2, img_size=64,
                               progress=False)
    assert isinstance(segment.train, D.MosaicSegmentation) and segment.num_classes == 11
    assert segment.train[0][1].shape == (64, 64)
    detect = D.build_datasets("mosaic-detect/cifar10", n_train=4, n_test=2, progress=False)
    assert isinstance(detect.train, D.MosaicDetection) and detect.img_size == 96
    assert set(detect.train[0][1]) == {"boxes", "labels"}


# --- configuration -------------------------------------------------------------------------------

def test_classification_config_is_unchanged():
    config = T.TrainConfig()
    assert config.task == "classify" and config.to_dict()["task"] == "classify"
    assert T.model_option_names() == T.model_option_names("classify")
    assert "detector" not in T.model_option_names()
    assert "detector" in T.model_option_names("detect")
    assert "num_classes" not in T.model_option_names("segment")


@pytest.mark.parametrize("overrides, complaint", [
    (dict(task="segment", data="cifar10"), "task 'segment' does not match data 'cifar10'"),
    (dict(task="detect", data="spectral-regions"), "a 'segment' dataset"),
    (dict(task="classify", data="spectral-regions"), "pass --task segment"),
    (dict(task="panoptic"), "unknown task 'panoptic'; expected one of: classify, segment"),
    (dict(mixup=0.2), "mixup applies to task 'classify' only"),
    (dict(cutmix=1.0), "cutmix applies to task 'classify' only"),
    (dict(task="detect", data="mosaic-detect/cifar10", label_smoothing=0.1),
     "label_smoothing does not apply to task 'detect'"),
    (dict(model_options={"detector": "yolo"}), "unknown detector 'yolo'"),
    (dict(model_options={"num_classes": 5}), "unknown model option 'num_classes'"),
    (dict(model_options={"detector_options": {"score_thresh": 0.1}}), "task 'detect' only"),
])
def test_dense_config_validation_names_the_problem(overrides, complaint):
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(")):
        _config(**overrides).validate()


def test_datasets_of_another_task_are_refused():
    with pytest.raises(ValueError, match="does not match the datasets given"):
        T.train(_config(data="my-mosaics"), datasets=_spectral_mosaics("detect"))


# --- training ------------------------------------------------------------------------------------

def test_segment_trains_and_logs_miou(tmp_path):
    result = T.train(_config(tmp_path, epochs=1))
    assert not result.interrupted and result.epochs_completed == 1
    row = result.history[-1]
    for key in ("train_loss", "train_pixel_accuracy", "test_loss", "test_miou",
                "test_pixel_accuracy"):
        assert key in row and row[key] == row[key], key  # present, not NaN
    assert 0 <= row["test_miou"] <= 100 and 0 <= row["test_pixel_accuracy"] <= 100
    assert "test_top1" not in row and result.final["best_test_miou"] == row["test_miou"]
    epochs = [e for e in _events(tmp_path) if e["event"] == "epoch"]
    assert epochs and "test_miou" in epochs[-1]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["config"]["task"] == "segment" and "test_miou" in summary["final"]
    saved = T.load_checkpoint(tmp_path / T.CHECKPOINT_NAME)
    assert saved["config"]["task"] == "segment"


def test_segment_loss_decreases_when_overfitting_a_batch():
    data = D.make_spectral_regions(8, 8, canvas_size=32, seed=0)
    result = T.train(_config(n_train=8, epochs=12, lr=3e-3, warmup_epochs=1), datasets=data)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.9 * losses[0], losses


def test_detect_trains_one_epoch_and_logs_map(tmp_path):
    data = _spectral_mosaics("detect")
    config = _config(tmp_path, task="detect", data="mosaic-detect/spectral", img_size=64,
                     n_train=16, epochs=1)
    result = T.train(config, datasets=data)
    assert not result.interrupted and result.global_step == 2
    row = result.history[-1]
    assert row["train_loss"] > 0 and "test_map" in row and "test_map_50" in row
    assert -1 <= row["test_map"] <= 100 and "train_top1" not in row
    assert type(result.model).__name__ == "RetinaNet"
    assert "test_map" in [e for e in _events(tmp_path) if e["event"] == "epoch"][-1]
    assert result.final["best_test_map"] == row["test_map"]


# --- resume --------------------------------------------------------------------------------------

RESUME_SETTINGS = dict(drop_path=0.1, ema_decay=0.9, label_smoothing=0.1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return T.train(_config(tmp_path_factory.mktemp("full"), **RESUME_SETTINGS))


@pytest.mark.parametrize("how, stop_step", [("SIGTERM", 3), ("max_steps", 6)])
def test_segment_resume_ends_with_the_same_weights(tmp_path, uninterrupted, how, stop_step):
    def send_signal(row: dict) -> None:
        if how != "max_steps" and row["step"] == stop_step:
            os.kill(os.getpid(), getattr(signal, how))

    max_steps = stop_step if how == "max_steps" else None
    first = T.train(_config(tmp_path, max_steps=max_steps, **RESUME_SETTINGS),
                    on_step_end=send_signal)
    assert first.interrupted and first.global_step == stop_step
    saved = T.load_checkpoint(tmp_path / T.CHECKPOINT_NAME)
    assert saved["position"]["step_in_epoch"] == stop_step % 4

    second = T.train(_config(tmp_path, resume="auto", **RESUME_SETTINGS))
    assert not second.interrupted and second.global_step == 8
    _assert_same_weights(uninterrupted.model, second.model)
    _assert_same_weights(uninterrupted.ema_model, second.ema_model)
    for key in ("train_loss", "train_pixel_accuracy", "test_loss", "test_miou",
                "ema_test_miou", "lr"):
        assert [r[key] for r in second.history] == [r[key] for r in uninterrupted.history], key
    events = [e["event"] for e in _events(tmp_path)]
    assert "interrupted" in events and "resume" in events


def test_resume_refuses_another_task_and_reads_old_checkpoints(tmp_path):
    classify = dict(task="classify", data="spectral", model_options={}, n_train=32,
                    img_size=None, epochs=1, batch_size=16)
    T.train(_config(tmp_path, max_steps=1, **classify))
    path = tmp_path / T.CHECKPOINT_NAME
    with pytest.raises(T.CheckpointError, match="task='classify'; this run has task='segment'"):
        T.train(_config(tmp_path, resume="auto", data="spectral-regions"))
    state = T.load_checkpoint(path)
    del state["config"]["task"]  # a checkpoint written before TrainConfig.task existed
    T.save_checkpoint(path, state)
    assert T.train(_config(tmp_path, resume="auto", **classify)).global_step == 2


# --- command line --------------------------------------------------------------------------------

def test_cli_trains_segmentation(tmp_path, capsys):
    out = tmp_path / "seg"
    argv = ["train", "--task", "segment", "--data", "spectral-regions", *TINY_ARGS,
            *SMALL_ARGS, "--out", str(out)]
    assert main(argv) == 0
    assert "done: test mIoU" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["task"] == "segment" and summary["config"]["img_size"] == 64
    assert "test_miou" in summary["final"] and "--task segment" in summary["command"]
    assert summary["config"]["model_options"]["neck_channels"] == 32


@pytest.mark.parametrize("argv, complaint", [
    (["--task", "segment", "--data", "cifar10"],
     "task 'segment' does not match data 'cifar10', a 'classify' dataset"),
    (["--task", "detect", "--data", "spectral-regions"], "pass --task segment"),
    (["--data", "mosaic-detect/cifar10"], "pass --task detect"),
    (["--task", "segment", "--data", "spectral-regions", "--mixup", "0.2"],
     "mixup applies to task 'classify' only"),
])
def test_cli_task_and_data_mismatch_exits_2(argv, complaint, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "dsm_ref train: error:" in err and complaint in err
    assert not (tmp_path / "x").exists()  # refused before any data is read


def test_cli_unknown_task_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "panoptic"])
    assert exit_info.value.code == 2 and "--task: invalid choice" in capsys.readouterr().err


def test_cli_print_config_keeps_classification_the_default(capsys):
    assert main(["train", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "classify"


@needs_shared_cifar
@pytest.mark.parametrize("task, headline", [("segment", "mIoU"), ("detect", "mAP")])
def test_cli_trains_on_cifar10_mosaics(task, headline, tmp_path, capsys):
    out = tmp_path / task
    argv = ["train", "--task", task, "--data", f"mosaic-{task}/cifar10", *TINY_ARGS,
            *SMALL_ARGS, "--out", str(out)]
    assert main(argv) == 0
    assert f"done: test {headline}" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    key = "test_miou" if task == "segment" else "test_map"
    assert key in summary["final"] and summary["config"]["data"] == f"mosaic-{task}/cifar10"


def test_ddp_segmentation_matches_one_process(tmp_path):
    """torchrun, 2 processes, gloo on CPU: the same losses and mIoU as 1 process (the test
    metrics' counts are gathered across processes; head dropout 0 so no per-rank randomness)."""
    options = ["--task", "segment", "--data", "spectral-regions", "--img-size", "32",
               "--n-train", "32", "--n-test", "12", "--batch-size", "8", "--epochs", "1",
               *TINY_ARGS[2:], "--model-option", "dropout=0.0", "--device", "cpu",
               "--no-progress"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "dsm_ref", "train", *options,
               "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["config"]["task"] == "segment"
    starts = [e for e in _events(tmp_path / "ddp") if e["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2  # only rank 0 writes
    assert main(["train", *options, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for key in ("train_loss", "test_loss", "test_miou", "test_pixel_accuracy"):
        assert ddp["final"][key] == pytest.approx(one["final"][key], abs=1e-3), key
