"""One-off: rewrite stored benchmark records (schema 1) in the current schema, values unchanged.

    .venv/bin/python scripts/migrate_bench_records.py            # data/bench/*.json
    .venv/bin/python scripts/migrate_bench_records.py --dry-run  # check only, write nothing

The upgrade is :func:`dsm_ref.bench.upgrade_record` (also applied whenever records are read):
``machine.logical_cpus`` -> ``machine.cpu_count``, ``machine.git_revision`` -> ``machine.git``,
``settings.precision`` in the training spelling, ``settings.mixer_arms`` added to mixers records.
Before writing, every value of the old file is checked to be in the new one, unchanged, at its
old or renamed key, and nothing else is added; after writing, the file is read back and compared.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import Any

from dsm_ref.bench import precision_name, upgrade_record
from dsm_ref.bench.records import save_record

RENAMED = {("machine", "logical_cpus"): ("machine", "cpu_count")}
ADDED = (("machine", "git"), ("settings", "mixer_arms"))  # new keys (and everything under them)


def _leaves(value: Any, path: tuple = ()) -> dict[tuple, Any]:
    """``{path: value}`` of every scalar and empty container in ``value``."""
    if isinstance(value, (dict, list)) and not value:
        return {path: value}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, (*path, i)).items()}
    return {path: value}


def check_unchanged(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every difference between ``old`` and ``new`` that the upgrade does not account for."""
    before, after = _leaves(old), _leaves(new)
    problems = []
    for path, value in before.items():
        if path == ("schema_version",):
            continue
        if path == ("machine", "git_revision"):
            git = new["machine"]["git"]
            rebuilt = (git["commit"] or "unknown") + (" (dsm_ref modified)" if git["dirty"] else "")
            if rebuilt != value:
                problems.append(f"git_revision {value!r} -> {git}")
            continue
        target = RENAMED.get(path, path)
        if target not in after:
            problems.append(f"{'.'.join(map(str, path))} lost")
        elif path == ("settings", "precision"):
            if after[target] != precision_name(value):
                problems.append(f"precision {value!r} -> {after[target]!r}")
        elif after[target] != value:
            problems.append(f"{'.'.join(map(str, path))}: {value!r} -> {after[target]!r}")
    kept = {RENAMED.get(path, path) for path in before}
    for path in after:
        if path not in kept and path != ("schema_version",) and path[:2] not in ADDED:
            problems.append(f"{'.'.join(map(str, path))} added")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=["data/bench/*.json"])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    files = sorted({Path(p) for pattern in args.paths for p in glob.glob(pattern)})
    status = 0
    for path in files:
        old = json.loads(path.read_text())
        new = upgrade_record(old)
        if new == old:
            print(f"{path}: already schema {new['schema_version']}")
            continue
        problems = check_unchanged(old, new)
        if problems:
            print(f"{path}: NOT written, the upgrade would change values:", *problems, sep="\n  ")
            status = 1
            continue
        if not args.dry_run:
            save_record(new, path)
            if json.loads(path.read_text()) != new:
                print(f"{path}: read back differs from the upgrade")
                status = 1
                continue
        print(f"{path}: schema {old.get('schema_version', 1)} -> {new['schema_version']}, "
              f"{len(_leaves(old))} values unchanged{' (dry run)' if args.dry_run else ''}")
    return status


if __name__ == "__main__":
    sys.exit(main())
