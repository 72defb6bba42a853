"""``python -m dsm_ref info``: versions, the device training would use, and where data is looked
for."""

from __future__ import annotations

import argparse
import json

from ..info import collect_info

__all__ = ["add_cli_arguments", "cli_main"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cli_main(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for section, values in info.items():
        print(f"[{section}]")
        width = max(map(len, values))
        for key, value in values.items():
            print(f"  {key:<{width}}  {value}")
    return 0
