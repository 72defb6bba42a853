#!/usr/bin/env bash
# Runs the benchmark suites on one device and regenerates BENCHMARKS.md from every stored result.
#
#   scripts/run_benchmarks.sh            # CPU, fp32: ~2 h on 2 cores (with torch.compile)
#   THREADS=1 scripts/run_benchmarks.sh  # one intra-op thread (steadier when others load the CPU)
#   scripts/run_benchmarks.sh cuda       # CUDA, bf16 autocast, models with and without compile
#
# Results go to data/bench/<device>_{dct,mixers,models}.json. Timings on a shared machine are
# noisy: the load average before and after each suite is stored with its results; run this when
# `uptime` shows a load well below the number of cores. The arms of each point are timed in many
# short interleaved rounds (one call each after an untimed one, the order shuffled), so that every
# ratio between arms comes with a paired 95 % interval and test (dsm_ref.bench.ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${1:-cpu}
OUT=data/bench
THREAD_ARGS=()
if [ -n "${THREADS:-}" ]; then THREAD_ARGS=(--threads "$THREADS"); fi
mkdir -p "$OUT"
echo "load before: $(uptime)"
start=$(date +%s)
if [ "$DEVICE" = cpu ]; then
    # up to 1024 per side: where scipy's DCT and the FFT path overtake the matmul (dct.AUTO_CROSSOVER)
    "$PYTHON" -m dsm_ref bench dct --device cpu "${THREAD_ARGS[@]}" --target-time 0.2 \
        --min-reps 1 --rounds 9 --sizes 7 14 28 56 112 224 320 448 640 768 1024 --json "$OUT/cpu_dct.json"
    # the default DSM mixer also compiled, interleaved with the eager arms (+10-15 min)
    "$PYTHON" -m dsm_ref bench mixers --device cpu "${THREAD_ARGS[@]}" --tokens 6272 \
        --target-time 0.1 --min-reps 1 --rounds 9 --warmup 1 --max-call-time 1.0 --compile both \
        --compile-mixers dsm_matmul --json "$OUT/cpu_mixers.json"
    # the DSWG's cost, GFNet's filter (ours and its authors') and what writing the product into
    # the DCT's output gains, at the shapes dsm_s (and dsm_t at 448 px) run (~2 min)
    "$PYTHON" -m dsm_ref bench stages --device cpu "${THREAD_ARGS[@]}" --target-time 0.1 \
        --min-reps 1 --rounds 13 --warmup 1 --json "$OUT/cpu_stages.json"
    "$PYTHON" -m dsm_ref bench models --device cpu "${THREAD_ARGS[@]}" --batch 16 \
        --train-batch 8 --target-time 0.3 --warmup 1 --min-reps 1 --rounds 9 --compile both \
        --compile-models dsm_s --json "$OUT/cpu_models.json"
else
    "$PYTHON" -m dsm_ref bench dct --device "$DEVICE" --dtype float32 --min-reps 1 --rounds 11 \
        --json "$OUT/cuda_dct.json"
    "$PYTHON" -m dsm_ref bench mixers --device "$DEVICE" --dtype bfloat16 --max-call-time 0.5 \
        --min-reps 1 --rounds 11 --json "$OUT/cuda_mixers.json"
    "$PYTHON" -m dsm_ref bench stages --device "$DEVICE" --dtype bfloat16 --min-reps 1 \
        --rounds 11 --json "$OUT/cuda_stages.json"
    "$PYTHON" -m dsm_ref bench models --device "$DEVICE" --dtype bfloat16 --batch 128 \
        --train-batch 64 --compile both --min-reps 1 --rounds 5 --json "$OUT/cuda_models.json"
fi
"$PYTHON" -m dsm_ref bench report --inputs "$OUT"/*.json --out BENCHMARKS.md
echo "load after: $(uptime)"
echo "took $(( $(date +%s) - start )) s"
