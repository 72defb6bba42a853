"""``python -m dsm_ref ablate``: run the ablation studies or the budget curve, print their
tables."""

from __future__ import annotations

import argparse
import json
import sys

from ..ablation import (
    STUDIES,
    STUDY_DATA,
    Budget,
    curve_table,
    run_budget_curve,
    run_study,
    study_table,
)
from ..checks import check_choice

__all__ = ["add_cli_arguments", "cli_main"]

def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Budget()
    parser.add_argument("--study", default="all",
                        help=f"one of {', '.join(STUDIES)}, or all (default)")
    parser.add_argument("--data", default="both",
                        help=f"one of {', '.join(STUDY_DATA)}, or both (default: cifar10 and "
                             "spectral)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--n-train", dest="n_train", type=int, default=defaults.n_train)
    parser.add_argument("--n-test", dest="n_test", type=int, default=defaults.n_test)
    parser.add_argument("--batch-size", dest="batch_size", type=int,
                        default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/ablation",
                        help="folder for <study>-<data>.json and the per-run cache")
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


def cli_main(args: argparse.Namespace) -> int:
    try:
        studies = list(STUDIES) if args.study == "all" else [
            check_choice("study", args.study, [*STUDIES, "all"])]
        datasets = ["cifar10", "spectral"] if args.data == "both" else [
            check_choice("data", args.data, [*STUDY_DATA, "both"])]
        for name in ("seeds", "epochs", "n_train", "n_test", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        budget = Budget(model=args.model, epochs=args.epochs, n_train=args.n_train,
                        n_test=args.n_test, batch_size=args.batch_size, lr=args.lr)
        curve = _parse_curve(args.curve) if args.curve else None
        try:
            weight_seeds = tuple(int(x) for x in args.save_weights.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--save-weights takes seeds like 0 or 0,1; got "
                             f"{args.save_weights!r}") from None
    except ValueError as err:
        print(f"dsm_ref ablate: error: {err}", file=sys.stderr)
        return 2
    if curve is not None:
        for dataset in datasets:
            record = run_budget_curve(dataset, curve, seeds=args.seeds, base=budget,
                                      out=args.out, device=args.device)
            print(json.dumps(record, indent=1) if args.json else curve_table(record),
                  flush=True)
        return 0
    records = []
    for dataset in datasets:
        for study in studies:
            record = run_study(study, dataset, seeds=args.seeds, budget=budget, out=args.out,
                               device=args.device, save_weights_for_seeds=weight_seeds)
            records.append(record)
            if not args.json:
                print(study_table(record), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(records, indent=1))
    return 0
