#!/usr/bin/env bash
# One prepared generator benchmark for a machine lent a GPU (README, "Generator cost"): the
# `marionette bench model` table (this run's matmul and 3x3 conv ceilings, ms/frame, achieved
# GFLOP/s, FOMM for reference) for the paper preset at K = 8 in bf16, batch 1 and 16, written to
# $OUT/bench_model.md; the GPU is synchronized before every clock reading, after warm-up calls.
# Usage: OUT=/path tools/gpu_bench.sh (the face mesh's: tools/gpu_bench_mesh.sh)
# Environment (defaults): OUT (required), DEVICE (cuda), PRESET (paper), KS (8), PRECISION (bf16;
# a comma list such as bf16,fp32 also works), BATCH (1,16), ROUNDS (30), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the table}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
start=$(date +%s)
"${PYTHON:-python3}" -m marionette.cli bench model --device "${DEVICE:-cuda}" --presets "${PRESET:-paper}" \
    --ks "${KS:-8}" --precision "${PRECISION:-bf16}" --batch "${BATCH:-1,16}" --rounds "${ROUNDS:-30}" \
    --out "$OUT/bench_model.md"
echo "done in $(( $(date +%s) - start )) s: $OUT/bench_model.md"
