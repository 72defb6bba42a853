"""``python -m dsm_ref ablate``: run the ablation studies or the budget curve, print their
tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..ablation import (
    DENSE_DATA,
    DENSE_STUDIES,
    STUDIES,
    STUDY_DATA,
    Budget,
    Pretraining,
    curve_table,
    data_key,
    data_task,
    default_budget,
    find_study,
    run_budget_curve,
    run_study,
    study_table,
)
from ..checks import check_choice

__all__ = ["add_cli_arguments", "cli_main"]

# Budget options: None keeps the data's default budget (dsm_ref.ablation.DEFAULT_BUDGETS).
_BUDGET_OPTIONS = ("epochs", "n_train", "n_test", "batch_size", "lr", "model", "img_size")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Budget()
    parser.add_argument("--study", default="all",
                        help=f"one of {', '.join([*STUDIES, *DENSE_STUDIES])}, or all (default: "
                             "every study for the data's task)")
    parser.add_argument("--data", default=None,
                        help=f"one of {', '.join(STUDY_DATA)}, or both (cifar10 and spectral: "
                             "the default for classification studies); dense: "
                             f"{', '.join(DENSE_DATA)} (or the dataset's name, e.g. "
                             "mosaic-segment/cifar10; mosaic-segment is the dense studies' "
                             "default)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"default: the data's budget ({defaults.epochs} for "
                             "classification)")
    parser.add_argument("--n-train", dest="n_train", type=int, default=None,
                        help="train images (canvases for dense data); default: the data's budget")
    parser.add_argument("--n-test", dest="n_test", type=int, default=None)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None,
                        help="default: the data's budget (2e-3; 2e-4 for detection)")
    parser.add_argument("--model", default=None, help=f"default {defaults.model}")
    parser.add_argument("--img-size", dest="img_size", type=int, default=None,
                        help="dense data's canvas size in px (default: the data's budget)")
    parser.add_argument("--model-options", dest="model_options", default=None, metavar="JSON",
                        help='options every arm\'s model gets, replacing the budget\'s, e.g. '
                             '\'{"dims": [16, 32, 48, 64], "neck_channels": 32}\'')
    parser.add_argument("--pretrain-epochs", dest="pretrain_epochs", type=int, default=None,
                        help="epochs of a pretrained arm's classification run (default "
                             f"{Pretraining().epochs})")
    parser.add_argument("--pretrain-n-train", dest="pretrain_n_train", type=int, default=None,
                        help="its train images (default "
                             f"{Pretraining().n_train})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/ablation",
                        help="folder for <study>-<data>.json (and .md) and the per-run cache")
    parser.add_argument("--curve", default=None, metavar="NxE,...",
                        help="instead of studies: the budget curve of the dynamic, static and "
                             "no-mixing arms at these train-set sizes x epochs, e.g. "
                             "2000x6,10000x15 (n_test etc. from the other options)")
    parser.add_argument("--save-weights", dest="save_weights", default="", metavar="SEEDS",
                        help="comma-separated seeds whose runs also store their trained "
                             "weights under <out>/weights (e.g. 0)")
    parser.add_argument("--json", action="store_true",
                        help="print the study records as JSON instead of tables")


def _parse_curve(text: str) -> list[tuple[int, int]]:
    budgets = []
    for item in text.split(","):
        n_train, sep, epochs = item.strip().partition("x")
        if not (sep and n_train.isdigit() and epochs.isdigit()) or int(n_train) < 1 \
                or int(epochs) < 1:
            raise ValueError(f"--curve takes N_TRAINxEPOCHS items like 2000x6,10000x15; "
                             f"got {item.strip()!r}")
        budgets.append((int(n_train), int(epochs)))
    return budgets


def _datasets(args: argparse.Namespace) -> list[str]:
    """The data keys ``--data`` names (default: classification's two, or the dense studies'
    segmentation mosaics when ``--study`` names a dense study)."""
    if args.data is None:
        return ["mosaic-segment"] if args.study in DENSE_STUDIES else ["cifar10", "spectral"]
    if args.data == "both":
        return ["cifar10", "spectral"]
    try:
        return [data_key(args.data)]
    except ValueError:  # name every choice, "both" included
        check_choice("data", args.data, [*STUDY_DATA, "both", *DENSE_DATA])
        raise


def _studies(args: argparse.Namespace, dataset: str) -> list[str]:
    """``--study``, checked against the data's task; ``all``: every study for that task."""
    task = data_task(dataset)
    every = {**STUDIES, **DENSE_STUDIES}
    if args.study == "all":
        return [name for name, study in every.items() if task in study.tasks]
    study = find_study(args.study)
    if task not in study.tasks:
        fitting = [k for k in (*STUDY_DATA, *DENSE_DATA) if data_task(k) in study.tasks]
        raise ValueError(f"study {study.name!r} is for {'/'.join(study.tasks)} data, not "
                         f"{dataset!r} ({task}); pass --data one of: {', '.join(fitting)}")
    return [study.name]


def _budget(args: argparse.Namespace, dataset: str) -> Budget:
    """The data's default budget with the options given on the command line."""
    given = {name: getattr(args, name) for name in _BUDGET_OPTIONS
             if getattr(args, name) is not None}
    if args.model_options is not None:
        options = json.loads(args.model_options)
        if not isinstance(options, dict):
            raise ValueError(f"--model-options takes a JSON object; got {args.model_options!r}")
        given["model_options"] = options or None
    return dataclasses.replace(default_budget(dataset), **given)


def cli_main(args: argparse.Namespace) -> int:
    try:
        if args.study not in ("all", *STUDIES, *DENSE_STUDIES):
            check_choice("study", args.study, [*STUDIES, *DENSE_STUDIES, "all"])
        datasets = _datasets(args)
        plan = [(dataset, _studies(args, dataset), _budget(args, dataset))
                for dataset in datasets]
        for name in ("seeds", "epochs", "n_train", "n_test", "batch_size", "img_size",
                     "pretrain_epochs", "pretrain_n_train"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        pretraining = None
        if args.pretrain_epochs is not None or args.pretrain_n_train is not None:
            pretraining = dataclasses.replace(
                Pretraining(), **{k: v for k, v in (("epochs", args.pretrain_epochs),
                                                    ("n_train", args.pretrain_n_train))
                                  if v is not None})
        curve = _parse_curve(args.curve) if args.curve else None
        if curve is not None and any(data_task(dataset) != "classify" for dataset in datasets):
            raise ValueError(f"--curve runs classification arms; pass --data one of: "
                             f"{', '.join(STUDY_DATA)}, both")
        try:
            weight_seeds = tuple(int(x) for x in args.save_weights.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--save-weights takes seeds like 0 or 0,1; got "
                             f"{args.save_weights!r}") from None
    except ValueError as err:
        print(f"dsm_ref ablate: error: {err}", file=sys.stderr)
        return 2
    if curve is not None:
        for dataset, _, budget in plan:
            record = run_budget_curve(dataset, curve, seeds=args.seeds, base=budget,
                                      out=args.out, device=args.device)
            print(json.dumps(record, indent=1) if args.json else curve_table(record),
                  flush=True)
        return 0
    records = []
    for dataset, studies, budget in plan:
        for study in studies:
            record = run_study(study, dataset, seeds=args.seeds, budget=budget, out=args.out,
                               device=args.device, save_weights_for_seeds=weight_seeds,
                               pretraining=pretraining)
            records.append(record)
            if not args.json:
                print(study_table(record), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0
