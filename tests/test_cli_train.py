"""``python -m dsm_ref train`` and ``info``: bad arguments, the ImageNet preset (its values, and a
run of its pipeline on a generated folder), short real runs, resume, SIGTERM, and the messages
users see when data is missing."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import needs_shared_cifar
from PIL import Image

from dsm_ref import data as D
from dsm_ref import train as T
from dsm_ref.cli import build_parser, main
from dsm_ref.commands import train as C

SMALL = ["--data", "spectral", "--n-train", "32", "--n-test", "16", "--batch-size", "16",
         "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("argv, complaint", [
    (["--epochs", "0"], "--epochs: must be a positive integer"),
    (["--epochs", "two"], "--epochs: invalid"),
    (["--batch-size", "-8"], "--batch-size: must be a positive integer"),
    (["--lr", "0"], "--lr: must be a positive number"),
    (["--lr", "nan"], "--lr: must be a positive number"),
    (["--model", "resnet50"], "--model: invalid choice"),
    (["--data", "mnist"], "unknown dataset 'mnist'"),
    (["--amp", "fp8"], "--amp: invalid choice"),
    (["--n-train", "0"], "--n-train: must be a positive integer"),
    (["--threads", "0"], "--threads: must be a positive integer"),
    (["--preset", "nope"], "--preset: invalid choice"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_arguments_exit_with_usage_error(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize("argv, complaint", [
    (["--warmup-epochs", "9", "--epochs", "2"], "warmup_epochs must be in"),
    (["--min-lr", "1", "--lr", "0.1"], "min_lr must be in"),
    (["--amp", "fp16", "--device", "cpu"], "amp='fp16' needs a CUDA device"),
    (["--batch-size", "64"], "smaller than one batch"),
])
def test_inconsistent_options_return_2_with_a_message(argv, complaint, tmp_path, capsys):
    code = main(["train", *SMALL, "--out", str(tmp_path), *argv])
    assert code == 2
    assert complaint in capsys.readouterr().err


def test_imagenet_preset_is_the_family_recipe(capsys):
    assert main(["train", "--preset", "imagenet-dsm_s", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    expected = dict(model="dsm_s", data="imagenet", img_size=224, epochs=300, batch_size=1024,
                    lr=1e-3, weight_decay=0.05, warmup_epochs=20, randaugment=9, mixup=0.8,
                    cutmix=1.0, label_smoothing=0.1)
    assert {k: config[k] for k in expected} == expected
    assert main(["train", "--preset", "imagenet-dsm_s", "--lr", "5e-4", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"] == 5e-4  # options override the preset


def test_defaults_and_out_folder(capsys):
    args = build_parser().parse_args(["train", "--data", "spectral/distractor"])
    config = C.config_from_args(args)
    assert config.model == "dsm_micro"
    assert config.out == str(Path("runs/dsm_micro-spectral-distractor"))
    args = build_parser().parse_args(["train", "--grad-clip", "0", "--resume"])
    config = C.config_from_args(args)
    assert config.grad_clip is None and config.resume == "auto"


def test_mixer_and_its_options_reach_the_model_and_it_trains(tmp_path, monkeypatch, capsys):
    """--mixer static --mixer-option spectrum_length=8: every block's mixer is built by the
    registry's "static" entry with spectrum_length=8, and the run trains and records it."""
    from functools import wraps

    from dsm_ref.mixers import DynamicSpectrumMixer
    from dsm_ref.models import TOKEN_MIXERS

    built = []
    static = TOKEN_MIXERS["static"]

    @wraps(static)  # keeps the signature the options are checked against
    def recording(dim, input_size, **options):
        mixer = static(dim, input_size, **options)
        built.append((options, mixer))
        return mixer

    monkeypatch.setitem(TOKEN_MIXERS, "static", recording)
    out = tmp_path / "run"
    argv = ["train", *SMALL, "--epochs", "1", "--out", str(out), "--mixer", "static",
            "--mixer-option", "spectrum_length=8"]
    assert main(argv) == 0, capsys.readouterr().err
    assert len(built) == 5  # dsm_micro's blocks: depths (1, 1, 2, 1)
    for options, mixer in built:
        assert options == {"spectrum_length": 8}
        assert isinstance(mixer, DynamicSpectrumMixer) and mixer.dswg is None  # the static form
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["model_options"] == {"token_mixer": "static",
                                                  "mixer_options": {"spectrum_length": 8}}
    assert summary["epochs_completed"] == 1 and summary["global_step"] == 2
    assert summary["command"].endswith("--mixer static --mixer-option spectrum_length=8")
    state = T.load_checkpoint(out / T.CHECKPOINT_NAME)
    assert not any("dswg" in name for name in state["model"])
    config = T.TrainConfig(**{**state["config"], "betas": tuple(state["config"]["betas"])})
    model = T.build_model(config, num_classes=len(state["model"]["head.bias"]), img_size=32)
    model.load_state_dict(state["model"])  # strict: the trained weights are this model's


