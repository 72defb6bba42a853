"""Where data lives: the data and cache dirs, the variables that set them, and ``DataError``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DSM_DATA_DIR"
CACHE_DIR_ENV = "DSM_CACHE_DIR"


class DataError(RuntimeError):
    """Data that is missing, corrupt or laid out differently from what is expected."""


# --- where data lives ----------------------------------------------------------------------------

def _repo_root() -> Path | None:
    """The checkout this package runs from (editable install), or ``None`` when installed."""
    root = Path(__file__).resolve().parents[2]  # dsm_ref/data/paths.py
    return root if (root / "pyproject.toml").is_file() and (root / "dsm_ref").is_dir() else None


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder searched for datasets: ``root``, else ``$DSM_DATA_DIR``, else the default.

    Default: ``<repo>/data`` in a checkout, else ``~/.cache/dsm_ref/data``.
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    repo = _repo_root()
    return repo / "data" if repo else Path.home() / ".cache" / "dsm_ref" / "data"


def cache_dir() -> Path:
    """Folder for decoded tensors: ``$DSM_CACHE_DIR``, else ``<repo>/data/cache`` in a checkout,
    else ``~/.cache/dsm_ref``. Created on first write, never inside the data dir."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    repo = _repo_root()
    return repo / "data" / "cache" if repo else Path.home() / ".cache" / "dsm_ref"


def dataset_folder(root: str | os.PathLike | None, folder: str, name: str, layout: str,
                   what_root: str) -> Path:
    """The folder of a dataset read in place: ``root``, else ``<data dir>/<folder>``; a missing
    one raises :class:`DataError` naming where it looked, the expected ``layout`` (a template
    with ``{root}``) and how to point at it (``what_root``: what ``--data-dir`` should name)."""
    base = data_dir() / folder if root is None else Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{name} not found: no folder {base}. Expected "
                        f"{layout.format(root=base)}; pass --data-dir "
                        f"({what_root}) or put it under {data_dir()}/{folder}")
    return base


def _source(name: str) -> str:
    return f"${name}" if os.environ.get(name) else "default"
