"""One run of one arm: its training configuration, the training, and the JSON-able run record
(metrics, per-image test predictions, provenance), plus its trained weights on request."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path

import torch

from ..data import build_datasets
from ..files import atomic_torch_save
from ..provenance import provenance
from ..train import TrainConfig, predict, train
from .studies import STUDY_DATA, Arm, Budget

__all__ = ["arm_config", "run_arm", "run_path", "weights_path", "save_weights", "load_weights",
           "encode_predictions", "decode_predictions"]

def run_path(out: Path, dataset: str, arm: Arm, budget: Budget, seed: int) -> Path:
    return out / "runs" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.json"


def weights_path(out: str | os.PathLike, dataset: str, arm: Arm, budget: Budget,
                 seed: int) -> Path:
    """Where :func:`run_study` stores the trained weights of one run."""
    return Path(out) / "weights" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.pt"


def arm_config(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
               work_dir: str | os.PathLike | None = None, progress: bool = False) -> TrainConfig:
    """The training configuration of one run of ``arm`` (see :func:`run_arm`)."""
    return TrainConfig(
        model=budget.model, model_options=dict(arm.model_options), data=STUDY_DATA[dataset],
        n_train=budget.n_train, n_test=budget.n_test, epochs=budget.epochs,
        batch_size=budget.batch_size, lr=budget.lr, weight_decay=budget.weight_decay,
        warmup_epochs=min(1.0, budget.epochs), seed=seed, device=device,
        out=None if work_dir is None else str(work_dir),
        resume=None if work_dir is None else "auto",
        progress=progress, handle_signals=False,
    )


def run_arm(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
            progress: bool = False, work_dir: str | os.PathLike | None = None,
            weights_path: str | os.PathLike | None = None) -> dict:
    """Trains one arm once; returns the JSON-able run record.

    ``work_dir``: where the run checkpoints after every epoch and resumes from if it was
    killed (removed once the run is done); ``None`` trains in memory. ``weights_path``: also
    store the trained weights there (half precision, a few hundred kB for ``dsm_micro``).
    """
    config = arm_config(arm, dataset, seed, budget, device=device, work_dir=work_dir,
                        progress=progress)
    started = provenance(device)
    datasets = build_datasets(config.data, n_train=config.n_train, n_test=config.n_test,
                              seed=config.seed, progress=False)
    result = train(config, datasets=datasets)
    logits, labels = predict(result.model, datasets.test, device=device)
    if weights_path is not None:
        save_weights(result.model, weights_path)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "arm": arm.name,
        "seed": seed,
        "config": config.to_dict(),
        "provenance": {**started, "data_source": datasets.source,
                       "data_info": datasets.info},
        "test_predictions": encode_predictions(logits.argmax(1)),
        "test_labels_sha256": hashlib.sha256(
            labels.to(torch.uint8).numpy().tobytes()).hexdigest()[:16],
        "test_top1": result.final["test_top1"],
        "best_test_top1": result.final.get("best_test_top1"),
        "train_loss": result.final.get("train_loss"),
        "test_top1_per_epoch": [row.get("test_top1") for row in result.history],
        "wall_time_s": round(result.wall_time_s, 2),
        "train_images_per_s": round(result.train_images_per_s, 1),
        "num_params": result.num_params,
    }


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """The model's state dict in half precision (floats only), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    atomic_torch_save(state, path)
    return path


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Loads :func:`save_weights`' file into ``model`` (cast to its dtype); returns it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) if k in reference else v
                           for k, v in state.items()})
    return model


def encode_predictions(predictions: torch.Tensor) -> str:
    """Per-image predicted classes ``(N,)`` as base64 of one uint8 each (10,000 -> 13 kB)."""
    if predictions.numel() and (predictions.min() < 0 or predictions.max() > 255):
        raise ValueError("predictions must be class indices in [0, 255]")
    return base64.b64encode(predictions.to(torch.uint8).numpy().tobytes()).decode("ascii")


def decode_predictions(text: str) -> torch.Tensor:
    """Inverse of :func:`encode_predictions`: ``(N,)`` int64 class indices."""
    raw = bytearray(base64.b64decode(text.encode("ascii"), validate=True))
    return torch.frombuffer(raw, dtype=torch.uint8).long() if raw else torch.zeros(0).long()
