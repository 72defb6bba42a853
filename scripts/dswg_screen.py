"""Screens DSWG variants on a spectral task: one training run per call, one JSON line out.

A screen is a single seed: it says which variants deserve a multi-seed study, nothing more.
Each line holds the variant's model options, the test top-1 per epoch and, for models with a
DSWG, what each DSWG selects on 1,000 test images (``dsm_ref.probe``: spread of the band weights
over images, gate entropy, gradient at the last layer, share of the variance explained by the
image's informative band). The stored screen ``data/results/cpu-distractors/screen.jsonl`` was
made with, for example::

    OMP_NUM_THREADS=1 python scripts/dswg_screen.py ln_lecun distractors 0 12 8000 \
        '{"token_mixer": "dsm",
          "mixer_options": {"hidden_init": "lecun", "descriptor_norm": true}}' \
        --out data/results/cpu-distractors/screen.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dsm_ref.data import build_datasets
from dsm_ref.probe import probe_model
from dsm_ref.provenance import provenance
from dsm_ref.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument("task", help="a spectral task, e.g. distractors")
    parser.add_argument("seed", type=int)
    parser.add_argument("epochs", type=int)
    parser.add_argument("n_train", type=int)
    parser.add_argument("model_options", help="JSON, e.g. '{\"token_mixer\": \"static\"}'")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file to append to")
    args = parser.parse_args()
    config = TrainConfig(model="dsm_micro", model_options=json.loads(args.model_options),
                         data=f"spectral/{args.task}", n_train=args.n_train, n_test=2000,
                         epochs=args.epochs, batch_size=128, lr=2e-3, weight_decay=0.05,
                         seed=args.seed, out=None, progress=False, handle_signals=False,
                         num_threads=1)
    started = time.time()
    data = build_datasets(config.data, n_train=config.n_train, n_test=config.n_test,
                          seed=config.seed, progress=False)
    result = train(config, datasets=data)
    row = {"name": args.name, "task": args.task, "seed": args.seed, "epochs": args.epochs,
           "n_train": args.n_train, "model_options": json.loads(args.model_options),
           "test_top1": result.final["test_top1"],
           "test_top1_per_epoch": [h.get("test_top1") for h in result.history],
           "train_loss": result.final.get("train_loss"),
           "wall_time_s": round(time.time() - started, 1), "provenance": provenance()}
    images, labels = data.test.get_batch(list(range(1000)))
    if any(name.endswith(".dswg") for name, _ in result.model.named_modules()):
        row["probe"] = probe_model(result.model, images, labels,
                                   factor=data.test.metadata["band"][:1000])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("name", "seed", "test_top1")}))


if __name__ == "__main__":
    main()
