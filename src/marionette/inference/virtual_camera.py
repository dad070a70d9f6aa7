"""Live output to a virtual camera (ours): the animated face as a webcam that video-call software
can pick. pyvirtualcam drives the platform's device: v4l2loopback on Linux, OBS's virtual camera
on macOS and Windows. An optional extra: `pip install "marionette[live]"`."""

from __future__ import annotations

import numpy as np

from marionette.errors import InputError


class VirtualCamera:
    """A frame sink for `ReenactPipeline.run(on_frame=...)`. The device opens on the first frame
    (its size is the output's). `paced` (a driver file): after each frame it waits until the next
    one is due at `fps`, so frames leave at the file's rate, never faster (a slower pipeline sends
    as fast as it can). Unpaced (a webcam): the camera is the clock; waiting would only let its
    frames queue up and add delay."""

    def __init__(self, fps: float, device: str | None = None, paced: bool = True):
        try:
            import pyvirtualcam
        except ImportError:
            raise InputError('--virtual-camera needs pyvirtualcam: pip install "marionette[live]"') from None
        self._pyvirtualcam = pyvirtualcam
        self.fps = fps  # frames per second announced to the device and kept to
        self.device = device  # a device name (e.g. /dev/video4), None: the backend's first free one
        self.paced = paced  # wait for each frame's time at `fps`
        self.camera = None
        self.sent = 0  # frames sent so far

    def __call__(self, frame: np.ndarray) -> None:
        """Send one (H, W, 3) uint8 RGB frame (then, paced, wait for the next frame's time)."""
        if self.camera is None:
            height, width = frame.shape[:2]
            try:
                self.camera = self._pyvirtualcam.Camera(width=width, height=height, fps=self.fps,
                                                        device=self.device)
            except RuntimeError as e:  # how pyvirtualcam reports a missing backend or device
                raise InputError(f"virtual camera: no backend available ({' '.join(str(e).split())})") from None
        self.camera.send(frame)
        self.sent += 1
        if self.paced:
            self.camera.sleep_until_next_frame()

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
