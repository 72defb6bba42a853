"""Continuing a benchmark run that stopped early (killed, out of time) instead of starting over.

The DCT and mixers suites time their arms group by group (one ``(N, layout)`` or ``(N, C)`` at a
time, every arm of the group in the same rounds) and write the record after each group. A run
started with ``--resume`` on such a file keeps every group the file already holds in full and
measures only the rest, so the ratios inside a group always come from one run.

A stored record may only be continued by the same measurement: the same suite and settings (the
time budget aside, which only says when to stop) and the same timed code. "Timed code" is
:func:`code_fingerprint`: a hash of the syntax trees (not the text: comments and formatting do
not count) of the modules the arms run and of the suites' timing functions. A record written
before fingerprints were stored is checked against the fingerprint of the commit it names, read
from git.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

__all__ = ["TIMED_MODULES", "TIMED_FUNCTIONS", "code_fingerprint", "check_resumable",
           "stored_groups"]

_ROOT = Path(__file__).resolve().parents[2]

# The code whose change changes a timing: what the arms execute, how they are built and timed,
# and how FLOPs are counted (stored beside the times).
TIMED_MODULES = (
    "dsm_ref/cache.py", "dsm_ref/checks.py", "dsm_ref/dct.py", "dsm_ref/dswg.py",
    "dsm_ref/flops.py", "dsm_ref/layers.py", "dsm_ref/mixers.py", "dsm_ref/models.py",
    "dsm_ref/spectrum.py", "dsm_ref/bench/arms.py", "dsm_ref/bench/timing.py",
)
# Functions of the suites module that decide what a timing is (the rest of it is bookkeeping).
TIMED_FUNCTIONS = {
    "dsm_ref/bench/suites.py": ("round_order", "_time_in_rounds", "_summarize_rounds"),
}

# Settings that may differ between the run that stopped and the one that continues it.
_FREE_SETTINGS = ("time_budget",)


def _tree_text(source: str, functions: tuple[str, ...] | None) -> str:
    """The syntax tree of ``source`` (or of its top-level ``functions``) as text."""
    tree = ast.parse(source)
    if functions is None:
        return ast.dump(tree)
    nodes = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    missing = sorted(set(functions) - set(nodes))
    if missing:
        raise ValueError(f"timed functions {missing} not found; update TIMED_FUNCTIONS")
    return "\n".join(ast.dump(nodes[name]) for name in functions)


def _git_show(commit: str, path: str) -> str:
    try:
        out = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=_ROOT, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise ValueError(f"cannot read {path} at commit {commit} from git: {err}") from None
    if out.returncode != 0:
        raise ValueError(f"cannot read {path} at commit {commit} from git: "
                         f"{out.stderr.strip()}")
    return out.stdout


def code_fingerprint(commit: str | None = None) -> str:
    """sha256 (16 hex digits) of the timed code's syntax trees: this checkout's files, or, with
    ``commit``, those of that commit read from git (``ValueError`` when git cannot)."""
    digest = hashlib.sha256()
    sources: list[tuple[str, tuple[str, ...] | None]] = [(p, None) for p in TIMED_MODULES]
    sources += list(TIMED_FUNCTIONS.items())
    for path, functions in sources:
        source = _git_show(commit, path) if commit else (_ROOT / path).read_text("utf-8")
        digest.update(path.encode() + b"\0" + _tree_text(source, functions).encode() + b"\0")
    return digest.hexdigest()[:16]


def _stored_fingerprint(stored: dict[str, Any]) -> str:
    if stored.get("code_fingerprint"):
        return stored["code_fingerprint"]
    git = stored.get("machine", {}).get("git") or {}
    if not git.get("commit") or git.get("dirty") is not False:
        raise ValueError(
            "the stored record has no code fingerprint and does not name a clean commit "
            f"(git: {git}), so its timed code is unknown; run without --resume to start over")
    return code_fingerprint(git["commit"])


def check_resumable(stored: dict[str, Any], record: dict[str, Any]) -> None:
    """Raises ``ValueError`` saying why ``record`` (a new run, with its ``code_fingerprint``)
    cannot continue ``stored`` (a record read from disk): another suite, device or setting, or
    other timed code."""
    if stored.get("suite") != record["suite"]:
        raise ValueError(f"the stored record is a {stored.get('suite')!r} run, this is a "
                         f"{record['suite']!r} run; run without --resume to start over")
    old = {k: v for k, v in stored.get("settings", {}).items() if k not in _FREE_SETTINGS}
    new = {k: v for k, v in record["settings"].items() if k not in _FREE_SETTINGS}
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differ:
        details = "; ".join(f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}" for k in differ)
        raise ValueError(f"the stored record was made with other settings ({details}); rerun "
                         "with its settings (its 'command') or without --resume to start over")
    if _stored_fingerprint(stored) != record["code_fingerprint"]:
        raise ValueError("the timed code changed since the stored record was made (its "
                         "fingerprint differs), so its times and new ones would not compare; "
                         "run without --resume to start over")


def stored_groups(stored: dict[str, Any], key: Callable[[dict[str, Any]], Hashable]
                  ) -> dict[Hashable, list[dict[str, Any]]]:
    """The stored rows by group (``key(row)``), leaving out every group with a row the time
    budget skipped (it was not measured in full)."""
    groups: dict[Hashable, list[dict[str, Any]]] = {}
    for row in stored.get("results", []):
        groups.setdefault(key(row), []).append(row)

    def budget_skipped(row: dict[str, Any]) -> bool:
        entries = [row, *(v for v in row.values() if isinstance(v, dict))]
        return any(e.get("skipped") == "time budget" for e in entries)

    return {k: rows for k, rows in groups.items() if not any(map(budget_skipped, rows))}
