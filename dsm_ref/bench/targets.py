"""The speed targets the benchmarks check: each a measured time or throughput against a
reference (the DSWG's cost over the static mixer, the DSM mixer against GFNet's filter and
attention, its time exponent, ``dsm_s`` against Swin-T, the matmul DCT against
``scipy.fft.dctn``, the FFT DCT against GFNet's ``rfft2``), with what the stored records give
and whether the target is met. A target with no record says "not measured"."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["speed_targets"]

Records = dict[tuple[str, str], dict[str, Any]]


def _ms(entry: dict[str, Any] | None) -> float | None:
    return entry["ms_per_image"] if entry and "time" in entry else None


def _status(won: int, total: int) -> str:
    if total == 0:
        return "not measured"
    return "met" if won == total else "not met"


def _mixer_index(record: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """A mixers record's measured rows by ``(mixer, C, grid side)``."""
    return {(r["mixer"], r["dim"], r["grid"][0]): r for r in record["results"]
            if not r.get("skipped")}


def _wins(record: dict[str, Any], mine: str, other: str, min_grid: int = 0
          ) -> tuple[int, int, tuple[float, str] | None]:
    """Points (mode x C x grid) where ``mine`` is faster than ``other``, how many were
    measured, and the worst time ratio other / mine with where it was."""
    index = _mixer_index(record)
    won = total = 0
    worst = None
    for (name, dim, n), r in index.items():
        if name != mine or n < min_grid:
            continue
        for mode in record["settings"]["modes"]:
            a = _ms(r.get(mode))
            b = _ms((index.get((other, dim, n)) or {}).get(mode))
            if a and b:
                total += 1
                won += a < b
                if worst is None or b / a < worst[0]:
                    worst = (b / a, f"{mode} C={dim} {n}²")
    return won, total, worst


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
            won, total, worst = _wins(record, mine, "gfnet")
            worst_text = (f"; worst GFNet/DSM time ratio {worst[0]:.2f} ({worst[1]})"
                          if worst else "")
            rows.append([f"{name} faster than GFNet filter at every size, {label}",
                         f"faster at {won}/{total} points (inference + train){worst_text}",
                         _status(won, total)])
    for label, record in pairs:
        if record is None:
            rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                         "not measured", "not measured"])
            continue
        won, total, worst = _wins(record, "dsm_matmul", "attention", min_grid=28)
        worst_text = f"; worst attention/DSM ratio {worst[0]:.2f} ({worst[1]})" if worst else ""
        rows.append([f"DSM mixer faster than attention from 28x28 on, {label}",
                     f"faster at {won}/{total} measured points{worst_text}",
                     _status(won, total)])
    return rows


def _dswg_rows(records: Records, slack: float = 1.2) -> list[list[str]]:
    """The DSWG's overhead: time(DSM mixer) / time(its static twin) at most ``slack`` at every
    point (C x grid), per mode."""
    target = f"DSWG adds at most {slack - 1:.0%} to the static mixer's time"
    record = records.get(("mixers", "cpu"))
    if record is None or not {"dsm_matmul", "dsm_static"} <= set(record["settings"]["mixers"]):
        return [[f"{target}, CPU fp32", "not measured", "not measured"]]
    index = _mixer_index(record)
    rows = []
    for mode in record["settings"]["modes"]:
        ratios = []
        for (name, dim, n), r in index.items():
            mine, twin = _ms(r.get(mode)), _ms((index.get(("dsm_static", dim, n)) or {}).get(mode))
            if name == "dsm_matmul" and mine and twin:
                ratios.append((mine / twin, f"C={dim} {n}²"))
        within = sum(ratio <= slack for ratio, _ in ratios)
        worst = max(ratios, default=None)
        measured = f"{within}/{len(ratios)} points"
        if worst:
            measured += (f"; median {statistics.median(r for r, _ in ratios):.2f}x, worst "
                         f"{worst[0]:.2f}x ({worst[1]})")
        rows.append([f"{target}, {mode}, CPU fp32", measured, _status(within, len(ratios))])
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
            rows.append(["`dsm_s` inference throughput >= Swin-T at 224, CPU",
                         f"{fmt(a)} vs {fmt(b)} img/s ({a / b:.2f}x)",
                         "met" if a >= b else "not met"])
    if records.get(("models", "cuda")) is None:
        rows.append(["`dsm_s` inference throughput >= Swin-T at 224, GPU bf16", "not measured",
                     "not measured"])
    return rows


