"""Temporal measures of a rendered video (ours: the paper scores single frames; a viewer watches
videos). Each takes the result's frames in order, T >= 3.

  landmark_jitter  mean norm of the second difference (acceleration) of the result's 68 image-plane
                   landmarks, per landmark, over the inter-ocular distance, minus the same for the
                   driver: 0 = as smooth as the driver, > 0 = shakier, < 0 = stiller (a
                   result that holds still, like a copied frame)
  flicker          mean absolute change between consecutive frames outside the face (pixels
                   outside both frames' face-mesh hulls grown by FACE_MARGIN), [0, 1] units: the
                   background should stay still
  jumps            frames whose change from the previous frame exceeds JUMP_FACTOR x the median
                   change of the video (and JUMP_FLOOR): sudden cuts, as when a renderer switches
                   to another target frame. Ours: measured on pixels, so it sees any switch,
                   whatever the renderer, but also any abrupt motion of the driver
Frames without a detected face (None meshes) are left out of the landmark and flicker measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from marionette.landmarks.layout import inter_ocular, mesh_to_ibug68

FACE_MARGIN = 0.2  # face hull grown by this fraction about its centre before it is masked out
JUMP_FACTOR = 4.0  # a jump: change above this multiple of the video's median frame-to-frame change
JUMP_FLOOR = 2.0 / 255  # ... and above this mean absolute change ([0, 1] units)


def _acceleration(meshes: Sequence[np.ndarray | None]) -> list[float]:
    """Per triple of consecutive frames with faces: mean landmark acceleration / inter-ocular."""
    out = []
    for a, b, c in zip(meshes, meshes[1:], meshes[2:]):
        if a is None or b is None or c is None:
            continue
        pa, pb, pc = (mesh_to_ibug68(m)[:, :2].astype(np.float64) for m in (a, b, c))  # (68, 2) each
        out.append(float(np.linalg.norm(pa - 2 * pb + pc, axis=-1).mean() / inter_ocular(pb)))
    return out


def landmark_jitter(output_meshes: Sequence[np.ndarray | None], driver_meshes: Sequence[np.ndarray]) -> float | None:
    """Excess landmark acceleration of the result over the driver's (inter-ocular units / frame^2)."""
    output, driver = _acceleration(output_meshes), _acceleration(driver_meshes)
    return float(np.mean(output) - np.mean(driver)) if output and driver else None


def _background(mesh: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) bool: outside the mesh's grown hull (everything when there is no face)."""
    mask = np.ones(shape[:2], bool)
    if mesh is not None:
        points = mesh[:, :2].astype(np.float64)
        centre = points.mean(0)
        grown = centre + (1 + FACE_MARGIN) * (points - centre)
        hull = cv2.convexHull(np.round(grown).astype(np.int32))
        face = np.zeros(shape[:2], np.uint8)
        cv2.fillConvexPoly(face, hull, 1)
        mask = face == 0
    return mask


def flicker(frames: np.ndarray, meshes: Sequence[np.ndarray | None]) -> float | None:
    """(T, S, S, 3) uint8 frames and their meshes -> mean absolute background change, [0, 1] units."""
    changes = []
    for t in range(1, len(frames)):
        if meshes[t - 1] is None or meshes[t] is None:
            continue
        keep = _background(meshes[t - 1], frames.shape[1:]) & _background(meshes[t], frames.shape[1:])
        if keep.any():
            diff = np.abs(frames[t].astype(np.float64) - frames[t - 1].astype(np.float64)).mean(-1)  # (S, S)
            changes.append(float(diff[keep].mean() / 255))
    return float(np.mean(changes)) if changes else None


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (T-1,) mean absolute change from the previous frame, [0, 1] units."""
    x = frames.astype(np.float64)
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3)) / 255


def jumps(frames: np.ndarray) -> int:
    """Number of frames whose change from the previous one is a jump (see the module docstring)."""
    changes = frame_changes(frames)
    threshold = max(JUMP_FACTOR * float(np.median(changes)), JUMP_FLOOR)
    return int((changes > threshold).sum())
