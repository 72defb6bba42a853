#!/usr/bin/env bash
# The GPU check, for a session that has a CUDA device: the CUDA tests, then the benchmarks on
# cuda in bf16 (models also under torch.compile), then BENCHMARKS.md regenerated with the GPU
# numbers beside the stored CPU ones. Finishes in about 6 minutes: every benchmark has a time
# budget (points not started by then are marked "time budget" in its JSON, which is written
# after every point) and every step a hard timeout; a failed step does not stop the others, but
# the script then exits non-zero.
#
#   scripts/gpu_check.sh          # from the repository root or anywhere
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=data/bench
mkdir -p "$OUT"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" \
    || exit 2
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
start=$(date +%s)
status=0
run() {  # run LABEL TIMEOUT_S COMMAND...
    local label=$1 limit=$2
    shift 2
    echo "== $label (at $(( $(date +%s) - start )) s, limit ${limit} s)"
    timeout "$limit" "$@" || { echo "!! $label failed or timed out (rc=$?)"; status=1; }
}

run "CUDA tests" 90 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider tests
# up to 1024 per side: where the FFT path overtakes the matmul on this GPU, the number
# dsm_ref.dct.AUTO_CROSSOVER["cuda"] is to be set from (scipy is CPU-only)
run "DCT, fp32, matmul vs FFT" 45 "$PYTHON" -m dsm_ref bench dct --device cuda --dtype float32 \
    --sizes 7 14 28 56 112 224 448 1024 --methods matmul fft --target-time 0.05 \
    --min-reps 1 --rounds 6 --time-budget 35 --no-progress --json "$OUT/cuda_dct.json"
run "mixers, bf16" 60 "$PYTHON" -m dsm_ref bench mixers --device cuda --dtype bfloat16 \
    --target-time 0.03 --max-call-time 0.5 --min-reps 1 --rounds 6 --time-budget 45 \
    --no-progress --json "$OUT/cuda_mixers.json"
run "mixers at the models' stage shapes, bf16" 30 "$PYTHON" -m dsm_ref bench stages \
    --device cuda --dtype bfloat16 --target-time 0.03 --min-reps 1 --rounds 6 --time-budget 20 \
    --no-progress --json "$OUT/cuda_stages.json"
run "models, bf16, eager and compiled (dsm_s, swin_t)" 110 "$PYTHON" -m dsm_ref bench models \
    --device cuda --dtype bfloat16 --batch 128 --train-batch 64 --target-time 0.2 \
    --compile both --compile-models dsm_s swin_t --rounds 2 --time-budget 85 --no-progress \
    --json "$OUT/cuda_models.json"
run "report" 15 "$PYTHON" -m dsm_ref bench report --inputs "$OUT"/*.json --out BENCHMARKS.md
echo "== done in $(( $(date +%s) - start )) s, status $status"
exit $status
