"""``python -m dsm_ref export RUN_DIR``: a finished classification run's final weights as a
float16 weights file and its training record (:func:`dsm_ref.train.export.export_run`)."""

from __future__ import annotations

import argparse

from ..pretrained import WEIGHTS_DIR
from ..train.export import export_run

__all__ = ["add_cli_arguments", "cli_main"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="the --out folder of a finished training run")
    parser.add_argument("--out", default=str(WEIGHTS_DIR),
                        help="folder for <name>.pt and <name>.json (default: the package's "
                             "weights folder, where create_model(..., pretrained=True) looks)")
    parser.add_argument("--name", default=None,
                        help="file stem (default <model>-<data>, e.g. dsm_micro-cifar10)")


def cli_main(args: argparse.Namespace) -> int:
    record = export_run(args.run, args.out, stem=args.name)
    test = record["shipped_test"]
    print(f"wrote {args.out}/{record['weights']} ({record['size_bytes'] / 1e6:.2f} MB, float16) "
          f"and its record: top-1 {test['top1']:.2f} % on {test['count']} test images as stored "
          f"(the run logged {record['final']['test_top1']:.2f} % in float32)")
    return 0
