"""kill -9 during `marionette preprocess`, then the same command again: finished clips are kept,
no half-written file is left or listed, and the dataset completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marionette.data.manifest import Manifest
from marionette.data.store import ClipReader

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "videos"


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_then_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "marionette.cli", "preprocess", str(ASSETS), str(out),
               "--workers", "1", "--quiet", "--set", "size=64", "--set", "max_frames=8"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    clips = out / "clips"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(clips.glob("[!.]*.safetensors")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: no clean-up code runs anywhere
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in clips.glob("[!.]*.safetensors")}
    assert 1 <= len(finished) < 4, "kill should land mid-run"
    for name in finished:
        assert len(ClipReader(clips / name)) == 8  # every file present is whole
    subprocess.run(command, check=True, capture_output=True)
    manifest = Manifest.load(out)
    assert len(manifest.clips) == 4
    assert not list(clips.glob(".*"))  # temp files of the killed run were removed
    for name, mtime in finished.items():
        assert (clips / name).stat().st_mtime_ns == mtime  # finished clips were not redone
