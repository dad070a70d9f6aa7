"""`marionette reenact --virtual-camera`: a stand-in pyvirtualcam (no device exists on CI) receives
exactly the frames the same run writes, paced at a file driver's rate, unpaced behind a webcam; a
missing backend is one line."""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from marionette.cli import main
from marionette.media import iter_video, list_image_sequence, load_image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGET = str(ASSETS / "faces" / "02_grace_hopper.jpg")
DRIVER = str(ASSETS / "videos" / "grid_lbax4n.mp4")  # 25 frames/s
SETTINGS = ["--set", "size=128", "--set", "paste_back=false", "--set", "max_frames=6"]


class StandInCamera:
    """Records what pyvirtualcam.Camera would be given."""

    opened: list[StandInCamera] = []

    def __init__(self, width: int, height: int, fps: float, device: str | None = None, **kw: object) -> None:
        self.width, self.height, self.fps, self.device = width, height, fps, device
        self.frames: list[np.ndarray] = []
        self.waits, self.closed = 0, False
        StandInCamera.opened.append(self)

    def send(self, frame: np.ndarray) -> None:
        assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8
        self.frames.append(frame.copy())

    def sleep_until_next_frame(self) -> None:
        self.waits += 1

    def close(self) -> None:
        self.closed = True


def _stand_in(monkeypatch: pytest.MonkeyPatch, camera: type) -> None:
    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.SimpleNamespace(Camera=camera))


def test_frames_sent_equal_the_frames_written_by_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, StandInCamera)
    StandInCamera.opened = []
    out = tmp_path / "frames"  # PNG frames: lossless, so "equal" means equal
    assert main(["reenact", "--target", TARGET, "--driver", DRIVER, "-o", str(out), "--quiet",
                 "--virtual-camera", "--camera-device", "/dev/video7", *SETTINGS]) == 0
    [camera] = StandInCamera.opened
    written = [load_image(p) for p in list_image_sequence(out)]
    assert len(written) == len(camera.frames) == 6
    assert all(np.array_equal(a, b) for a, b in zip(camera.frames, written))
    assert (camera.width, camera.height, camera.fps, camera.device) == (128, 128, 25.0, "/dev/video7")
    assert camera.waits == 6 and camera.closed  # paced after every frame; closed at the end


class StandInWebcam:
    """cv2.VideoCapture serving the bundled clip's first frames (BGR), then Ctrl-C, as a user ends a session."""

    def __init__(self, index: int) -> None:
        self.frames = [f[..., ::-1].copy() for f in itertools.islice(iter_video(DRIVER), 5)]

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        if not self.frames:
            raise KeyboardInterrupt
        return True, self.frames.pop(0)

    def release(self) -> None:
        pass


def test_webcam_driver_is_not_paced_and_its_frames_reach_the_camera(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, StandInCamera)
    StandInCamera.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", StandInWebcam)
    out = tmp_path / "frames"
    assert main(["reenact", "--target", TARGET, "--driver", "0", "-o", str(out), "--quiet", "--virtual-camera",
                 "--set", "size=128", "--set", "paste_back=false"]) == 0
    [camera] = StandInCamera.opened
    written = [load_image(p) for p in list_image_sequence(out)]
    assert len(written) == len(camera.frames) == 5 and all(map(np.array_equal, camera.frames, written))
    assert camera.waits == 0 and camera.closed  # the webcam is the clock: no waiting on top of it


def test_no_backend_or_no_pyvirtualcam_is_one_line_and_no_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class NoDevice:  # what pyvirtualcam raises on Linux without v4l2loopback (its message, verbatim)
        def __init__(self, *args: object, **kw: object) -> None:
            raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. "
                               "Did you run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")

    cases = [(NoDevice, "marionette: error: virtual camera: no backend available ('v4l2loopback' backend: No v4l2 "
                        "loopback device found at /dev/video[0-99]. Did you run 'modprobe v4l2loopback'?"),
             (None, 'marionette: error: --virtual-camera needs pyvirtualcam: pip install "marionette[live]"')]
    for camera, message in cases:
        if camera is None:
            monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # not installed: import fails
        else:
            _stand_in(monkeypatch, camera)
        out = tmp_path / "live.mp4"
        assert main(["reenact", "--target", TARGET, "--driver", DRIVER, "-o", str(out), "--quiet",
                     "--virtual-camera", *SETTINGS]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
        assert not out.exists() and not list(tmp_path.iterdir())
