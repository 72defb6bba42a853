"""One run of one arm: its training configuration, the training, and the JSON-able run record
(metrics, per-image test predictions or per-class dense scores, provenance), plus its trained
weights on request."""

from __future__ import annotations

import base64
import hashlib
import math
import os
import shutil
from pathlib import Path

import torch

from ..data import Datasets, build_datasets, collate_detection
from ..files import atomic_torch_save
from ..provenance import provenance
from ..train import TrainConfig, predict, train
from .studies import (
    TASK_METRICS,
    Arm,
    Budget,
    arm_model_options,
    data_name,
    data_task,
    pretraining_run,
)

__all__ = ["arm_config", "run_arm", "dense_scores", "run_path", "weights_path",
           "pretrained_weights_path", "save_weights", "load_weights", "encode_predictions",
           "decode_predictions"]

def run_path(out: Path, dataset: str, arm: Arm, budget: Budget, seed: int) -> Path:
    return out / "runs" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.json"


def weights_path(out: str | os.PathLike, dataset: str, arm: Arm, budget: Budget,
                 seed: int) -> Path:
    """Where :func:`run_study` stores the trained weights of one run."""
    return Path(out) / "weights" / dataset / f"{arm.key(budget, dataset)}-seed{seed}.pt"


def pretrained_weights_path(out: str | os.PathLike, dataset: str, arm: Arm,
                            budget: Budget) -> Path:
    """Where the weights of the classification run that the pretrained ``arm`` starts from are
    stored (:func:`dsm_ref.ablation.studies.pretraining_run`; :func:`run_study` trains it)."""
    return weights_path(out, *pretraining_run(arm, budget, dataset))


def arm_config(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
               work_dir: str | os.PathLike | None = None, progress: bool = False,
               pretrained_path: str | os.PathLike | None = None) -> TrainConfig:
    """The training configuration of one run of ``arm`` (see :func:`run_arm`): the task is the
    data's; ``pretrained_path`` (a dense arm's backbone start) becomes a model option."""
    options = arm_model_options(arm, budget)
    if pretrained_path is not None:
        options["pretrained_path"] = str(pretrained_path)
    return TrainConfig(
        model=budget.model, model_options=options, task=data_task(dataset),
        data=data_name(dataset), n_train=budget.n_train, n_test=budget.n_test,
        img_size=budget.img_size, epochs=budget.epochs,
        batch_size=budget.batch_size, lr=budget.lr, weight_decay=budget.weight_decay,
        warmup_epochs=min(1.0, budget.epochs), seed=seed, device=device,
        out=None if work_dir is None else str(work_dir),
        resume=None if work_dir is None else "auto",
        progress=progress, handle_signals=False,
    )


def run_arm(arm: Arm, dataset: str, seed: int, budget: Budget, *, device: str = "cpu",
            progress: bool = False, work_dir: str | os.PathLike | None = None,
            weights_path: str | os.PathLike | None = None,
            pretrained_path: str | os.PathLike | None = None) -> dict:
    """Trains one arm once; returns the JSON-able run record.

    ``work_dir``: where the run checkpoints after every epoch and resumes from if it was
    killed (removed once the run is done); ``None`` trains in memory. ``weights_path``: also
    store the trained weights there (half precision, a few hundred kB for ``dsm_micro``).
    ``pretrained_path``: the weights an arm with ``pretrain`` starts its backbone from (its
    pretraining run's, :func:`pretrained_weights_path`); required for such an arm.

    The record holds the task's metrics (:data:`~dsm_ref.ablation.studies.TASK_METRICS`, from
    the trainer's last evaluation), ``metric`` (the headline's name) and its value per epoch;
    classification adds the per-image test predictions, dense tasks the per-class scores and
    the trivial baseline (:func:`dense_scores`).
    """
    if arm.pretrain is not None and pretrained_path is None:
        raise ValueError(f"arm {arm.name!r} starts from a pretraining run: pass its weights as "
                         "pretrained_path (run_study trains them first)")
    config = arm_config(arm, dataset, seed, budget, device=device, work_dir=work_dir,
                        progress=progress, pretrained_path=pretrained_path)
    started = provenance(device)
    datasets = build_datasets(config.data, n_train=config.n_train, n_test=config.n_test,
                              img_size=config.img_size, seed=config.seed, progress=False)
    result = train(config, datasets=datasets)
    metrics = TASK_METRICS[config.task]
    headline = metrics[0]
    if config.task == "classify":
        logits, labels = predict(result.model, datasets.test, device=device)
        scores = {
            "test_predictions": encode_predictions(logits.argmax(1)),
            "test_labels_sha256": hashlib.sha256(
                labels.to(torch.uint8).numpy().tobytes()).hexdigest()[:16]}
    else:
        scores = dense_scores(result.model, datasets, config.task, device=device)
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
        "task": config.task,
        "metric": headline,
        "num_classes": datasets.num_classes,
        "img_size": datasets.img_size,
        **scores,
        **{name: result.final[name] for name in metrics},
        f"best_{headline}": result.final.get(f"best_{headline}"),
        "train_loss": result.final.get("train_loss"),
        f"{headline}_per_epoch": [row.get(headline) for row in result.history],
        "wall_time_s": round(result.wall_time_s, 2),
        "train_images_per_s": round(result.train_images_per_s, 1),
        "num_params": result.num_params,
    }


