"""The speed targets the benchmarks check: each a measured time or throughput against a
reference (the DSWG's cost over the static mixer, the DSM mixer against GFNet's filter and
attention, its time exponent, ``dsm_s`` against Swin-T, the matmul DCT against
``scipy.fft.dctn``, the FFT DCT against GFNet's ``rfft2``), with what the stored records give
and whether the target is met. A target with no record says "not measured"."""

from __future__ import annotations

import statistics
from typing import Any

from ..stats import adjust_family
from .ratios import RatioEstimate, counted_rounds, judge, paired_ratio

__all__ = ["mixer_index", "speed_targets", "stages_text"]

Records = dict[tuple[str, str], dict[str, Any]]


def _status(won: int, total: int, lost: int = 0) -> str:
    """"met" when every point is shown to meet the target, "not met" when at least one is
    shown to miss it, "not shown" when neither (too few or too noisy rounds)."""
    if total == 0:
        return "not measured"
    if won == total:
        return "met"
    return "not met" if lost else "not shown"


def mixer_index(record: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """A mixers record's measured rows by ``(mixer, C, grid side)``."""
    return {(r["mixer"], r["dim"], r["grid"][0]): r for r in record["results"]
            if not r.get("skipped")}


def _mixer_ratios(record: dict[str, Any], mine: str, other: str, bound: float = 1.0, *,
                  modes: list[str] | None = None, min_grid: int = 0, only=None
                  ) -> list[tuple[RatioEstimate, str]]:
    """time(mine) / time(other) at every point (mode x C x grid; the record's modes or
    ``modes``, grids from ``min_grid`` on where ``only(n)`` holds) both were timed, judged
    against ``bound`` as one family."""
    index = mixer_index(record)
    estimates = []
    for (name, dim, n), r in sorted(index.items()):
        if name != mine or n < min_grid or (only and not only(n)):
            continue
        for mode in modes or record["settings"]["modes"]:
            e = paired_ratio(f"{mode} C={dim} {n}²", r.get(mode),
                             (index.get((other, dim, n)) or {}).get(mode), bound)
            if e is not None:
                estimates.append(e)
    return judge(estimates)


def _tally(judged: list[tuple[RatioEstimate, str]]) -> tuple[int, int, int]:
    """Points shown below the bound, shown above it, and all points."""
    return (sum(v == "below" for _, v in judged), sum(v == "above" for _, v in judged),
            len(judged))


def _rounds_text(judged: list[tuple[RatioEstimate, str]]) -> str:
    rounds = sorted({e.rounds for e, _ in judged})
    return (f"paired t-test on per-round log time ratios, {'/'.join(map(str, rounds))} "
            f"round(s) per point, Holm-adjusted over the {len(judged)} points, 5 %")


def _faster_text(judged: list[tuple[RatioEstimate, str]], other: str) -> str:
    """"faster at k/n points ..." with the worst point as time(other) / time(DSM)."""
    won, lost, total = _tally(judged)
    worst = max(judged, key=lambda j: j[0].ratio)[0].inverted()
    return (f"shown faster at {won}/{total} points (inference + train), shown slower at {lost}, "
            f"{total - won - lost} not resolved ({_rounds_text(judged)}); worst {other}/DSM "
            f"time ratio {worst.ratio:.2f} ({worst.interval_text}; {worst.label})")


def _mixer_rows(records: Records) -> list[list[str]]:
    rows = []
    pairs = (("CPU fp32", records.get(("mixers", "cpu"))),
             ("GPU bf16", records.get(("mixers", "cuda"))))
    for label, record in pairs:
        if record is None:
            rows.append([f"DSM mixer faster than GFNet filter at every size, {label}",
                         "not measured (no such result file)", "not measured"])
            continue
        for mine, name in (("dsm_auto", "DSM mixer (default `dct_method='auto'`)"),
                           ("dsm_matmul", "DSM mixer, matmul DCT"),
                           ("dsm_log", "DSM mixer, per-channel log descriptor")):
            if mine not in record["settings"]["mixers"]:
                continue
            judged = _mixer_ratios(record, mine, "gfnet")
            if judged:
                won, lost, total = _tally(judged)
                rows.append([f"{name} faster than GFNet filter at every size, {label}",
                             _faster_text(judged, "GFNet"), _status(won, total, lost)])
    for label, record in pairs:
        if record is None:
            rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                         "not measured", "not measured"])
            continue
        judged = _mixer_ratios(record, "dsm_matmul", "attention", min_grid=28)
        if judged:
            won, lost, total = _tally(judged)
            rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                         _faster_text(judged, "attention"), _status(won, total, lost)])
    return rows


def stages_text(record: dict[str, Any]) -> str:
    """A stages record's shapes in words: "dsm_s at 224 px, dsm_t's first stage at 448 px;
    batch 8"."""
    parts = []
    for name, size, count in record["settings"].get("stages", []):
        which = "" if count is None else (
            "'s first stage" if count == 1 else f"'s first {count} stages")
        parts.append(f"{name}{which} at {size} px")
    return f"{', '.join(parts)}; batch {record['settings'].get('batch')}"