def test_mixer_options_build_the_dswg_they_name():
    args = build_parser().parse_args(["train", "--mixer", "dsm", "--mixer-option",
                                      "spectrum_length=8", "--mixer-option", "gate=2sigmoid",
                                      "--model-option", "dims=(16, 32, 48, 64)"])
    config = C.config_from_args(args).validate()
    model = T.build_model(config, num_classes=4, img_size=32)
    mixers = [block.mixer for stage in model.stages for block in stage.blocks]
    assert [m.dim for m in mixers] == [16, 32, 48, 48, 64]
    assert all(m.dswg.spectrum_length == 8 and m.dswg.gate == "2sigmoid" for m in mixers)


@pytest.mark.parametrize("argv, complaint", [
    (["--mixer", "nope"], "unknown token_mixer 'nope'; expected one of: dsm, static"),
    (["--mixer", "static", "--mixer-option", "spectrum_lenght=8"],
     "unknown option 'spectrum_lenght' of token_mixer 'static'; expected one of: "),
    (["--mixer", "dwconv", "--mixer-option", "spectrum_length=8"],
     "unknown option 'spectrum_length' of token_mixer 'dwconv'; expected one of: kernel_size"),
    (["--model-option", "depth=(1, 1, 1, 1)"], "unknown model option 'depth'; expected one of: "
                                               "depths, dims"),
])
def test_unknown_mixer_or_option_returns_2_before_training(argv, complaint, tmp_path, capsys):
    code = main(["train", *SMALL, "--out", str(tmp_path / "run"), *argv])
    assert code == 2
    assert complaint in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "nothing may start before the options are checked"


