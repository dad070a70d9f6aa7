#!/usr/bin/env bash
# One prepared training command for a machine lent a GPU (docs/training.md, "On a GPU"):
#   1. preprocess every source folder into one dataset at $SIZE px with all cores,
#   2. train $PRESET with bf16 autocast for $MINUTES of wall clock (max_minutes: then it validates
#      on the val identities, checkpoints and exports),
#   3. leave the run folder and a copy of the export under $OUT.
# Usage: OUT=/path tools/gpu_train.sh [KEY=VALUE training settings ...]
# Environment (defaults): OUT (required), MINUTES (8), PRESET (paper), SIZE (256), MAX_FRAMES (32),
# SOURCES (shared/data/train shared/data/videos, or the same under ../shared), DATA (/tmp/marionette_data_$SIZE),
# PYTHON (python3), WORKERS (all cores, for preprocessing), LOADERS (8, DataLoader workers).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the run}"
MINUTES=${MINUTES:-8}
PRESET=${PRESET:-paper}
SIZE=${SIZE:-256}
MAX_FRAMES=${MAX_FRAMES:-32}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-$(nproc)}
LOADERS=${LOADERS:-8}
DATA=${DATA:-/tmp/marionette_data_$SIZE}
if [ -z "${SOURCES:-}" ]; then
    for base in shared/data ../shared/data; do
        if [ -d "$base/train" ]; then SOURCES="$base/train $base/videos"; break; fi
    done
fi
: "${SOURCES:?no shared/data/train here or in ../shared: set SOURCES to the video folders}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
marionette() { "$PYTHON" -m marionette.cli "$@"; }

start=$(date +%s)
for src in $SOURCES; do
    marionette preprocess "$src" "$DATA" --workers "$WORKERS" --quiet --set size="$SIZE" --set max_frames="$MAX_FRAMES"
done
echo "preprocessed in $(( $(date +%s) - start )) s"

settings=()
for setting in "$@"; do settings+=(--set "$setting"); done
marionette train --config "$PRESET" --data "$DATA" --run "$OUT/run" --quiet --set model.image_size="$SIZE" \
    --set max_minutes="$MINUTES" --set autocast=true --set workers="$LOADERS" ${settings[@]+"${settings[@]}"}
cp "$OUT/run/export/generator.safetensors" "$OUT/generator.safetensors"
"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [json.loads(line) for line in (out / "run" / "stats.jsonl").read_text().splitlines()]
val = [r for r in rows if "val/psnr" in r][-1]
summary = {"step": val["step"], **{k: v for k, v in val.items() if k.endswith(("/l1", "/psnr", "/ssim"))}}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"step {val['step']}: val PSNR generator {val['val/psnr']:.2f}, warp {val['warp/psnr']:.2f}, "
      f"copy first {val['copy_first/psnr']:.2f}; export {out / 'generator.safetensors'}")
PY
echo "done in $(( $(date +%s) - start )) s"