def _dswg_rows(records: Records, slack: float = 1.2) -> list[list[str]]:
    """The DSWG's overhead: time(DSM mixer) / time(its static twin) at most ``slack`` at every
    point, per mode: over the mixers grid (C x grid) and at the models' stage shapes."""
    target = f"DSWG adds at most {slack - 1:.0%} to the static mixer's time"
    rows = []
    for suite, where in (("mixers", ""), ("stages", " at the models' stage shapes")):
        record = records.get((suite, "cpu"))
        if record is None or not {"dsm_matmul", "dsm_static"} <= set(
                record["settings"]["mixers"]):
            rows.append([f"{target}{where}, CPU fp32", "not measured", "not measured"])
            continue
        if suite == "stages":
            where += f" ({stages_text(record)})"
        for mode in record["settings"]["modes"]:
            judged = _mixer_ratios(record, "dsm_matmul", "dsm_static", slack, modes=[mode])
            within, above, total = _tally(judged)
            measured = (f"shown within at {within}/{total} points, shown above at {above}, "
                        f"{total - within - above} not resolved")
            if judged:
                worst = max(judged, key=lambda j: j[0].ratio)[0]
                median = statistics.median(e.ratio for e, _ in judged)
                measured += (f" ({_rounds_text(judged)}); median {median:.2f}x, worst "
                             f"{worst.ratio:.2f}x ({worst.interval_text}; "
                             f"{worst.label.removeprefix(mode + ' ')})")
            rows.append([f"{target}{where}, {mode}, CPU fp32", measured,
                         _status(within, total, above)])
    return rows


def _stage_gfnet_row(records: Records) -> list[list[str]]:
    """The default DSM mixer against GFNet's filter at the models' stage shapes."""
    record = records.get(("stages", "cpu"))
    if record is None or not {"dsm_auto", "gfnet"} <= set(record["settings"]["mixers"]):
        return []
    judged = _mixer_ratios(record, "dsm_auto", "gfnet")
    if not judged:
        return []
    won, lost, total = _tally(judged)
    return [[f"DSM mixer (default `dct_method='auto'`) faster than GFNet filter at the models' "
             f"stage shapes ({stages_text(record)}), CPU fp32", _faster_text(judged, "GFNet"),
             _status(won, total, lost)]]


def _same_code_row(records: Records) -> list[list[str]]:
    """The benchmark's own check: ``dsm_auto`` and ``dsm_matmul`` run the same code below the
    auto crossover, so a sound measurement tells them apart at (about) no point; one row per
    record that times both (the grid of sizes, the models' stage shapes)."""
    from ..dct import resolve_method

    rows = []
    for suite, where in (("mixers", ""), ("stages", " at the models' stage shapes")):
        record = records.get((suite, "cpu"))
        if record is None or not {"dsm_auto", "dsm_matmul"} <= set(
                record["settings"]["mixers"]):
            continue
        estimates = [e for e, _ in _mixer_ratios(
            record, "dsm_auto", "dsm_matmul",
            only=lambda n: resolve_method("auto", (n, n), "cpu") == "matmul")]
        if not estimates:
            continue
        # two-sided: a difference either way is a false alarm
        differ = sum(c.p_holm < 0.05 for c in adjust_family(
            [e.comparison for e in estimates if e.comparison is not None]))
        ratios = [e.ratio for e in estimates]
        rows.append([f"same code timed as two arms (`dsm_auto` and `dsm_matmul` below the auto "
                     f"crossover) told apart at no point{where}, CPU fp32",
                     f"told apart at {differ}/{len(estimates)} points (two-sided paired t-test, "
                     f"Holm, 5 %); time ratio {min(ratios):.2f}–{max(ratios):.2f}",
                     "met" if differ == 0 else "not met"])
    return rows


def _exponent_row(records: Records, fmt) -> list[list[str]]:
    cpu_mixers = records.get(("mixers", "cpu"))
    if not (cpu_mixers and cpu_mixers.get("fits")):
        return []

    def median_exponent(name: str) -> float | None:
        values = [f["time_exponent"] for f in cpu_mixers["fits"]
                  if f["mixer"] == name and f["mode"] == "inference"
                  and f["time_exponent"] is not None]
        return statistics.median(values) if values else None

    e_mm, e_fft, e_att = (median_exponent(n) for n in ("dsm_matmul", "dsm_fft", "attention"))
    measured = None not in (e_mm, e_fft, e_att)
    met = measured and e_mm <= e_att - 0.3 and e_fft <= e_att - 0.3
    return [["time exponent well below attention's ~2 (~1.5 matmul DCT, ~1 FFT DCT), CPU",
             f"median over C, inference: matmul {fmt(e_mm, 2)}, FFT {fmt(e_fft, 2)}, attention "
             f"{fmt(e_att, 2)} (criterion: both DSM at least 0.3 below attention)",
             ("met" if met else "not met") if measured else "not measured"]]


