"""tools/gpu_train.sh on CPU with tiny settings and a wall-clock budget of a few seconds: it
preprocesses, trains until max_minutes is spent (not to `steps`), validates, exports, and leaves
the run folder, the export and a summary under $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marionette.inference.export import load_generator
from marionette.training.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_gpu_train_script_with_a_tiny_budget(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "SOURCES": str(REPO / "assets" / "videos"),
           "DATA": str(tmp_path / "data"), "SIZE": "64", "MAX_FRAMES": "10", "PRESET": "tiny", "MINUTES": "0.05",
           "WORKERS": "2", "LOADERS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(REPO / "tools" / "gpu_train.sh"), "steps=100000", "model.warp_guided=true",
                           "val_every=100000", "val_episodes=2", "checkpoint_every=100000"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = load_generator(out / "generator.safetensors")
    assert exported.model.warp_guided and exported.preprocess.size == 64 and 0 < exported.step < 100000
    assert list_checkpoints(out / "run")[-1].name == f"step_{exported.step:09d}"  # stopped by the budget
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == exported.step and {"val/psnr", "warp/psnr", "copy_first/psnr"} <= set(summary)
    assert "max_minutes=0.05 spent" in done.stderr
    assert (out / "run" / "val_curve.png").is_file() and (out / "run" / "samples").is_dir()
