#!/usr/bin/env bash
# One prepared face-mesh benchmark for a machine lent a GPU (docs/face_mesh.md, "Batches and
# devices"): `marionette bench preprocess` on the torch face mesh on $DEVICE, then on the CPU,
# alternated $ROUNDS times (decode only; decode + tracking, MESH_BATCH frames a detect_batch call;
# the whole dataset builder with 1 and $WORKERS workers, each worker with its own mesh on the
# device), every table appended to $OUT/bench_mesh.md with the load average before and after it.
# Usage: OUT=/path tools/gpu_bench_mesh.sh
# Environment (defaults): OUT (required), DEVICE (cuda; cpu runs the CPU rounds alone), VIDEO (the
# bundled sample driver; docs/face_mesh.md's figures use ../shared/data/videos/lp_d0.mp4),
# WORKERS (2), REPEATS (3), ROUNDS (2), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the tables}"
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export MARIONETTE_FACE_MESH=torch  # MediaPipe's graph runs on the CPU only
# a device torch does not see would be timed as the CPU (marionette.devices falls back): refuse it instead
"$PYTHON" -c 'import sys, torch
from marionette.devices import resolve_device
name = sys.argv[1]
if name != "cpu" and resolve_device(name).type == "cpu":
    sys.exit(f"gpu_bench_mesh.sh: device {name!r} is not available on this machine")
print(f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()}" if name == "cuda" else ""))' "$DEVICE"
video=()
if [ -n "${VIDEO:-}" ]; then video=(--video "$VIDEO"); fi
devices=("$DEVICE")
if [ "$DEVICE" != cpu ]; then devices+=(cpu); fi
mkdir -p "$OUT"
report="$OUT/bench_mesh.md"
: > "$report"
start=$(date +%s)
for round in $(seq "${ROUNDS:-2}"); do
    for device in "${devices[@]}"; do
        {
            echo "## round $round, --device $device (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
            "$PYTHON" -m marionette.cli bench preprocess --device "$device" "${video[@]}" \
                --workers "${WORKERS:-2}" --repeats "${REPEATS:-3}"
            echo
            echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
            echo
        } | tee -a "$report"
    done
done
echo "done in $(( $(date +%s) - start )) s: $report"
