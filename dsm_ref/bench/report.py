"""``BENCHMARKS.md`` from stored benchmark records: tables, the measured ratios, the commands that
made them and their provenance, nothing else (no number or sentence typed by hand).

:func:`render_report` takes records as :func:`~dsm_ref.bench.records.load_records` reads them
(older schemas are upgraded first) and renders, per suite and device, the machine and versions,
the measured peaks, the commands, the conventions stored in the records, the ratios between the
DSM mixer (``dsm_matmul``; ``dsm_auto`` against GFNet), the models and the DCT methods and
their peers, the speed targets (:mod:`.targets`), the mixer arms, the ``torch.compile`` graph
counts, and the full tables.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from .ratios import paired_ratio
from .records import COMPILED_SUFFIX, upgrade_record
from .targets import mixer_index, speed_targets, stages_text

__all__ = ["render_report"]

def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _git_text(git: dict[str, Any] | None) -> str:
    """``<commit>``, with the hash of the uncommitted diff (or a mark) when there was one."""
    if not git or not git.get("commit"):
        return "unknown"
    text = git["commit"][:7]
    if git.get("diff_sha256"):
        return f"{text} + uncommitted diff {git['diff_sha256']}"
    return f"{text} (uncommitted changes)" if git.get("dirty") else text


def _machine_line(record: dict[str, Any]) -> str:
    m = record["machine"]
    device = m.get("gpu") or (f"{m['cpu_model']} ({m['cpu_count']} logical CPUs), "
                              f"{m['torch_threads']} torch thread(s)")
    return (f"{record['suite']}: {device}; torch {m['torch']}, torchvision {m['torchvision']}, "
            f"scipy {m['scipy']}, numpy {m['numpy']}, python {m['python']}; "
            f"{record['settings']['precision']}; load average (1/5/15 min) before "
            f"{m.get('load_average')}, after {m.get('load_average_after')}; "
            f"git {_git_text(m.get('git'))}; {record['created']}"
            + ("; **incomplete run**: stopped before every point of its settings was measured"
               if record.get("complete") is False else "") + _resumed_text(record))


def _resumed_text(record: dict[str, Any]) -> str:
    """Where a run continued by ``--resume`` got its kept groups from (empty otherwise)."""
    earlier = record.get("resumed_from")
    if not earlier:
        return ""
    git = (earlier.get("machine") or {}).get("git")
    return (f"; continued with `--resume`: {earlier['groups']} group(s) of arms kept from the "
            f"run of {earlier['created']} (git {_git_text(git)}, same settings and timed code "
            f"{record.get('code_fingerprint')}), the others measured in this run")


def _ratio_line(record: dict[str, Any], mine: str, other: str, mode: str) -> str:
    """Per grid: median over C of time(other) / time(mine), with the range; each point's ratio
    is the geometric mean of its paired per-round ratios (:func:`.ratios.paired_ratio`)."""
    index = mixer_index(record)
    parts = []
    for n in record["settings"]["grids"]:
        ratios = []
        for dim in record["settings"]["dims"]:
            estimate = paired_ratio("", (index.get((other, dim, n)) or {}).get(mode),
                                    (index.get((mine, dim, n)) or {}).get(mode))
            if estimate is not None:
                ratios.append(estimate.ratio)
        if ratios:
            parts.append(f"{n}²: **{statistics.median(ratios):.2f}x** "
                         f"({min(ratios):.2f}–{max(ratios):.2f})")
        else:
            parts.append(f"{n}²: -")
    return " · ".join(parts)


def _order_text(settings: dict[str, Any]) -> str:
    """How the arms were ordered within a round, as the record states it (older records: in
    the listed order every round)."""
    return f" ({settings.get('round_order', 'the arms in the listed order every round')})"


def _dct_ratio_line(record: dict[str, Any], layout: str, other: str, base: str = "matmul") -> str:
    """``time(other) / time(base)`` per size ``N``, for one layout (paired over rounds)."""
    index = {(r["n"], r["method"]): r for r in record["results"]
             if r["layout"] == layout and not r.get("skipped")}
    parts = []
    for n in record["settings"]["sizes"]:
        estimate = paired_ratio("", index.get((n, other)), index.get((n, base)))
        if estimate is not None:
            parts.append(f"{n}: **{estimate.ratio:.2f}x**")
    return " · ".join(parts)


def _dct_section(record: dict[str, Any]) -> list[str]:
    out = ["## 2D DCT: matmul vs FFT (Makhoul) vs `scipy.fft.dctn`, beside GFNet's `rfft2`", ""]
    s = record["settings"]
    out.append(
        f"`dct2` of `{s['channels']}` channels, batch `B = max(1, {s['tokens']} // N²)`; "
        "time per call in ms (median, IQR/median in brackets), max error vs `scipy.fft.dctn` "
        "in float64 (relative to max |X|), and measured / floor. The floor is the same for every "
        "method: max(FFT-path FLOPs / P, bytes / BW), bytes = read the input + write the output. "
        "`rfft2` is GFNet's forward transform of the same tensor, the reference for the FFT path "
        "(another transform: no error). "
        f"The methods of one size were timed in turn, {s.get('rounds', 1)} round(s)"
        f"{_order_text(s)}; each time reports "
        f"{s.get('counted_rounds', 'the median of its fastest round')}.")
    out.append("")
    rows = []
    for r in record["results"]:
        if r.get("skipped"):
            rows.append([r["n"], r["layout"], r["method"], "-", "-", "-", "-", r["skipped"]])
            continue
        t = r["time"]
        rows.append([
            f"{r['n']}x{r['n']}", r["layout"], r["method"],
            f"{_fmt(t['median_s'] * 1e3)} ({t['spread'] * 100:.0f}%)",
            "-" if r["flops"] is None else _fmt(r["flops"] / 1e6),
            "-" if r["max_rel_error"] is None else f"{r['max_rel_error']:.1e}",
            _fmt(r["x_floor"], 2), "",
        ])
    out.append(_table(["N x N", "layout", "method", "ms / call", "MFLOP", "rel. error",
                       "x floor", "note"], rows))
    out.append("")
    return out


def _stage_section(record: dict[str, Any]) -> list[str]:
    """The mixers at the models' stage shapes: ms per call of each arm, and the ratios that
    matter there (the DSWG's cost over the static twin, GFNet's time over the default mixer's,
    the same code as two arms, writing into the DCT's output against a new tensor, our GFNet
    filter against its authors'), paired over rounds, with their 95 % intervals."""
    s = record["settings"]
    index = mixer_index(record)
    mixers = s["mixers"]
    out = ["## Token mixers at the models' stage shapes", ""]
    out.append(
        f"The shapes ({stages_text(record)}) at which the models run their mixers, input "
        "`(B, N, N, C)` channels-last; ms per call. The mixers of one shape were timed in turn, "
        f"{s.get('rounds', 1)} round(s){_order_text(s)}; each time reports "
        f"{s.get('counted_rounds', 'the median of its fastest round')}. The ratios pair the "
        "rounds (geometric mean of the per-round ratios, 95 % t-interval).")
    out.append("")
    ratio_columns = [(mine, other) for mine, other in (("dsm_matmul", "dsm_static"),
                                                       ("gfnet", "dsm_auto"),
                                                       ("dsm_auto", "dsm_matmul"),
                                                       ("dsm_auto", "dsm_out_of_place"),
                                                       ("gfnet", "gfnet_upstream"))
                     if {mine, other} <= set(mixers)]
    rows = []
    for n, dim in s.get("shapes", []):
        for mode in s["modes"]:
            cells = []
            for name in mixers:
                entry = (index.get((name, dim, n)) or {}).get(mode) or {}
                cells.append(_fmt(entry["time"]["median_s"] * 1e3) if "time" in entry else "-")
            for mine, other in ratio_columns:
                estimate = paired_ratio("", (index.get((mine, dim, n)) or {}).get(mode),
                                        (index.get((other, dim, n)) or {}).get(mode))
                cells.append("-" if estimate is None else
                             f"{estimate.ratio:.2f} ({estimate.interval_text})")
            rows.append([f"{n}² x {dim}", mode, *cells])
    out.append(_table(["N² x C", "mode", *mixers,
                       *[f"{mine} / {other}" for mine, other in ratio_columns]], rows))
    out.append("")
    return out


def _mixer_section(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    index = mixer_index(record)
    grids, dims, mixers = s["grids"], s["dims"], s["mixers"]
    out = ["## Token mixers", ""]
    out.append(
        f"Input `(B, N, N, C)` channels-last, `B = max(1, {s['tokens']} // N²)`; every number is "
        "per image. Skipped points: over the time cap (`max_call_time`) at the measured matmul "
        "peak, or out of memory. The mixers of one size were timed in turn, "
        f"{s.get('rounds', 1)} round(s){_order_text(s)}; each time reports "
        f"{s.get('counted_rounds', 'the median of its fastest round')}.")
    for mode in s["modes"]:
        label = {"inference": "inference (forward, no_grad)",
                 "train": "training (forward + backward)"}.get(mode, mode)
        out += ["", f"### Time, {label}: ms per image (x floor)", ""]
        rows = []
        for name in mixers:
            for dim in dims:
                cells = []
                for n in grids:
                    entry = (index.get((name, dim, n)) or {}).get(mode) or {}
                    if "time" in entry:
                        cells.append(f"{_fmt(entry['ms_per_image'])} ({_fmt(entry['x_floor'], 2)})")
                    else:
                        cells.append("skipped" if entry.get("skipped") else "-")
                rows.append([name, dim, *cells])
        out.append(_table(["mixer", "C", *[f"{n}²" for n in grids]], rows))
    out += ["", "### FLOPs per image (MFLOP, forward; FFTs at 5 N log2 N) and peak memory per "
            "image (MiB, inference)", ""]
    rows = []
    for name in mixers:
        for dim in dims:
            cells = []
            for n in grids:
                r = index.get((name, dim, n))
                entry = (r or {}).get("inference") or {}
                if not r or "flops" not in entry:
                    cells.append("-")
                    continue
                flop = _fmt(entry["flops"] / r["batch"] / 1e6)
                mem = entry.get("peak_memory_bytes")
                mem_text = _fmt(mem / r["batch"] / 2**20) if mem is not None else "-"
                cells.append(f"{flop} / {mem_text}")
            rows.append([name, dim, *cells])
    out.append(_table(["mixer", "C", *[f"{n}²" for n in grids]], rows))
    fits = record.get("fits", [])
    if fits:
        out += ["", f"### Fitted exponent of per-image time (and FLOPs) vs tokens, grids with "
                f">= {s['fit_min_tokens']} tokens", ""]
        rows = []
        for name in mixers:
            for mode in s["modes"]:
                cells = []
                for dim in dims:
                    fit = next((f for f in fits if f["mixer"] == name and f["dim"] == dim
                                and f["mode"] == mode), None)
                    if not fit or fit["time_exponent"] is None:
                        cells.append("-")
                        continue
                    cells.append(f"{fit['time_exponent']:.2f} ({fit['flops_exponent']:.2f}, "
                                 f"{len(fit['time_tokens'])} pts)")
                rows.append([name, mode, *cells])
        out.append(_table(["mixer", "mode", *[f"C={d}" for d in dims]], rows))
    out.append("")
    return out


def _model_section(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    out = ["## Models", ""]
    out.append(
        f"At {s['img_size']}x{s['img_size']}, random weights. GMACs = multiply-adds per image "
        "(the peers' \"GFLOPs\"; FFTs at 5 N log2 N / 2). Inference: batch "
        f"{s['batch']}, `eval()`, `no_grad`; training step: batch {s['train_batch']}, forward + "
        f"cross-entropy + backward + AdamW step, {s.get('rounds', 1)} interleaved rounds"
        f"{_order_text(s)}. "
        f"Throughput of {s.get('counted_rounds', 'the fastest round')} (each round the median "
        "of its repetitions; range over rounds in brackets; with one round, ± half the IQR). "
        "x floor: measured / (FLOPs / "
        "matmul peak).")
    out.append("")
    rows = []
    for r in record["results"]:
        if r.get("skipped"):
            rows.append([r["model"], "compiled" if r["compiled"] else "eager", "-", "-", "-",
                         "-", "-", "-", r["skipped"]])
            continue
        inf, tr = r.get("inference") or {}, r.get("train") or {}

        def ips(entry):
            return _fmt(entry["images_per_s"]) if "time" in entry else "-"

        def mem(entry):
            b = entry.get("peak_memory_bytes")
            return _fmt(b / 2**30) if b is not None else "-"

        def spread(entry):
            rounds = [entry["batch"] / t for t in entry.get("rounds", [])]
            if len(rounds) > 1:
                return f"{ips(entry)} ({_fmt(min(rounds))}–{_fmt(max(rounds))})"
            return f"{ips(entry)} (±{entry['time']['spread'] * 50:.0f}%)"

        rows.append([
            r["model"], "compiled" if r["compiled"] else "eager",
            _fmt(r["params"] / 1e6), _fmt(r["gmacs_per_image"]),
            spread(inf) if "time" in inf else "-",
            spread(tr) if "time" in tr else "-",
            f"{mem(inf)} / {mem(tr)}",
            f"{_fmt(inf.get('x_floor'), 2)} / {_fmt(tr.get('x_floor'), 2)}", "",
        ])
    out.append(_table(["model", "mode", "params (M)", "GMACs", "inference img/s",
                       "train img/s", "peak GiB (inf / train)", "x floor (inf / train)", "note"],
                      rows))
    out.append("")
    return out



def _arms_section(by_key: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Each mixer label of the mixers records: its registry mixer and options."""
    arms: dict[str, dict[str, Any]] = {}
    for (suite, _), r in sorted(by_key.items()):
        if suite == "mixers":
            for label, arm in r["settings"].get("mixer_arms", {}).items():
                arms.setdefault(label, arm)
    if not arms:
        return []
    rows = [[label, f"`{arm['token_mixer']}`",
             ", ".join(f"`{k}={v!r}`" for k, v in arm["options"].items()) or "-",
             f"`{arm['implementation']}`" if arm.get("implementation") else "the registry's"]
            for label, arm in arms.items()]
    return ["## Mixer arms", "",
            _table(["label", "`dsm_ref.models.TOKEN_MIXERS` name", "options", "implementation"],
                   rows), ""]


def _graph_break_section(by_key: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Graphs and graph breaks ``torch._dynamo.explain`` found in each mixer."""
    found = [(device, name, v) for (suite, device), r in sorted(by_key.items())
             if suite == "mixers" for name, v in (r.get("graph_breaks") or {}).items()]
    if not found:
        return []
    errors = any("error" in v for _, _, v in found)
    rows = [[device, name, v.get("graphs", "-"), v.get("graph_breaks", "-"),
             *([v.get("error", "")] if errors else [])] for device, name, v in found]
    header = ["device", "mixer", "graphs", "graph breaks", *(["error"] if errors else [])]
    return ["## `torch.compile`: graphs and graph breaks (`torch._dynamo.explain`)", "",
            _table(header, rows), ""]


def _conventions(records: Sequence[dict[str, Any]]) -> list[str]:
    """The conventions stored in the records; one worded differently in different records is
    listed once per wording, with the records that used it."""
    wordings: dict[str, dict[str, list[str]]] = {}
    for r in records:
        for key, text in r.get("conventions", {}).items():
            wordings.setdefault(key, {}).setdefault(text, []).append(
                f"{r['suite']} ({r['settings']['device']})")
    lines = []
    for key, texts in wordings.items():
        if len(texts) == 1:
            lines.append(f"- **{key}**: {next(iter(texts))}")
        else:
            lines += [f"- **{key}** ({', '.join(users)}): {text}" for text, users in texts.items()]
    return lines


def render_report(records: Sequence[dict[str, Any]], *, commands: Sequence[str] = ()) -> str:
    """``BENCHMARKS.md`` from ``bench`` records (one per suite and device); ``commands`` are
    listed after the records' own (e.g. the ``bench report`` command itself)."""
    records = [upgrade_record(r) for r in records]
    by_key = {(r["suite"], r["settings"]["device"].split(":")[0]): r for r in records}
    out = [
        "# Benchmarks: complexity and speed of the DSM mixer",
        "",
        "Generated by `python -m dsm_ref bench report` from the JSON files in `data/bench/`; "
        "do not edit by hand.",
        "",
    ]
    if not any(device == "cuda" for _, device in by_key):
        out += ["> **GPU numbers are not measured yet**: none of these records was made on a "
                "CUDA device.", ""]
    out += ["## Machines, versions, load", ""]
    out += [f"- {_machine_line(r)}" for r in records]
    out += ["", "Measured peaks (the floors' denominators):", ""]
    for r in records:
        p = r.get("peaks", {})
        if p:
            out.append(f"- {r['suite']} ({r['settings']['device']}): matmul "
                       f"{p['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s, copy "
                       f"{p['copy_bytes_per_s'] / 1e9:.1f} GB/s ({p['how']}; best of "
                       f"{p.get('measurements', 1)} measurement(s) in the run)")
    out += ["", "Commands:", "", "```bash"]
    out += [r["command"] for r in records if r.get("command")] + list(commands)
    out += ["```", "", "Conventions:", ""]
    out += _conventions(records)
    out += ["", "## The ratios that matter", "",
            "The arms of one point are timed in the same rounds, so their times pair up round by "
            "round; a ratio at a point is the geometric mean of its per-round ratios over the "
            "counted rounds (the reported times alone where a record has no rounds). The speed "
            "targets below test those paired ratios (a t-test on their logs, Holm-adjusted over "
            "the points of a target), so a target reads \"met\" only where every point is shown "
            "to meet it, \"not met\" where some point is shown to miss it, and \"not shown\" "
            "where the rounds cannot tell.", ""]
    for (suite, device), r in sorted(by_key.items()):
        if suite != "mixers":
            continue
        prec = r["settings"]["precision"]
        for mode in r["settings"]["modes"]:
            pairs = [("dsm_matmul", other) for other in
                     ("gfnet", "gfnet_upstream", "attention", "dsm_static", "dsm_log")]
            pairs.append(("dsm_auto", "gfnet"))
            for mine, other in pairs:
                if {mine, other} <= set(r["settings"]["mixers"]):
                    ratios = _ratio_line(r, mine, other, mode)
                    out.append(f"- {device} {prec}, {mode}: time({other}) / time({mine}), "
                               f"median over C (range): {ratios}")
            if set(r["settings"].get("compile_modes", [])) == {False, True}:
                for name in r["settings"].get("compile_mixers") or r["settings"]["mixers"]:
                    ratios = _ratio_line(r, name, name + COMPILED_SUFFIX, mode)
                    out.append(f"- {device} {prec}, {mode}: time({name}, compiled) / "
                               f"time({name}, eager), median over C (range): {ratios}")
    for (suite, device), r in sorted(by_key.items()):
        if suite != "models":
            continue
        done = {(x["model"], x["compiled"]): x for x in r["results"] if not x.get("skipped")}
        for compiled in (False, True):
            for other, label in (("swin_t", "Swin-T"), ("convnext_tiny", "ConvNeXt-T"),
                                 ("dsm_s-gfnet", "the same body with the GFNet filter")):
                dsm, peer = done.get(("dsm_s", compiled)), done.get((other, compiled))
                if not (dsm and peer):
                    continue
                parts = []
                for mode in r["settings"]["modes"]:
                    # img/s ratio = time ratio (the same batch), paired over the rounds
                    estimate = paired_ratio(mode, peer.get(mode), dsm.get(mode))
                    if estimate is not None:
                        parts.append(f"{mode} **{estimate.ratio:.2f}x** "
                                     f"({estimate.interval_text})")
                out.append(f"- {device} {r['settings']['precision']}, "
                           f"{'compiled' if compiled else 'eager'}: img/s(`dsm_s`) / img/s"
                           f"({label}) at {r['settings']['img_size']}: " + ", ".join(parts))
    for (suite, device), r in sorted(by_key.items()):
        if suite != "dct":
            continue
        for layout in r["settings"]["layouts"]:
            for other, base in (("scipy", "matmul"), ("fft", "matmul"), ("fft", "rfft2")):
                line = _dct_ratio_line(r, layout, other, base)
                if line:
                    out.append(f"- {device} DCT, {layout}: time({other}) / time({base}) per N: "
                               + line)
    out += ["", "## Speed targets", ""]
    out.append(_table(["target", "measured", "status"], speed_targets(by_key, _fmt)))
    out.append("")
    out += _arms_section(by_key)
    out += _graph_break_section(by_key)
    for suite, section in (("dct", _dct_section), ("mixers", _mixer_section),
                           ("stages", _stage_section), ("models", _model_section)):
        for (s, device), r in sorted(by_key.items()):
            if s == suite:
                lines = section(r)
                lines[0] += f" ({device}, {r['settings']['precision']})"
                out += lines
    return "\n".join(out).rstrip() + "\n"