def _time_ratios(index: dict, method: str, other: str) -> list[tuple[float, str]]:
    """``time(method) / time(other)`` and ``"NxN layout"`` at every size and layout where the
    DCT record ``index`` (keyed by ``(n, layout, method)``) has both."""
    return [(r["time"]["median_s"] / index[(n, layout, other)]["time"]["median_s"],
             f"{n}x{n} {layout}")
            for (n, layout, m), r in index.items() if m == method and (n, layout, other) in index]


def _dct_rows(records: Records, fmt) -> list[list[str]]:
    cpu_dct = records.get(("dct", "cpu"))
    if not cpu_dct:
        return []
    index = {(r["n"], r["layout"], r["method"]): r for r in cpu_dct["results"]
             if not r.get("skipped")}
    ratios = _time_ratios(index, "matmul", "scipy")  # scipy/matmul = 1 / these
    won = sum(ratio <= 1 for ratio, _ in ratios)
    worst = max(ratios, default=None)
    rows = [["matmul DCT at least as fast as `scipy.fft.dctn`, batched channels, CPU",
             f"{won}/{len(ratios)} points; worst scipy/matmul time ratio "
             f"{fmt(1 / worst[0], 2) if worst else '-'} ({worst[1] if worst else ''})",
             _status(won, len(ratios))]]
    return rows + [_fft_row(index, fmt), _auto_row(index, fmt)]


def _fft_row(index: dict, fmt, slack: float = 1.2) -> list[str]:
    """The FFT DCT (Makhoul) within ``slack`` of GFNet's ``rfft2`` of the same tensor."""
    ratios = _time_ratios(index, "fft", "rfft2")
    target = f"FFT DCT within {slack:.1f}x of GFNet's `rfft2` of the same tensor, CPU"
    if not ratios:
        return [target, "not measured (no rfft2 rows)", "not measured"]
    won = sum(ratio <= slack for ratio, _ in ratios)
    worst = max(ratios)
    return [target,
            f"{won}/{len(ratios)} points; worst fft/rfft2 time ratio {fmt(worst[0], 2)} "
            f"({worst[1]})", _status(won, len(ratios))]


def _auto_row(index: dict, fmt, slack: float = 1.1) -> list[str]:
    """``method="auto"`` (the path :func:`dsm_ref.dct.resolve_method` picks on CPU) within
    ``slack`` of the fastest measured path at every size and layout of the record."""
    from ..dct import resolve_method

    won = total = 0
    worst = None
    for n, layout in sorted({(n, layout) for n, layout, _ in index}):
        times = {m: index[(n, layout, m)]["time"]["median_s"] for m in ("matmul", "fft", "scipy")
                 if (n, layout, m) in index}
        picked = resolve_method("auto", (n, n), "cpu")
        if picked not in times:
            continue
        ratio = times[picked] / min(times.values())
        total += 1
        won += ratio <= slack
        if worst is None or ratio > worst[0]:
            worst = (ratio, f"{n}x{n} {layout}")
    return [f"DCT `method='auto'` within {slack:.1f}x of the fastest path (matmul, FFT, scipy) "
            "at every size, CPU",
            f"{won}/{total} points; worst auto/fastest time ratio "
            f"{fmt(worst[0], 2) if worst else '-'} ({worst[1] if worst else ''})",
            _status(won, total)]


def speed_targets(records: Records, fmt) -> list[list[str]]:
    """Rows ``[target, measured, status]`` from the records keyed by ``(suite, device)``;
    ``fmt(value, digits)`` formats a number for the table."""
    return (_dswg_rows(records) + _mixer_rows(records) + _exponent_row(records, fmt)
            + _model_rows(records, fmt) + _dct_rows(records, fmt))
