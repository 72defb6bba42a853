"""Benchmarks: FLOPs, time and memory of the DCT, the token mixers and the models.

Defined in notebook 07 (complexity and speed). Command line (:mod:`dsm_ref.commands.bench`)::

    python -m dsm_ref bench dct    --device cpu --json data/bench/cpu_dct.json
    python -m dsm_ref bench mixers --device cpu --json data/bench/cpu_mixers.json
    python -m dsm_ref bench models --device cpu --json data/bench/cpu_models.json
    python -m dsm_ref bench report --inputs data/bench/*.json --out BENCHMARKS.md

Every run writes one JSON record with its provenance, the load average before and after, the
exact command, the conventions and every point; ``report`` turns such records into
``BENCHMARKS.md`` (no hand-typed numbers). ``--quick`` runs a toy size in seconds (the tests and
notebook 07's live cells use it).

Modules, one job each:

- :mod:`.arms`: what is compared, by label: the mixer arms (a :data:`dsm_ref.models.TOKEN_MIXERS`
  name plus options) and the model arms, and their FLOPs (counted by :mod:`dsm_ref.flops`).
- :mod:`.timing`: timers (``torch.utils.benchmark.Timer``), peak memory, the machine's measured
  peaks and the floors.
- :mod:`.suites`: the DCT, mixers and models suites.
- :mod:`.records`: the record: conventions, precision names, provenance, writing, reading.
- :mod:`.resume`: whether a stored run that stopped early may be continued (``--resume``): same
  settings, same timed code (a fingerprint of its syntax trees).
- :mod:`.ratios`: ratios between arms timed in the same rounds, paired round by round, with
  their intervals and tests.
- :mod:`.targets`: the speed targets, checked on the records.
- :mod:`.report`: ``BENCHMARKS.md`` from records.
"""

from ..flops import FlopCount, count_flops, fft_flops
from .arms import (
    MIXER_ARMS,
    MIXERS,
    TORCHVISION_MODELS,
    GFNetUpstreamFilter,
    MixerArm,
    build_model,
    mixer_arms,
    mixer_flops,
    model_flops,
)
from .ratios import RatioEstimate, judge, paired_ratio
from .records import (
    CONVENTIONS,
    PRECISIONS,
    SCHEMA_VERSION,
    load_records,
    machine_info,
    precision_name,
    upgrade_record,
)
from .report import render_report
from .resume import check_resumable, code_fingerprint
from .suites import (
    DCT_ARMS,
    DCT_METHODS,
    DCT_REFERENCE,
    MEMORY_LAYOUTS,
    STAGE_ARMS,
    STAGE_MODELS,
    Settings,
    bench_dct,
    bench_mixers,
    bench_models,
    bench_stages,
    fit_exponent,
    graph_breaks,
    scaling_series,
)
from .timing import (
    Timing,
    cpu_peak_bytes,
    measure_peaks,
    peak_memory_bytes,
    quiet_stderr,
    time_callable,
)

__all__ = [
    "CONVENTIONS",
    "DCT_ARMS",
    "DCT_METHODS",
    "DCT_REFERENCE",
    "MEMORY_LAYOUTS",
    "MIXERS",
    "MIXER_ARMS",
    "GFNetUpstreamFilter",
    "PRECISIONS",
    "SCHEMA_VERSION",
    "TORCHVISION_MODELS",
    "FlopCount",
    "MixerArm",
    "Settings",
    "Timing",
    "fft_flops",
    "count_flops",
    "mixer_arms",
    "mixer_flops",
    "model_flops",
    "time_callable",
    "peak_memory_bytes",
    "cpu_peak_bytes",
    "quiet_stderr",
    "measure_peaks",
    "machine_info",
    "precision_name",
    "fit_exponent",
    "graph_breaks",
    "build_model",
    "bench_dct",
    "bench_mixers",
    "bench_models",
    "bench_stages",
    "STAGE_ARMS",
    "STAGE_MODELS",
    "scaling_series",
    "render_report",
    "RatioEstimate",
    "paired_ratio",
    "judge",
    "load_records",
    "upgrade_record",
    "check_resumable",
    "code_fingerprint",
]
