"""dsm_ref.train: the loop learns, resume is exact, checkpoints are atomic and checked, and a
2-process DDP run (gloo on CPU) matches a 1-process run on the same global batch."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_shared_cifar

from dsm_ref import create_model
from dsm_ref import data as D
from dsm_ref import train as T

ROOT = Path(__file__).resolve().parents[1]


def _config(out: Path | None = None, **overrides) -> T.TrainConfig:
    """A run of a few seconds: dsm_micro, 64 spectral images, batch 16 (4 steps per epoch)."""
    settings = dict(data="spectral", n_train=64, n_test=32, epochs=2, batch_size=16, lr=2e-3,
                    warmup_epochs=0.5, device="cpu", progress=False,
                    out=str(out) if out else None)
    return T.TrainConfig(**{**settings, **overrides})


def _augmented_spectral(n_train: int = 64, n_test: int = 32) -> D.Datasets:
    """Spectral images with crop+flip switched on, so resume also covers keyed augmentation."""
    data = D.make_spectral_task("band_shift", n_train, n_test, seed=0)
    data.train = data.train.with_augment("crop_flip")
    return data


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    _assert_same_weights_state(a.state_dict(), b.state_dict())


def _assert_same_weights_state(state_a: dict, state_b: dict) -> None:
    assert state_a.keys() == state_b.keys()
    for name, value in state_a.items():
        assert torch.equal(value, state_b[name]), f"{name} differs"


# --- pieces --------------------------------------------------------------------------------------

def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    factors = [T.cosine_lr_factor(s, total_steps=100, warmup_steps=10, min_factor=0.01)
               for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.01 + 0.99 * 0.5)
    assert factors[100] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))


def test_sharded_sampler_splits_the_global_batch_and_skips_on_resume():
    single = list(T.ShardedSampler(24, seed=3))
    ranks = [list(T.ShardedSampler(24, seed=3, rank=r, world_size=2)) for r in range(2)]
    for step in range(3):  # global batch of 8 == two local batches of 4
        together = set(ranks[0][4 * step:4 * step + 4]) | set(ranks[1][4 * step:4 * step + 4])
        assert together == set(single[8 * step:8 * step + 8])
    sampler = T.ShardedSampler(24, seed=3)
    sampler.set_epoch(0, start=10)
    assert list(sampler) == single[10:] and len(sampler) == 14
    sampler.set_epoch(1)
    assert list(sampler) != single
    evaluation = [list(T.ShardedSampler(5, rank=r, world_size=2, shuffle=False,
                                        drop_last=False)) for r in range(2)]
    assert sorted(evaluation[0] + evaluation[1]) == [0, 1, 2, 3, 4]


def test_config_validation_names_the_field():
    for bad, field in ((dict(epochs=0), "epochs"), (dict(lr=-1.0), "lr"),
                       (dict(amp="fp8"), "amp"), (dict(model="nope"), "nope"),
                       (dict(warmup_epochs=9.0), "warmup_epochs"),
                       (dict(drop_path=1.0), "drop_path")):
        with pytest.raises(ValueError, match=field):
            _config(**bad).validate()
    with pytest.raises(ValueError, match="fp16"):
        T.train(_config(amp="fp16"))
    with pytest.raises(ValueError, match="smaller than one batch"):
        T.train(_config(n_train=8))


def test_evaluate_predict_and_confusion_matrix():
    data = D.make_spectral_task(n_train=16, n_test=24, num_classes=4)
    model = create_model("dsm_micro", num_classes=4)
    metrics = T.evaluate(model, data.test, batch_size=10, device="cpu")
    assert metrics["count"] == 24 and 0 <= metrics["top1"] <= metrics["top5"] <= 100
    logits, labels = T.predict(model, data.test, batch_size=10, device="cpu")
    assert logits.shape == (24, 4) and torch.equal(labels, data.test.labels)
    top1 = 100 * (logits.argmax(1) == labels).float().mean().item()
    assert metrics["top1"] == pytest.approx(top1)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    matrix = T.confusion_matrix(logits.argmax(1), labels, 4)
    assert matrix.shape == (4, 4) and matrix.sum() == 24
    assert matrix.trace() == (logits.argmax(1) == labels).sum()


# --- learning ------------------------------------------------------------------------------------

def _overfit(images: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int) -> list:
    torch.manual_seed(0)
    model = create_model("dsm_micro", num_classes=num_classes)
    optimizer = T.build_optimizer(model, T.TrainConfig(lr=2e-3))
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@needs_shared_cifar
def test_loss_decreases_on_a_small_real_batch():
    data = D.load_cifar10(n_train=32, n_test=10, progress=False)
    images, labels = data.train.with_augment(None).get_batch(range(32))
    losses = _overfit(images, labels, 10, steps=12)
    assert losses[0] == pytest.approx(math.log(10), abs=0.3)  # an untrained head guesses
    assert losses[-1] < 0.6 * losses[0], losses


def test_loss_decreases_on_a_spectral_batch():
    data = D.make_spectral_task(n_train=32, n_test=8, num_classes=4)
    images, labels = data.train.get_batch(range(32))
    losses = _overfit(images, labels, 4, steps=12)
    assert losses[-1] < 0.6 * losses[0], losses


def test_train_writes_logs_and_metrics(tmp_path):
    rows = []
    result = T.train(_config(tmp_path, log_every=2, ema_decay=0.9), on_epoch_end=rows.append)
    assert [row["epoch"] for row in result.history] == [1, 2] and rows == result.history
    assert result.epochs_completed == 2 and result.global_step == 8 and not result.interrupted
    assert result.ema_model is not None and "ema_test_top1" in result.final
    assert result.train_images_per_s > 0 and result.wall_time_s > 0
    events = [json.loads(line)["event"] for line in (tmp_path / "log.jsonl").open()]
    assert events[0] == "start" and events[-1] == "end"
    assert events.count("epoch") == 2 and events.count("step") == 4
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["final"]["test_top1"] == result.final["test_top1"]
    assert summary["config"]["model"] == "dsm_micro" and summary["epochs_completed"] == 2
    provenance = summary["provenance"]  # dsm_ref.provenance, taken when the run started
    assert {"command", "git", "device", "environment", "date"} <= set(provenance)
    assert summary["environment"] == provenance["environment"]  # the key stored runs are read by
    state = T.load_checkpoint(tmp_path / T.CHECKPOINT_NAME)
    assert state["position"]["epoch"] == 2 and state["ema"] is not None


def test_bf16_autocast_on_cpu_runs():
    result = T.train(_config(amp="bf16", n_train=32, epochs=1))
    assert math.isfinite(result.final["train_loss"])


def test_model_options_are_checked_by_name_before_training():
    config = _config(model_options={"token_mixer": "static", "dims": (16, 32, 48, 64),
                                    "mixer_options": {"spectrum_length": 8}})
    assert config.validate() is config
    for options, complaint in (({"token_mixer": "nope"}, "unknown token_mixer 'nope'"),
                               ({"mixer_options": {"spectrum_lenght": 8}},
                                "unknown option 'spectrum_lenght' of token_mixer 'dsm'"),
                               ({"depth": (1, 1, 1, 1)}, "unknown model option 'depth'")):
        with pytest.raises(ValueError, match=complaint):
            _config(model_options=options).validate()


# --- resume --------------------------------------------------------------------------------------

RESUME_SETTINGS = dict(mixup=0.4, drop_path=0.1, ema_decay=0.9)  # every source of randomness


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return T.train(_config(out, **RESUME_SETTINGS), datasets=_augmented_spectral())


@pytest.mark.parametrize("how, stop_step", [("SIGINT", 3), ("SIGTERM", 6), ("max_steps", 4)])
def test_resume_ends_with_the_same_weights(tmp_path, uninterrupted, how, stop_step):
    data = _augmented_spectral()

    def send_signal(row: dict) -> None:
        if how != "max_steps" and row["step"] == stop_step:
            os.kill(os.getpid(), getattr(signal, how))

    max_steps = stop_step if how == "max_steps" else None
    first = T.train(_config(tmp_path, max_steps=max_steps, **RESUME_SETTINGS), datasets=data,
                    on_step_end=send_signal)
    assert first.interrupted and first.global_step == stop_step
    assert first.stop_signal == (None if how == "max_steps" else getattr(signal, how))
    saved = T.load_checkpoint(tmp_path / T.CHECKPOINT_NAME)
    assert saved["position"]["global_step"] == stop_step
    assert saved["position"]["step_in_epoch"] == stop_step % 4
    mapped = T.load_checkpoint(tmp_path / T.CHECKPOINT_NAME, mmap=True)  # what resume reads first
    assert mapped["config"] == saved["config"]
    _assert_same_weights_state(mapped["model"], saved["model"])

    second = T.train(_config(tmp_path, resume="auto", **RESUME_SETTINGS), datasets=data)
    assert not second.interrupted and second.global_step == 8
    _assert_same_weights(uninterrupted.model, second.model)
    _assert_same_weights(uninterrupted.ema_model, second.ema_model)
    for key in ("train_loss", "train_top1", "test_loss", "test_top1", "ema_test_top1", "lr"):
        assert [r[key] for r in second.history] == [r[key] for r in uninterrupted.history], key
    events = [json.loads(line)["event"] for line in (tmp_path / "log.jsonl").open()]
    assert "interrupted" in events and "resume" in events


def test_resume_refuses_another_run(tmp_path):
    T.train(_config(tmp_path, epochs=1))
    with pytest.raises(T.CheckpointError, match="batch_size=16"):
        T.train(_config(tmp_path, epochs=1, batch_size=32, resume="auto"))
    with pytest.raises(T.CheckpointError, match="no dsm_ref training checkpoint at"):
        T.train(_config(tmp_path, resume=str(tmp_path / "missing.pt")))


# --- checkpoint files ----------------------------------------------------------------------------

def _small_state(value: float) -> dict:
    return {"format": T.CHECKPOINT_FORMAT, "version": T.CHECKPOINT_VERSION,
            "model": {"w": torch.full((4,), value)}}


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = T.save_checkpoint(tmp_path / "c.pt", _small_state(1.0))

    def broken_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        T.save_checkpoint(path, _small_state(2.0))
    monkeypatch.undo()
    assert torch.equal(T.load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"], "temporary file left behind"


def test_killed_writer_leaves_the_previous_checkpoint_intact(tmp_path):
    path = T.save_checkpoint(tmp_path / "c.pt", _small_state(1.0))
    script = textwrap.dedent(f"""
        import os, signal, torch
        from dsm_ref.train import save_checkpoint

        def save_then_die(obj, handle):  # the process is killed half-way through writing
            handle.write(b"PK\\x03\\x04" + bytes(1 << 16))
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save_then_die
        save_checkpoint({str(path)!r}, {{"model": torch.zeros(1 << 20)}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "c.pt"]
    # dsm_ref.files.atomic_write's temporary: .<name>.<pid>-<token>.tmp beside the target
    assert leftovers and leftovers[0].startswith(".c.pt.") and leftovers[0].endswith(".tmp"), \
        "the writer did not start"
    assert torch.equal(T.load_checkpoint(path)["model"]["w"], torch.ones(4))


def test_truncated_and_foreign_checkpoints_are_clear_errors(tmp_path):
    good = T.save_checkpoint(tmp_path / "good.pt", _small_state(1.0))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(T.CheckpointError, match="truncated or corrupt") as err:
        T.load_checkpoint(truncated)
    assert str(truncated) in str(err.value) and T.CHECKPOINT_FORMAT in str(err.value)

    bare = tmp_path / "state_dict.pt"
    torch.save(create_model("dsm_micro").state_dict(), bare)
    with pytest.raises(T.CheckpointError, match="not a dsm_ref training checkpoint") as err:
        T.load_checkpoint(bare)
    assert "found a dict with keys" in str(err.value)

    pickled = tmp_path / "pickled.pt"
    torch.save({"args": argparse.Namespace(lr=1.0)}, pickled)
    with pytest.raises(T.CheckpointError, match="weights_only") as err:
        T.load_checkpoint(pickled)
    assert str(pickled) in str(err.value)

    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(T.CheckpointError, match="truncated or corrupt"):
        T.load_checkpoint(text)
    with pytest.raises(T.CheckpointError, match="no dsm_ref training checkpoint at"):
        T.load_checkpoint(tmp_path / "missing.pt")


# --- several processes ---------------------------------------------------------------------------

def test_ddp_stop_request_is_agreed_every_k_steps_and_at_epoch_ends(monkeypatch):
    """Under DDP the stop flag is all-reduced (a host sync) only every STOP_CHECK_EVERY steps and
    at epoch ends; which steps check depends on the step count alone, so every rank enters the
    same collectives and all stop at the same step. One process checks every step."""
    from dsm_ref.train import loop, runtime

    run = object.__new__(loop._Run)  # only _stop_now's state: config and process
    run.config, run.proc = _config(), runtime._Process(rank=1, world_size=2)
    reduced = []

    def all_reduce(flag, op):  # this rank has no signal; another rank got SIGTERM
        reduced.append(flag.item())
        flag.fill_(1.0)

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    stop, k = loop._StopRequest(enabled=False), T.STOP_CHECK_EVERY
    assert not any(run._stop_now(stop, step) for step in range(1, k)) and reduced == []
    assert run._stop_now(stop, k) and reduced == [0.0]
    assert run._stop_now(stop, 3, boundary=True) and reduced == [0.0, 0.0]
    run.config = _config(max_steps=5)
    assert run._stop_now(stop, 5) and len(reduced) == 2  # the budget is the same on every rank
    run.proc = runtime._Process()
    assert not run._stop_now(stop, 1)
    stop.signum = signal.SIGTERM
    assert run._stop_now(stop, 1) and len(reduced) == 2  # one process: every step, no collective


def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    """torchrun, 2 processes, gloo on CPU, 8 local samples each == 1 process with 16.

    dsm_micro has no BatchNorm (LayerNorm only) and drop-path 0 here, so per-sample computation
    does not depend on the split; DDP averages the two local mean gradients, which is the mean
    over the global batch. The weights agree to float rounding (the gradient sums run in another
    order); another seed differs by ~1e-1.
    """
    out = tmp_path / "ddp"
    options = ["--data", "spectral", "--n-train", "64", "--n-test", "32", "--epochs", "2",
               "--batch-size", "16", "--lr", "2e-3", "--warmup-epochs", "0.5",
               "--drop-path", "0", "--device", "cpu", "--no-progress", "--out", str(out)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "dsm_ref", "train", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.jsonl", "metrics.json"]
    events = [json.loads(line) for line in (out / "log.jsonl").open()]
    assert [e["event"] for e in events].count("start") == 1, "only rank 0 may write"
    assert events[0]["world_size"] == 2

    ddp = T.load_checkpoint(out / T.CHECKPOINT_NAME)
    assert len(ddp["rng"]) == 2  # every rank's RNG state, for resuming on 2 processes
    single = T.train(_config(drop_path=0.0))
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=0, atol=2e-4)
    for ddp_row, row in zip(ddp["history"], single.history, strict=True):
        assert ddp_row["train_loss"] == pytest.approx(row["train_loss"], abs=1e-4)
        assert ddp_row["test_loss"] == pytest.approx(row["test_loss"], abs=1e-3)