@torch.no_grad()
def dense_scores(model: torch.nn.Module, datasets: Datasets, task: str, *,
                 device: str = "cpu", batch_size: int = 32) -> dict:
    """Per-class test scores of a trained dense model, and the run's trivial baseline.

    Segmentation: ``test_iou_per_class`` (percent per class name, ``None`` for a class absent
    from both prediction and target) and ``baseline_test_miou``, the mIoU of predicting the
    training set's majority class everywhere (its first 256 masks; the background on the
    mosaics). Detection: ``test_ap_per_class`` (COCO AP in percent per object class with a
    target) and ``baseline_test_map`` = 0, the mAP of a detector that finds nothing.
    """
    from torch.utils.data import DataLoader

    from ..dense.metrics import detection_metric, segmentation_metrics

    was_training = model.training
    model.eval()
    collate = collate_detection if task == "detect" else None
    loader = DataLoader(datasets.test, batch_size=batch_size, shuffle=False, collate_fn=collate)
    names = list(datasets.classes)
    if task == "detect":
        metric = detection_metric(class_metrics=True)
        for images, targets in loader:
            found = model([image.to(device) for image in images])
            metric.update([{k: v.float().cpu() if k != "labels" else v.cpu()
                            for k, v in f.items()} for f in found], targets)
        scores = metric.compute()
        per_class = {names[int(c)]: _percent(ap)
                     for c, ap in zip(scores["classes"].reshape(-1),
                                      scores["map_per_class"].reshape(-1), strict=True)}
        model.train(was_training)
        return {"test_ap_per_class": per_class, "baseline_test_map": 0.0}
    ignore = datasets.info.get("ignore_index", getattr(datasets.train, "ignore_index", None))
    counts = torch.zeros(datasets.num_classes, dtype=torch.long)
    for index in range(min(256, len(datasets.train))):
        mask = datasets.train[index][1].flatten()
        mask = mask if ignore is None else mask[mask != ignore]
        counts += torch.bincount(mask, minlength=datasets.num_classes)
    majority = int(counts.argmax())
    trained = segmentation_metrics(datasets.num_classes, ignore)
    trivial = segmentation_metrics(datasets.num_classes, ignore)
    for images, masks in loader:
        trained.update(model(images.to(device)).argmax(1).cpu(), masks)
        trivial.update(torch.full_like(masks, majority), masks)
    per_class = trained.compute()["iou_per_class"]
    model.train(was_training)
    return {"test_iou_per_class": {name: _percent(iou) for name, iou in
                                   zip(names, per_class.tolist(), strict=True)},
            "baseline_test_miou": 100.0 * float(trivial.compute()["miou"])}


def _percent(value: float | torch.Tensor) -> float | None:
    """A score in [0, 1] as percent; NaN and torchmetrics' -1 (undefined) become ``None``."""
    value = float(value)
    return None if math.isnan(value) or value < 0 else 100.0 * value


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
