"""The benchmark record: one JSON file per run of a suite, its conventions and precision names,
its provenance, writing it, and reading stored ones (older schemas upgraded on the way in).

A record holds ``schema_version``, ``suite``, ``created``, ``command`` (the canonical
``python -m dsm_ref bench ...`` line), ``machine`` (:func:`machine_info`), ``settings``,
``conventions`` (:data:`CONVENTIONS`), ``complete``, ``results``, ``peaks`` and, for mixers,
``fits`` and ``graph_breaks``. Floats are stored to 5 significant digits.
"""

from __future__ import annotations

import copy
import datetime as _dt
import glob
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_json
from ..provenance import provenance
from .arms import mixer_arms

__all__ = [
    "COMPILED_SUFFIX",
    "SCHEMA_VERSION",
    "CONVENTIONS",
    "PRECISIONS",
    "precision_name",
    "machine_info",
    "upgrade_record",
    "load_records",
]

COMPILED_SUFFIX = "+compile"  # the label of a mixer timed under torch.compile: "gfnet+compile"

SCHEMA_VERSION = 2
"""2: ``machine`` from :func:`dsm_ref.provenance.provenance` (``cpu_count``, ``git``), precision
in the training spelling, ``settings["mixer_arms"]``. 1: the first stored records."""

CONVENTIONS = {
    "flops": (
        "torch.utils.flop_counter: 2 FLOPs per multiply-add (matmul, conv, attention); "
        "elementwise ops, norms and reductions count 0. MACs = FLOPs / 2."
    ),
    "fft_flops": (
        "added explicitly: 5 N log2 N per complex N-point FFT, 2.5 N log2 N per real one "
        "(rfft/irfft and Makhoul's real-input fft); multi-axis FFTs as row-column 1D transforms."
    ),
    "flop_fixes": (
        "registered: the CPU flash-attention kernel (forward 2 matmuls, backward 5, as "
        "flop_counter counts the CUDA kernels); grouped conv backward counted with its groups."
    ),
    "time": (
        "median and quartiles of per-call wall time over repetitions after warm-up (CUDA "
        "synchronised): blocks of calls from torch.utils.benchmark.Timer.blocked_autorange, "
        "single calls in the later rounds of interleaved timings; settings.counted_rounds says "
        "which round an entry reports, settings.round_order how the arms were ordered in a "
        "round; every round's time is kept in `rounds`, and ratios between arms pair them."
    ),
    "memory": (
        "cuda: max_memory_allocated during one call above the level at entry; cpu: peak of "
        "bytes held by PyTorch's CPU allocator during one call above the level at entry "
        "(profiler allocation events). Weights and inputs made before the call are excluded."
    ),
    "floor": (
        "max(FLOPs / P, bytes / BW): P = measured large-matmul throughput, BW = measured "
        "large-copy bandwidth (read + write), each the best of the measurements made at the "
        "start and end of the run (and per round for models); bytes = inputs, outputs, weights "
        "(and gradients) once each."
    ),
    "precision": (
        "fp32, or bf16 / fp16 (the spelling of train's --amp): the DCT's and the mixers' inputs "
        "are made in that dtype and mixers and models run under torch.autocast to it; "
        "settings.dtype holds torch's name of the dtype."
    ),
}

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names, spelled as train's ``--amp``."""

_TORCH_SPELLING = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def precision_name(value: str | torch.dtype) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for a precision in any spelling the benchmarks used:
    the training one, torch's dtype name (``"bfloat16"``), a ``torch.dtype``, or schema 1's
    ``"autocast(bfloat16), inputs in bfloat16"``."""
    text = str(value).replace("torch.", "")
    if text in PRECISIONS:
        return text
    legacy = re.fullmatch(r"autocast\((\w+)\), inputs in \1", text)
    name = _TORCH_SPELLING.get(legacy.group(1) if legacy else text)
    if name is None:
        raise ValueError(f"unknown precision {value!r}; expected one of: "
                         f"{', '.join(PRECISIONS)} (or {', '.join(_TORCH_SPELLING)})")
    return name


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where a benchmark ran: :func:`dsm_ref.provenance.provenance` (command, git commit and diff
    hash, device, CPU, threads, date) with its ``environment`` (versions) flattened in, plus
    what moves timings and provenance does not hold: the load average (``load_average_after``
    is added when the run ends), oneDNN, and on CUDA the GPU's memory, capability, CUDA and
    cuDNN versions and the TF32 matmul setting."""
    device = torch.device(device)
    record = provenance(device)
    info: dict[str, Any] = {**record.pop("environment"), **record}
    info.update(load_average=_load_average(), mkldnn=bool(torch.backends.mkldnn.is_available()))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        )
    return info


