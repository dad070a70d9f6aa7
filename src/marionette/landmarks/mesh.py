"""Face detection and 3D landmarks with MediaPipe face mesh (478 points), in image or video mode.

method.md (Preprocessing): the paper uses a 3D landmark detector; ours is MediaPipe face mesh with
iris refinement (478 points). Points are returned in image pixels: x right, y down, z in the same
pixel scale as x, smaller z nearer the camera (MediaPipe's convention). Two backends give the same
points: "mediapipe" runs the wheel's C++ graph (the optional `mediapipe` extra; about 4x faster on
the CPU), "torch" the same models and geometry ported to torch (torch_mesh.py, docs/face_mesh.md),
on any torch device. `detect_batch` takes a clip's frames a chunk at a time (MESH_BATCH).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from marionette.config import SettingError
from marionette.errors import InputError
from marionette.landmarks.layout import Face

T = TypeVar("T")
log = logging.getLogger(__name__)


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
        ctypes.CDLL(None).fflush(None)  # what C++ buffered goes to /dev/null too, not to the restored stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


MESH_BACKENDS = ("auto", "mediapipe", "torch")  # auto: mediapipe when it is installed, else torch
MESH_BACKEND_ENV = "MARIONETTE_FACE_MESH"  # the backend of every FaceMesh not given one (unset: auto)
MESH_BATCH = 16  # frames of a video per detect_batch call (preprocess, a file driver's tracking, the bench)


def mesh_backend(backend: str | None = None) -> str:
    """The backend a FaceMesh runs, "mediapipe" or "torch": `backend`, else the one MESH_BACKEND_ENV
    names, else auto. A name not in MESH_BACKENDS, or mediapipe when it cannot be imported, is a
    one-line InputError."""
    name = backend or os.environ.get(MESH_BACKEND_ENV) or "auto"
    if name not in MESH_BACKENDS:
        raise SettingError(f"{'backend' if backend else MESH_BACKEND_ENV}={name}: "
                           f"must be one of {', '.join(MESH_BACKENDS)}")
    if name == "torch":
        return name
    try:
        import mediapipe  # noqa: F401  (loading it costs ~1 s, once a process; FaceMesh needs it next)
    except ImportError:
        if name == "auto":
            return "torch"
        raise InputError("face mesh backend mediapipe: the mediapipe package cannot be imported; install "
                         "marionette's extra (pip install -e \".[mediapipe]\", Python 3.10 to 3.12) "
                         f"or use torch ({MESH_BACKEND_ENV}=torch)") from None
    return "mediapipe"


def mesh_placement(backend: str | None = None, device: str = "cpu") -> tuple[str, str]:
    """(backend, device) a FaceMesh runs on: `backend` as `mesh_backend` takes it, `device` a device
    setting (auto, cpu, cuda, cuda:N, mps) resolved by marionette.devices. MediaPipe runs on the CPU
    only: a GPU (named, or found by auto) picks the torch backend unless mediapipe is named (argument
    or MESH_BACKEND_ENV), which then runs on the CPU (one warning line where the GPU was named).
    Resolve once and pass the result on: a device asked for but absent warns once."""
    where = "cpu"
    if device != "cpu":
        from marionette.devices import resolve_device  # torch: only where a device other than the CPU is asked for

        where = str(resolve_device(device))
    if where != "cpu" and (backend or os.environ.get(MESH_BACKEND_ENV) or "auto") == "auto":
        return "torch", where
    chosen = mesh_backend(backend)
    if chosen == "mediapipe" and where != "cpu":
        if device != "auto":
            log.warning(f"device={device}: the mediapipe face mesh runs on the CPU ({MESH_BACKEND_ENV}=torch runs on {where})")
        where = "cpu"
    return chosen, where


def frame_chunks(items: Iterable[T], frame: Callable[[T], np.ndarray] = lambda item: item,
                 size: int = MESH_BATCH) -> Iterator[list[T]]:
    """Consecutive runs of at most `size` items whose frames (`frame(item)`) have one shape: what one
    `detect_batch` call takes. A run is handed on as soon as it is full, or when a frame of another
    shape (an image sequence's) or the end comes."""
    chunk: list[T] = []
    for item in items:
        if chunk and frame(item).shape != frame(chunk[0]).shape:
            yield chunk
            chunk = []
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class FaceMesh:
    """MediaPipe's face mesh. `video=True` tracks across consecutive frames (faster, steadier);
    `backend`: one of MESH_BACKENDS (None: `mesh_backend()`'s choice); `device`: a device setting,
    where the torch backend runs (mediapipe runs on the CPU: a GPU picks torch unless mediapipe is named)."""

    def __init__(self, video: bool = False, max_faces: int = 4, min_confidence: float = 0.5,
                 backend: str | None = None, device: str = "cpu"):
        self.backend, self.device = mesh_placement(backend, device)
        self._torch = None
        if self.backend == "torch":
            from marionette.landmarks.torch_mesh import TorchFaceMesh

            self._torch = TorchFaceMesh(video, max_faces, min_confidence, device=self.device)
            return
        import mediapipe as mp

        with _native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not video,
                max_num_faces=max_faces,
                refine_landmarks=True,  # 478 points: the 468-point mesh plus 10 iris points
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # start the graph now, its threads' chatter muted
        self._quiet = 2  # calls with a face still to come before MediaPipe has loaded every model it logs from

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first."""
        if self._torch is not None:
            return self._torch.detect(image)
        h, w = image.shape[:2]
        if not self._quiet:
            result = self._mesh.process(np.ascontiguousarray(image))
        else:  # the first calls with a face (detection, then tracking) load models, which log from C++
            with _native_stderr_silenced():
                result = self._mesh.process(np.ascontiguousarray(image))
            self._quiet -= bool(result.multi_face_landmarks)
        faces = []
        for landmarks in result.multi_face_landmarks or ():
            xyz = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)  # (478, 3)
            # pixel centres at integer coordinates (OpenCV), z in the pixel scale of x
            faces.append(Face(xyz * np.array([w, h, w], np.float32) - np.array([0.5, 0.5, 0], np.float32)))
        return sorted(faces, key=lambda f: -f.width)

    def detect_batch(self, frames: np.ndarray) -> list[list[Face]]:
        """Faces in each of (B, H, W, 3) uint8 RGB frames, largest first, as `detect` frame by frame
        finds them (video mode: consecutive frames). Torch runs the detector on the B frames in one
        batch (TorchFaceMesh.detect_batch); MediaPipe's graph takes one frame a call."""
        if self._torch is not None:
            return self._torch.detect_batch(frames)
        return [self.detect(frame) for frame in frames]

    def close(self) -> None:
        (self._torch or self._mesh).close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LARGEST = -1  # face index meaning "the largest face" (the default everywhere)


def pick_face(faces: list[Face], index: int) -> Face | None:
    """The face numbered `index` from the left (0 = leftmost), or the largest for LARGEST; None if
    there are not that many. `faces` as `detect` returns them (largest first)."""
    if index == LARGEST:
        return faces[0] if faces else None
    ordered = sorted(faces, key=lambda f: (f.box[0] + f.box[2]) / 2)
    return ordered[index] if index < len(ordered) else None


def _window_starts(length: int, side: int) -> list[int]:
    """Starts of windows of `side` pixels covering `length`, overlapping by half a window."""
    if length <= side:
        return [0]
    starts = list(range(0, length - side, side // 2))
    return starts + [length - side]


def _overlap(a: Face, b: Face) -> float:
    """Intersection over union of two faces' boxes."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def detect_all(image: np.ndarray, max_faces: int = 16) -> list[Face]:
    """Every face of a still image, largest first. MediaPipe's detector sees a downscaled copy of
    the whole image and misses faces of a wide group photo, so (ours) square windows of the image's
    shorter side, overlapping by half, are searched too; a face found twice is kept once (the
    whole-image find first, then the find nearest its window's centre)."""
    h, w = image.shape[:2]
    side = min(h, w)
    found: list[tuple[float, Face]] = []  # (rank: lower is kept first, face)
    with FaceMesh(video=False, max_faces=max_faces) as mesh:
        found += [(-1.0, face) for face in mesh.detect(image)]
        for y0 in _window_starts(h, side):
            for x0 in _window_starts(w, side):
                if (h, w) == (side, side):
                    continue
                window = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
                for face in mesh.detect(window):
                    moved = Face(face.mesh + np.array([x0, y0, 0], np.float32))
                    cx, cy = (moved.box[0] + moved.box[2]) / 2, (moved.box[1] + moved.box[3]) / 2
                    found.append((float(np.hypot(cx - x0 - side / 2, cy - y0 - side / 2)), moved))
    kept: list[Face] = []
    for _, face in sorted(found, key=lambda item: item[0]):
        if all(_overlap(face, other) < 0.3 for other in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: -f.width)[:max_faces]


def detect_face(image: np.ndarray, source: str | Path, face_index: int = LARGEST) -> Face:
    """One face of a still image: the largest, or the face_index-th from the left (0 = leftmost);
    InputError naming `source` if absent."""
    return choose_face(detect_all(image), source, face_index)


def choose_face(faces: list[Face], source: str | Path, face_index: int) -> Face:
    """`pick_face` of faces found in `source`, or an InputError naming it when there is none."""
    if not faces:
        raise InputError(f"{source}: no face found")
    face = pick_face(faces, face_index)
    if face is None:
        raise InputError(f"{source}: face {face_index} requested but only {len(faces)} found "
                         "(numbered from 0, left to right; `marionette landmarks IMAGE --json` lists them)")
    return face
