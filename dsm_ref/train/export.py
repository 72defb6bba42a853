"""From a finished classification run to shipped weights: the model's state in float16
(:func:`dsm_ref.pretrained.save_weights`), scored again on the test set *as stored* (float16
rounded, loaded back into float32), and a training record beside it.

``export_run(run_dir, out_dir)`` -> ``<out_dir>/<model>-<data>.pt`` and ``.json``;
``python -m dsm_ref export RUN_DIR`` runs it (:mod:`dsm_ref.commands.export`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..data import build_datasets
from ..files import atomic_write_json
from ..models import create_model, spelled_out_options
from ..pretrained import read_weights, save_weights
from ..provenance import provenance
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .evaluation import evaluate

__all__ = ["export_run"]


def _finished_record(run: Path) -> dict[str, Any]:
    """The run's ``metrics.json``, checked to be a finished classification run."""
    path = run / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} holds no metrics.json: expected the --out folder of a "
                                "training run that has finished")
    record = json.loads(path.read_text())
    config = record["config"]
    if config.get("task", "classify") != "classify":
        raise ValueError(f"{run} trained a {config['task']} model; only classification runs "
                         "are exported as weights")
    if record.get("interrupted") or record.get("epochs_completed") != config["epochs"]:
        raise ValueError(f"{run} stopped after {record.get('epochs_completed')} of "
                         f"{config['epochs']} epochs: resume it (python -m dsm_ref train --out "
                         f"{run} --resume) before exporting")
    return record


def _sessions(run: Path, record: dict[str, Any]) -> dict[str, Any]:
    """How the run was made, from its ``log.jsonl``: the command that started it, and one entry
    per session (start, then each resume): its command, the epochs it completed and its wall
    time; ``wall_time_s`` sums them (``metrics.json`` holds only the last session's). Without a
    log, or when a session never logged its end (killed outright), the last session alone."""
    path = run / "log.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.is_file() else []
    sessions: list[dict[str, Any]] = []
    for row in rows:
        event = row.get("event")
        if event in ("start", "resume"):
            sessions.append({"command": row["command"], "epochs": [], "wall_time_s": None})
        elif sessions and event == "epoch":
            sessions[-1]["epochs"].append(row["epoch"])
        elif sessions and event == "end":
            sessions[-1]["wall_time_s"] = round(row["wall_time_s"], 2)
    if not sessions or any(s["wall_time_s"] is None for s in sessions):
        sessions = [{"command": record["command"], "epochs": [],
                     "wall_time_s": record["wall_time_s"]}]
    return {"command": sessions[0]["command"], "sessions": sessions,
            "wall_time_s": round(sum(s["wall_time_s"] for s in sessions), 2)}


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               stem: str | None = None, batch_size: int = 500) -> dict[str, Any]:
    """Writes the final weights of the run in ``run_dir`` to ``<out_dir>/<stem>.pt`` (float16)
    and its record to ``<stem>.json``; returns the record.

    ``stem`` defaults to ``<model>-<data>`` (e.g. ``dsm_micro-cifar10``). The record holds the
    command that started the run, its sessions (a run stopped once and resumed has two: each
    with its command, epochs and wall time) and their wall time summed, the config, per-epoch
    history and final metrics, the file's size, the sha256 of its state
    (:func:`dsm_ref.pretrained.state_digest`, not of the file's bytes), and
    ``shipped_test``: loss and top-1/top-5 of the stored float16 weights on the run's test set
    (needs the dataset, e.g. ``DSM_DATA_DIR``).
    """
    run, out = Path(run_dir), Path(out_dir)
    record = _finished_record(run)
    config = record["config"]
    # Every mixer option spelled out: a later change of a default leaves these weights' model.
    options = spelled_out_options(config.get("model_options"))
    stem = stem or f"{config['model']}-{config['data'].replace('/', '_')}"
    checkpoint = load_checkpoint(run / CHECKPOINT_NAME)
    position, planned = checkpoint["position"], checkpoint["config"]["epochs"]
    if (position["epoch"], position["step_in_epoch"], config["epochs"]) != (planned, 0, planned):
        raise ValueError(f"{run}/{CHECKPOINT_NAME} is at epoch {position['epoch']} (step "
                         f"{position['step_in_epoch']}) of the {planned} its run planned: "
                         f"resume it (python -m dsm_ref train --out {run} --resume) before "
                         "exporting")
    state = checkpoint["model"]  # the trained weights, whose test_* metrics the run logged

    data = build_datasets(config["data"], root=config.get("data_dir"), n_train=config["n_train"],
                          n_test=config["n_test"], img_size=config["img_size"], seed=config["seed"],
                          progress=False)
    test = data.test
    weights_file = out / f"{stem}.pt"
    meta = save_weights(state, weights_file, model=config["model"], model_options=options,
                        preprocess={"img_size": data.img_size, "mean": list(test.mean),
                                    "std": list(test.std)},
                        classes=list(data.classes))

    model = create_model(config["model"], num_classes=data.num_classes, **options)
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in read_weights(weights_file)["state_dict"].items()})
    shipped = evaluate(model, test, batch_size=batch_size, device="cpu")

    exported = {
        "weights": weights_file.name,
        "size_bytes": weights_file.stat().st_size,
        "sha256": meta["sha256"],
        "dtype": "float16",
        "model": config["model"],
        "model_options": options,
        "preprocess": meta["preprocess"],
        "classes": meta["classes"],
        "shipped_test": shipped,
        **_sessions(run, record),
        "config": config,
        "final": record["final"],
        "history": record["history"],
        "num_params": record["num_params"],
        "training_environment": record["environment"],
        "export_provenance": provenance("cpu"),
    }
    atomic_write_json(out / f"{stem}.json", exported)
    return exported
