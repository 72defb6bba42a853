"""``python -m dsm_ref {info,train,export,ablate,bench}``.

Each sub-command lives in its own module under :mod:`dsm_ref.commands`, which provides
``add_cli_arguments(parser)`` and ``cli_main(args) -> int``; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "info": ("dsm_ref.commands.info", "versions, device, and where data is looked for"),
    "train": ("dsm_ref.commands.train",
              "train a model (CIFAR-10, ImageNet folders, spectral tasks)"),
    "export": ("dsm_ref.commands.export",
               "a finished training run's weights as a small float16 file with its record"),
    "ablate": ("dsm_ref.commands.ablate", "run the paper's ablation studies"),
    "bench": ("dsm_ref.commands.bench", "time and count the DCT, the mixers and the models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dsm_ref", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    commands.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            sub.set_defaults(_missing=True)
            continue
        module.add_cli_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"'{args.command}' is not available in this version of dsm_ref", file=sys.stderr)
        return 2
    return importlib.import_module(args._module).cli_main(args)