def new_record(suite: str, device: torch.device, settings: dict[str, Any],
               command: str | None) -> dict[str, Any]:
    """An empty record of ``suite`` (``complete`` False, no results yet)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(device),
        "settings": settings,
        "conventions": CONVENTIONS,
        "complete": False,
        "results": [],
    }


def _rounded(value: Any, digits: int = 5) -> Any:
    """Floats to ``digits`` significant digits, recursively (keeps the JSON files small)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return round(value, digits - 1 - math.floor(math.log10(abs(value))))
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def save_record(record: dict[str, Any], path: str | Path | None) -> None:
    """Writes ``record`` as JSON, floats rounded, atomically (a partial run never leaves a broken
    file); nothing when ``path`` is ``None``."""
    if path is None:
        return
    atomic_write_json(path, _rounded(record), indent=1, default=str)


def _renamed(mapping: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    """``mapping`` with key ``old`` replaced by ``new: value``, in the same place."""
    return {(new if key == old else key): (value if key == old else item)
            for key, item in mapping.items()}


def _git_from_revision(revision: str | None) -> dict[str, Any]:
    """Schema 1's ``"<short commit>[ (dsm_ref modified)]"`` as provenance's ``git`` record; the
    diff was not hashed then, and a clean ``dsm_ref`` said nothing about the other files."""
    if not revision or revision == "unknown":
        return {"commit": None, "dirty": None, "diff_sha256": None}
    commit, _, rest = revision.partition(" ")
    return {"commit": commit, "dirty": True if rest else None, "diff_sha256": None}


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored ``record`` in the current schema (:data:`SCHEMA_VERSION`). Only keys
    and spellings change, never a measured value. From schema 1: ``machine.logical_cpus`` ->
    ``machine.cpu_count``; ``machine.git_revision`` -> ``machine.git`` (``commit``, ``dirty``,
    ``diff_sha256``); ``settings.precision`` in the training spelling; mixers records gain
    ``settings.mixer_arms``."""
    version = record.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise ValueError(f"record schema {version} is newer than this code's {SCHEMA_VERSION}")
    record = copy.deepcopy(record)
    if version < 2:
        machine = record.get("machine", {})
        if "logical_cpus" in machine:
            machine = _renamed(machine, "logical_cpus", "cpu_count", machine["logical_cpus"])
        if "git_revision" in machine:
            machine = _renamed(machine, "git_revision", "git",
                               _git_from_revision(machine["git_revision"]))
        settings = record.get("settings", {})
        if "precision" in settings:
            settings["precision"] = precision_name(settings["precision"])
        if record.get("suite") == "mixers" and "mixer_arms" not in settings:
            items = list(settings.items())  # the arms go right after the labels they describe
            at = list(settings).index("mixers") + 1 if "mixers" in settings else len(items)
            items.insert(at, ("mixer_arms", mixer_arms(settings.get("mixers", []))))
            settings = dict(items)
        record = {**record, "machine": machine, "settings": settings, "schema_version": 2}
    return record


def load_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Reads ``bench`` JSON files (globs allowed), upgraded to the current schema, in the order
    dct, mixers, stages, models."""
    files = sorted({Path(p) for pattern in paths for p in (glob.glob(str(pattern)) or [pattern])})
    records = [upgrade_record(json.loads(Path(f).read_text())) for f in files]
    order = {"dct": 0, "mixers": 1, "stages": 2, "models": 3}
    return sorted(records, key=lambda r: (r["settings"]["device"], order.get(r["suite"], 9)))
