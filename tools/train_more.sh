#!/usr/bin/env bash
# One more training sitting that adds to the shipped generator (docs/training.md, "Sittings that add up"):
#   1. the dataset: DATA as it is, or, when it has no manifest yet, SOURCES preprocessed into it at SIZE px;
#   2. train a new run under OUT for MINUTES of wall clock (max_minutes), warm-started (`train --init`)
#      from the shipped generator ASSET when there is one (its model settings become the run's), else
#      from scratch (the warp-guided model of PRESET); the KEY=VALUE settings given are added either way;
#   3. score the new export against the shipped one (with none shipped: the warp renderer) on the val
#      identities and replace ASSET and its model card CARD only if the new weights are better
#      (training/promote.py), or their average with the shipped ones (AVERAGE: the new weights' share)
#      is; a tie or worse leaves both as they were.
# A sitting runs alone on the machine: nothing else CPU-heavy beside it.
# Usage: [MINUTES=120] tools/train_more.sh [KEY=VALUE training settings ...]   (or: make train-more MINUTES=120)
# Environment (defaults): MINUTES (120), PRESET (warp-cpu: the warp-guided model and its CPU recipe), SIZE (the shipped generator's, else DATA's, else 128), MAX_FRAMES (32),
# DATA (/tmp/marionette_data_$SIZE), SOURCES (shared/data/train shared/data/videos, here or in ../shared),
# ASSET (src/marionette/assets/generator.safetensors), CARD (ASSET with .md), OUT (runs/train_more),
# INIT (shipped, or scratch: from scratch even when a generator is shipped), VAL_KS (1,4), VAL_EPISODES (32 per K),
# MIN_GAIN (0.01: dB of val PSNR a replacement needs), AVERAGE (0.5; 0: the new weights alone), PYTHON (.venv/bin/python if present, else python3),
# WORKERS (all cores, for preprocessing), LOADERS (1, DataLoader workers), TERMS (the training data's terms).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-120}
PRESET=${PRESET:-warp-cpu}
MAX_FRAMES=${MAX_FRAMES:-32}
ASSET=${ASSET:-src/marionette/assets/generator.safetensors}
CARD=${CARD:-${ASSET%.safetensors}.md}
OUT=${OUT:-runs/train_more}
INIT=${INIT:-shipped}
VAL_KS=${VAL_KS:-1,4}
VAL_EPISODES=${VAL_EPISODES:-32}
MIN_GAIN=${MIN_GAIN:-0.01}
AVERAGE=${AVERAGE:-0.5}
[ "$INIT" = shipped ] || AVERAGE=0  # weights trained from scratch share no start with the shipped ones
if [ -z "${PYTHON:-}" ]; then PYTHON=python3; [ -x .venv/bin/python ] && PYTHON=.venv/bin/python; fi
WORKERS=${WORKERS:-$(nproc)}
LOADERS=${LOADERS:-1}
TERMS=${TERMS:-"research use only: the training clips keep their own terms (shared/data/train: tier C, research training only, see its SOURCES.md; shared/data/videos: see shared/data/SOURCES.md)"}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
marionette() { "$PYTHON" -m marionette.cli "$@"; }

# the shipped generator's model settings (and size), so that the run can start from it
model_settings=()
if [ "$INIT" = shipped ] && [ -f "$ASSET" ]; then
    mapfile -t model_settings < <("$PYTHON" - "$ASSET" <<'PY'
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as f:
    model = json.loads(f.metadata()["model"])
print("\n".join(f"model.{key}={value}" for key, value in model.items()))
PY
)
    shipped_size=$(printf '%s\n' "${model_settings[@]}" | sed -n 's/^model.image_size=//p')
    SIZE=${SIZE:-$shipped_size}
    init=(--init "$ASSET")
    from="shipped ($ASSET)"
else
    [ "$INIT" = shipped ] || [ "$INIT" = scratch ] || { echo "INIT=$INIT: must be shipped or scratch" >&2; exit 2; }
    model_settings=(model.warp_guided=true)
    init=()
    from=scratch
fi
if [ -z "${SIZE:-}" ] && [ -n "${DATA:-}" ] && [ -f "$DATA/manifest.json" ]; then  # the given dataset's crops
    SIZE=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"]["size"])' "$DATA/manifest.json")
fi
SIZE=${SIZE:-128}
DATA=${DATA:-/tmp/marionette_data_$SIZE}

if [ ! -f "$DATA/manifest.json" ]; then
    if [ -z "${SOURCES:-}" ]; then
        for base in shared/data ../shared/data; do
            if [ -d "$base/train" ]; then SOURCES="$base/train $base/videos"; break; fi
        done
    fi
    : "${SOURCES:?no dataset at DATA and no shared/data/train here or in ../shared: set DATA or SOURCES}"
    for src in $SOURCES; do
        marionette preprocess "$src" "$DATA" --workers "$WORKERS" --quiet --set size="$SIZE" --set max_frames="$MAX_FRAMES"
    done
fi

run="$OUT/run_$(date +%Y%m%d_%H%M%S)"
settings=()
for setting in "${model_settings[@]}" model.image_size="$SIZE" "$@"; do settings+=(--set "$setting"); done
start=$(date +%s.%N)
marionette train --config "$PRESET" --data "$DATA" --run "$run" --quiet ${init[@]+"${init[@]}"} \
    --set steps=1000000000 --set max_minutes="$MINUTES" --set workers="$LOADERS" "${settings[@]}"
minutes=$(awk -v start="$start" -v end="$(date +%s.%N)" 'BEGIN { printf "%.2f", (end - start) / 60 }')

"$PYTHON" - "$DATA" "$run" "$ASSET" "$CARD" "$minutes" "$from" "$VAL_KS" "$VAL_EPISODES" "$MIN_GAIN" "$AVERAGE" "$TERMS" "$@" <<'PY'
import json, sys
from pathlib import Path
from marionette.errors import InputError
from marionette.training.loop import git_revision
from marionette.training.promote import finish_sitting

data, run, asset, card = map(Path, sys.argv[1:5])
minutes, started_from, ks, episodes, min_gain, share, terms = sys.argv[5:12]  # then the settings given
try:
    verdict = finish_sitting(data, run / "export" / "generator.safetensors", asset, card, float(minutes), started_from,
                             [int(k) for k in ks.split(",")], int(episodes), float(min_gain), terms, git_revision(),
                             sys.argv[12:], averaged=float(share))
except InputError as e:
    sys.exit(f"train_more: error: {e}")
(run / "sitting.json").write_text(json.dumps({"replaced": verdict.better, "why": verdict.why, "bar": verdict.bar,
                                              "candidate": verdict.candidate, "before": verdict.shipped}, indent=1))
print(f"{'replaced' if verdict.better else 'kept'} {asset}: new weights vs {verdict.bar}: {verdict.why}; run {run}")
PY
