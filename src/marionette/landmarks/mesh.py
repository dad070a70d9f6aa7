"""Face detection and 3D landmarks with MediaPipe face mesh (478 points), in image or video mode.

method.md (Preprocessing): the paper uses a 3D landmark detector; ours is MediaPipe face mesh with
iris refinement (478 points). Points are returned in image pixels: x right, y down, z in the same
pixel scale as x, smaller z nearer the camera (MediaPipe's convention).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marionette.errors import InputError
from marionette.landmarks.layout import mesh_to_ibug68


@dataclass(frozen=True)
class Face:
    mesh: np.ndarray  # (478, 3) float32, image pixels

    @property
    def ibug68(self) -> np.ndarray:
        """(68, 3) iBUG-layout points taken from the mesh."""
        return mesh_to_ibug68(self.mesh)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Tight (x0, y0, x1, y1) box of the mesh, in pixels."""
        x0, y0 = self.mesh[:, :2].min(0)
        x1, y1 = self.mesh[:, :2].max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def width(self) -> float:
        """Face width in pixels (mesh box width)."""
        x0, _, x1, _ = self.box
        return x1 - x0


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ start-up chatter (TFLite, absl) bypasses Python logging: mute fd 2 meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceMesh:
    """MediaPipe face mesh. `video=True` tracks across consecutive frames (faster, steadier)."""

    def __init__(self, video: bool = False, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp  # imported here: loading it costs ~1 s and most commands need it once

        with _native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not video,
                max_num_faces=max_faces,
                refine_landmarks=True,  # 478 points: the 468-point mesh plus 10 iris points
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
        self._started = False

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first."""
        h, w = image.shape[:2]
        if self._started:
            result = self._mesh.process(np.ascontiguousarray(image))
        else:  # calls up to the first face found load the models, which log from C++
            with _native_stderr_silenced():
                result = self._mesh.process(np.ascontiguousarray(image))
            self._started = bool(result.multi_face_landmarks)
        faces = []
        for landmarks in result.multi_face_landmarks or ():
            xyz = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)  # (478, 3)
            # pixel centres at integer coordinates (OpenCV), z in the pixel scale of x
            faces.append(Face(xyz * np.array([w, h, w], np.float32) - np.array([0.5, 0.5, 0], np.float32)))
        return sorted(faces, key=lambda f: -f.width)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_face(image: np.ndarray, source: str | Path, face_index: int = 0) -> Face:
    """The face_index-th largest face of one still image; InputError naming `source` if absent."""
    with FaceMesh(video=False, max_faces=max(4, face_index + 1)) as mesh:
        faces = mesh.detect(image)
    if not faces:
        raise InputError(f"{source}: no face found")
    if face_index >= len(faces):
        raise InputError(f"{source}: face {face_index} requested but only {len(faces)} found")
    return faces[face_index]
