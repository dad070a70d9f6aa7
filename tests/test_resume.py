"""kill -9 during `marionette preprocess`, then the same command again: finished clips are kept,
no half-written file is left or listed, and the dataset completes. The kill lands at a known point,
whatever the machine's speed: the first clip stored, the second tracked but not yet written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import start_held

from marionette.data.manifest import Manifest
from marionette.data.store import ClipReader

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "videos"


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_then_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "marionette.cli", "preprocess", str(ASSETS), str(out),
               "--workers", "1", "--quiet", "--set", "size=64", "--set", "max_frames=8"]
    proc = start_held(command[3:], "marionette.data.store.write_safetensors", 2, tmp_path / "held",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: no clean-up code runs anywhere
    proc.wait()
    clips = out / "clips"
    finished = {p.name: p.stat().st_mtime_ns for p in clips.glob("[!.]*.safetensors")}
    assert len(finished) == 1
    for name in finished:
        assert len(ClipReader(clips / name)) == 8  # every file present is whole
    subprocess.run(command, check=True, capture_output=True)
    manifest = Manifest.load(out)
    assert len(manifest.clips) == 4
    assert not list(clips.glob(".*"))  # temp files of the killed run were removed
    for name, mtime in finished.items():
        assert (clips / name).stat().st_mtime_ns == mtime  # finished clips were not redone