def _model_rows(records: Records, fmt) -> list[list[str]]:
    rows = []
    cpu_models = records.get(("models", "cpu"))
    if cpu_models:
        eager = {r["model"]: r for r in cpu_models["results"]
                 if not r.get("skipped") and not r["compiled"]}
        dsm, swin = eager.get("dsm_s"), eager.get("swin_t")
        if dsm and swin and "time" in dsm.get("inference", {}) and "time" in swin.get(
                "inference", {}):
            a, b = dsm["inference"]["images_per_s"], swin["inference"]["images_per_s"]
            # time per batch (the same batch for both), paired over the rounds: <= 1 is met
            judged = judge([paired_ratio("inference", dsm["inference"], swin["inference"])])
            (estimate, verdict), = judged
            inverse = estimate.inverted()
            rows.append(["`dsm_s` inference throughput >= Swin-T at 224, CPU",
                         f"{fmt(a)} vs {fmt(b)} img/s; paired over {estimate.rounds} round(s): "
                         f"{inverse.ratio:.2f}x ({inverse.interval_text})",
                         _status(verdict == "below", 1, verdict == "above")])
    if records.get(("models", "cuda")) is None:
        rows.append(["`dsm_s` inference throughput >= Swin-T at 224, GPU bf16", "not measured",
                     "not measured"])
    return rows


def _dct_ratios(index: dict, method: str, other: str, bound: float
                ) -> list[tuple[RatioEstimate, str]]:
    """``time(method) / time(other)`` at every size and layout (``"NxN layout"``) where the DCT
    record ``index`` (keyed by ``(n, layout, method)``) has both, judged against ``bound``."""
    return judge([paired_ratio(f"{n}x{n} {layout}", r, index[(n, layout, other)], bound)
                  for (n, layout, m), r in sorted(index.items())
                  if m == method and (n, layout, other) in index])


def _within_text(judged: list[tuple[RatioEstimate, str]], what: str) -> str:
    """"k/n points shown within ..." with the worst point's ratio and interval."""
    won, lost, total = _tally(judged)
    worst = max(judged, key=lambda j: j[0].ratio)[0]
    return (f"shown at {won}/{total} points, shown not at {lost}, {total - won - lost} not "
            f"resolved ({_rounds_text(judged)}); worst {what} {worst.ratio:.2f} "
            f"({worst.interval_text}; {worst.label})")


def _dct_rows(records: Records) -> list[list[str]]:
    cpu_dct = records.get(("dct", "cpu"))
    if not cpu_dct:
        return []
    index = {(r["n"], r["layout"], r["method"]): r for r in cpu_dct["results"]
             if not r.get("skipped")}
    rows = []
    for method, other, bound, target, what in (
            ("matmul", "scipy", 1.0,
             "matmul DCT at least as fast as `scipy.fft.dctn`, batched channels, CPU",
             "matmul/scipy time ratio"),
            ("fft", "rfft2", 1.2, "FFT DCT within 1.2x of GFNet's `rfft2` of the same tensor, CPU",
             "fft/rfft2 time ratio")):
        judged = _dct_ratios(index, method, other, bound)
        if not judged:
            rows.append([target, f"not measured (no {other} rows)", "not measured"])
            continue
        won, lost, total = _tally(judged)
        rows.append([target, _within_text(judged, what), _status(won, total, lost)])
    return rows + _auto_row(index)


def _auto_row(index: dict, slack: float = 1.1) -> list[list[str]]:
    """``method="auto"`` (the path :func:`dsm_ref.dct.resolve_method` picks on CPU) within
    ``slack`` of the fastest measured path (by reported time) at every size and layout."""
    from ..dct import resolve_method

    estimates, fastest_picks = [], []
    for n, layout in sorted({(n, layout) for n, layout, _ in index}):
        entries = {m: index[(n, layout, m)] for m in ("matmul", "fft", "scipy")
                   if (n, layout, m) in index}
        picked = resolve_method("auto", (n, n), "cpu")
        if picked not in entries:
            continue
        fastest = min(entries.values(), key=lambda r: r["time"]["median_s"])
        if fastest is entries[picked]:  # auto took the fastest path: the ratio is 1 exactly
            fastest_picks.append((RatioEstimate(f"{n}x{n} {layout}", 1.0, (1.0, 1.0),
                                                len(counted_rounds(fastest)), slack, None),
                                  "below"))
        else:
            estimates.append(paired_ratio(f"{n}x{n} {layout}", entries[picked], fastest, slack))
    judged = judge(estimates) + fastest_picks
    if not judged:
        return []
    won, lost, total = _tally(judged)
    return [[f"DCT `method='auto'` within {slack:.1f}x of the fastest path (matmul, FFT, scipy) "
             "at every size, CPU", _within_text(judged, "auto/fastest time ratio"),
             _status(won, total, lost)]]


def speed_targets(records: Records, fmt) -> list[list[str]]:
    """Rows ``[target, measured, status]`` from the records keyed by ``(suite, device)``;
    ``fmt(value, digits)`` formats a number for the table."""
    return (_dswg_rows(records) + _mixer_rows(records) + _stage_gfnet_row(records)
            + _same_code_row(records)
            + _exponent_row(records, fmt)
            + _model_rows(records, fmt) + _dct_rows(records))