@pytest.mark.parametrize("option", ["spectrum_length", "=8", "spectrum length=8"])
def test_malformed_key_value_is_a_usage_error(option, capsys):
    for flag in ("--mixer-option", "--model-option"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", flag, option])
        assert exit_info.value.code == 2
        assert f"{flag}: expected KEY=VALUE" in capsys.readouterr().err


def test_bad_mixer_exits_2_from_the_shell():
    command = [sys.executable, "-m", "dsm_ref", "train", *SMALL, "--mixer", "nope"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "unknown token_mixer 'nope'" in proc.stderr


def test_command_line_round_trips_with_the_model_options():
    argv = ["--data", "spectral", "--mixer", "static", "--mixer-option", "spectrum_length=8",
            "--mixer-option", "static_init=ones", "--model-option", "dims=(16, 32, 48, 64)",
            "--model-option", "layer_scale_init=None", "--epochs", "1", "--resume"]
    args = build_parser().parse_args(["train", *argv])
    line = C.command_line(args)
    assert line == ("python -m dsm_ref train --data spectral --mixer static "
                    "--mixer-option spectrum_length=8 --mixer-option static_init=ones "
                    "--model-option 'dims=(16, 32, 48, 64)' --model-option layer_scale_init=None "
                    "--epochs 1 --resume")
    again = build_parser().parse_args(["train", *shlex.split(line)[4:]])
    assert C.command_line(again) == line
    config = C.config_from_args(again)
    assert config == C.config_from_args(args)
    assert config.model_options == {"dims": (16, 32, 48, 64), "layer_scale_init": None,
                                    "token_mixer": "static",
                                    "mixer_options": {"spectrum_length": 8, "static_init": "ones"}}
    assert C.command_line(build_parser().parse_args(["train"])) == "python -m dsm_ref train"


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    assert "done: test top-1" in capsys.readouterr().out
    first = json.loads((out / "metrics.json").read_text())
    assert first["epochs_completed"] == 1 and first["config"]["data"] == "spectral"
    assert first["command"].startswith("python -m dsm_ref train --data spectral --n-train 32")
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["epochs_completed"] == 2 and len(second["history"]) == 2
    assert second["history"][0] == first["history"][0]


def test_missing_data_and_checkpoint_errors_return_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv(D.CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert main(["train", "--data", "cifar10", "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and str(tmp_path / "empty") in err and "--download" in err
    code = main(["train", *SMALL, "--out", str(tmp_path / "y"), "--resume",
                 str(tmp_path / "nope.pt")])
    assert code == 1 and "no dsm_ref training checkpoint at" in capsys.readouterr().err


@needs_shared_cifar
def test_readme_command_on_a_cifar10_subset(tmp_path, capsys):
    out = tmp_path / "cifar"
    argv = ["train", "--model", "dsm_micro", "--data", "cifar10", "--epochs", "1",
            "--n-train", "256", "--n-test", "100", "--batch-size", "64", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["final"]["test_top1"] >= 0 and summary["num_params"] > 100_000
    assert (out / "checkpoint.pt").is_file()


def test_info_prints_versions_device_and_data_locations(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "torch" in text and "picked" in text and str(tmp_path) in text
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["data"][D.DATA_DIR_ENV] == str(tmp_path)
    assert set(info) == {"environment", "device", "data"}


def test_imagenet_preset_runs_end_to_end_on_a_generated_folder(tmp_path, capsys):
    """The paper-scale recipe (RandAugment, MixUp/CutMix, label smoothing, random erasing,
    drop-path, clipping) on a tiny ImageNet-style folder, with a small model and 64 px."""
    for split in ("train", "val"):
        for c, cls in enumerate(("n01440764", "n01443537")):
            folder = tmp_path / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = torch.randint(0, 256, (72, 80, 3), dtype=torch.uint8,
                                       generator=torch.Generator().manual_seed(10 * c + i))
                buffer = io.BytesIO()
                Image.fromarray(pixels.numpy()).save(buffer, format="JPEG")
                (folder / f"{split}_{i}.JPEG").write_bytes(buffer.getvalue())
    out = tmp_path / "run"
    argv = ["train", "--preset", "imagenet-dsm_s", "--model", "dsm_nano", "--img-size", "64",
            "--data-dir", str(tmp_path / "imagenet"), "--epochs", "1", "--warmup-epochs", "0",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-progress",
            "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "metrics.json").read_text())
    config = summary["config"]
    assert (config["mixup"], config["cutmix"], config["label_smoothing"]) == (0.8, 1.0, 0.1)
    assert summary["global_step"] == 2 and 0 <= summary["final"]["test_top1"] <= 100
    assert summary["final"]["test_top5"] == 100.0  # 2 classes: always among the top 5


def test_sigterm_to_the_command_saves_a_checkpoint_and_exits_143(tmp_path):
    """What a cluster does at the end of a job's time: SIGTERM, then (later) SIGKILL."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "dsm_ref", "train", *SMALL, "--epochs", "1000",
               "--log-every", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        log, deadline = out / "log.jsonl", time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and '"event": "step"' in log.read_text():
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    events = [json.loads(line)["event"] for line in log.open()]
    assert events[-2:] == ["interrupted", "end"]
    state = T.load_checkpoint(out / T.CHECKPOINT_NAME)
    assert state["position"]["global_step"] >= 1


def test_resume_alone_continues_with_the_settings_the_run_started_with(tmp_path, capsys):
    out = tmp_path / "run"
    first = ["train", *SMALL, "--epochs", "3", "--label-smoothing", "0.1", "--lr", "1e-3",
             "--max-steps", "2", "--out", str(out)]
    assert main(first) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["epochs"], config["label_smoothing"], config["lr"], config["data"]) == (
        3, 0.1, 1e-3, "spectral")
    assert config["out"] == str(out) and config["resume"] == "auto"
    # an option given beside --resume changes just that one
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["epochs"], config["label_smoothing"]) == (4, 0.1)
    # and the resumed run trains to the planned end
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "after 3 epochs" in capsys.readouterr().out


def test_resume_from_an_unreadable_checkpoint_exits_with_1(tmp_path, capsys):
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["train", *SMALL, "--out", str(tmp_path / "x"), "--resume", str(broken)]) == 1
    assert "dsm_ref train: error:" in capsys.readouterr().err
