"""kill -9 during `marionette train`, then the same command again: it resumes from the last
checkpoint, no partial file is left, and the stats continue without repeated steps. The kill lands
at a known point, whatever the machine's speed: while step 4's checkpoint is half written (its
weights saved in the hidden temporary folder, its optimizer state not yet)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import start_held

from marionette.training.checkpoint import list_checkpoints, read_state


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_then_same_command_resumes(train_dataset: Path, tmp_path: Path) -> None:
    data, run = train_dataset, tmp_path / "run"
    command = [sys.executable, "-m", "marionette.cli", "train", "--config", "tiny", "--data", str(data),
               "--run", str(run), "--quiet"] + [f"--set={s}" for s in (
                   "loss.perceptual_weights=random", "steps=12", "batch_size=2", "episodes.k_max=2", "val_every=0",
                   "checkpoint_every=2", "keep_last=2", "log_every=1", "workers=0")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread each does not oversubscribe CI cores
    # save_file's 4th call: step 4's optimizer.safetensors (the 1st and 2nd were step 2's)
    first = start_held(command[3:], "marionette.training.checkpoint.save_file", 4, tmp_path / "held",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    (partial,) = (run / "checkpoints").glob(".step_000000004.*")  # the hidden temporary folder of step 4's
    assert [p.name for p in partial.iterdir()] == ["weights.safetensors"]
    assert [p.name for p in list_checkpoints(run)] == ["step_000000002"]  # and not step 4's
    read_state(list_checkpoints(run)[0])  # what is listed after the kill is whole

    again = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {run / 'checkpoints' / 'step_000000002'}" in again.stderr
    assert "trained to step 12" in again.stdout
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # no step lost or repeated across the kill
    assert [p.name for p in list_checkpoints(run)] == ["step_000000010", "step_000000012"]
    leftovers = [p for p in run.rglob(".*")]
    assert leftovers == []
