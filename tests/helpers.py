"""Helpers several test modules share (fixtures live in conftest.py, test clips in clips.py)."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import cv2
import numpy as np
import pytest

from marionette.cli import main
from marionette.landmarks.crop import crop_image, head_box

# set to 1 (.ci/run does): a test that would skip for want of what `.[dev]` or .ci/run installs fails instead
REQUIRE_EXTRAS = "MARIONETTE_REQUIRE_EXTRAS"
# modules `.[dev]` does not install on this Python: mediapipe 0.10.21 has no wheels for 3.13 and later
NOT_INSTALLED = {"mediapipe"} if sys.version_info >= (3, 13) else set()


def missing(reason: str) -> NoReturn:
    """Skip (a whole module if called at its top) for want of an extra or of Chromium; fail instead
    when MARIONETTE_REQUIRE_EXTRAS=1."""
    if os.environ.get(REQUIRE_EXTRAS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_EXTRAS}=1: CI installs it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str) -> ModuleType:
    """`module` imported, else missing(reason); modules `.[dev]` does not install here only skip."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if module.split(".")[0] in NOT_INSTALLED:
            pytest.skip(reason, allow_module_level=True)
        missing(f"{reason} ({e})")


# `python -c HELD MODULE NAME N MARKER ARGV...`: `marionette ARGV` whose N-th call of MODULE.NAME creates
# MARKER and then waits for good
HELD = """
import importlib, sys, time
from pathlib import Path

from marionette.cli import main

module, name, n, marker = importlib.import_module(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
function, calls = getattr(module, name), []


def held(*args, **kwargs):
    calls.append(name)
    if len(calls) == n:
        marker.touch()
        time.sleep(3600)
    return function(*args, **kwargs)


setattr(module, name, held)
sys.exit(main(sys.argv[5:]))
"""


def start_held(argv: list, function: str, n: int, marker: Path, **popen) -> subprocess.Popen:
    """Start `marionette ARGV` in another process that stops at its `n`-th call of `function`
    ("package.module.name", the name as that module looks it up); return once it waits there, so
    that a kill lands at a known point of the run, however fast or slow the machine."""
    module, name = function.rsplit(".", 1)
    process = subprocess.Popen([sys.executable, "-c", HELD, module, name, str(n), str(marker), *map(str, argv)], **popen)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"marionette {argv[0]} did not reach call {n} of {function} (exit {process.returncode})")
        time.sleep(0.05)
    return process


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root` (folders as entries too)."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return files


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run the command in-process; assert it exits 2 with one `marionette: error:` line that names
    each of `expected`; return that line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors exit directly
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("marionette: error:")]
    assert code == 2, (code, err)
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    return errors[0]


def hopper_targets(hopper, size: int) -> tuple[np.ndarray, np.ndarray]:
    """K = 2 targets from the `hopper` fixture: (2, size, size, 3) uint8 crops (her head crop and its
    mirror image) and their (2, 478, 3) meshes in crop pixels."""
    image, face = hopper
    box = head_box(face.mesh, 1.8, -0.1)
    crop, mesh = crop_image(image, box, size), box.to_crop(face.mesh, size)
    flipped = np.ascontiguousarray(crop[:, ::-1])
    mirrored = mesh.copy()
    mirrored[:, 0] = size - 1 - mirrored[:, 0]
    return np.stack([crop, flipped]), np.stack([mesh, mirrored])


def inside_ring(shape: tuple[int, int], ring: np.ndarray, erode: bool = False) -> np.ndarray:
    """(H, W) bool: the pixels inside a polygon `ring` (N, 2) in pixels; `erode`: its edge pixels left out."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(ring).astype(np.int32)], 1)
    return (cv2.erode(mask, np.ones((3, 3), np.uint8)) if erode else mask) > 0
