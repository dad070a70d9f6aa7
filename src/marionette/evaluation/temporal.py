"""Temporal measures of a rendered video (ours: the paper scores single frames; a viewer watches
videos). Each takes the result's frames in order; landmark measures compare the result's
re-detected landmarks with the driven landmarks (what the renderer was given, frame by frame).

Motion fidelity (does the result move as it was asked to?):
  motion_correlation  the correlation of the result's landmark motion with the driven landmarks'
                      motion: both 68-point image-plane trajectories centred on their mean over the
                      video, r = <o, d> / (|o| |d|) over every frame and coordinate; 1 = moves as
                      asked, 0 = a frozen face (no motion: 0 by definition), < 0 = against it
  motion_error        |o - d| / |d| with the same centred trajectories: 0 = exact, 1 = as far from
                      the asked motion as a frozen face, > 1 = wrong motion (e.g. shuffled frames)
Stillness (does it add motion nobody asked for?):
  landmark_jitter  the landmark acceleration the result adds to the driven trajectory's own:
                   sqrt(max(0, E_out - E_driven)), E = mean squared second difference of the
                   landmarks (inter-ocular units), i.e. the RMS of an independent shake added on
                   top of the asked motion; 0 = no added shake, also for a frozen face, so it is
                   read beside motion fidelity
  flicker          mean absolute change between consecutive frames outside the face (pixels
                   outside both frames' face-mesh hulls grown by FACE_MARGIN), [0, 1] units: the
                   background should stay still
  jumps            frames whose change from the previous frame exceeds JUMP_FACTOR x the median
                   change of the video (and JUMP_FLOOR): sudden cuts, as when a renderer switches
                   to another target frame. Ours: measured on pixels, so it sees any switch,
                   whatever the renderer, but also any abrupt motion of the driver
Landmark units: the driven face's inter-ocular distance (its median over the video), so figures do
not depend on the crop size. Frames without a detected face (None meshes) are left out of the
landmark and flicker measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from marionette.landmarks.layout import inter_ocular, mesh_to_ibug68

FACE_MARGIN = 0.2  # face hull grown by this fraction about its centre before it is masked out
JUMP_FACTOR = 4.0  # a jump: change above this multiple of the video's median frame-to-frame change
JUMP_FLOOR = 2.0 / 255  # ... and above this mean absolute change ([0, 1] units)
MIN_FRAMES = 3  # frames with a face a landmark measure needs
MIN_MOTION = 1e-3  # RMS driven motion (inter-ocular units) below which motion fidelity is not measured


def _trajectories(output_meshes: Sequence[np.ndarray | None], driven_meshes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(T, 68, 2) output and driven image-plane landmarks over the frames where the output has a
    face, in the driven face's inter-ocular units, and the (T,) indices of those frames; None
    when fewer than MIN_FRAMES have one."""
    kept = np.array([t for t, m in enumerate(output_meshes) if m is not None], np.int64)  # (T,)
    if len(kept) < MIN_FRAMES:
        return None
    driven = mesh_to_ibug68(np.asarray(driven_meshes, np.float64)[kept])[..., :2]  # (T, 68, 2)
    output = mesh_to_ibug68(np.stack([output_meshes[t] for t in kept]).astype(np.float64))[..., :2]  # (T, 68, 2)
    unit = float(np.median(inter_ocular(driven)))
    return output / unit, driven / unit, kept


def _motions(output_meshes: Sequence[np.ndarray | None], driven_meshes: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """The centred (T, 136) trajectories o, d of the module docstring; None when not measurable
    (too few faces, or a driven face that hardly moves)."""
    found = _trajectories(output_meshes, driven_meshes)
    if found is None:
        return None
    output, driven, _ = found
    # from the first frame, then centred: exactly 0 for a face that does not move
    o, d = ((x - x[0]).reshape(len(x), -1) for x in (output, driven))  # (T, 136) each
    o, d = o - o.mean(0), d - d.mean(0)
    return (o, d) if np.sqrt(np.mean(d**2)) >= MIN_MOTION else None


def motion_correlation(output_meshes: Sequence[np.ndarray | None], driven_meshes: np.ndarray) -> float | None:
    """Correlation of the result's landmark motion with the driven motion (module docstring)."""
    found = _motions(output_meshes, driven_meshes)
    if found is None:
        return None
    o, d = found
    norm = float(np.linalg.norm(o) * np.linalg.norm(d))
    return float((o * d).sum() / norm) if norm > 0 else 0.0  # a face that does not move: no correlation


def motion_error(output_meshes: Sequence[np.ndarray | None], driven_meshes: np.ndarray) -> float | None:
    """Error of the result's landmark motion relative to the driven motion's size (module docstring)."""
    found = _motions(output_meshes, driven_meshes)
    if found is None:
        return None
    o, d = found
    return float(np.linalg.norm(o - d) / np.linalg.norm(d))


def _energy(points: np.ndarray, triples: np.ndarray) -> float:
    """Mean squared second difference of (T, 68, 2) landmarks over the (N,) frame triples
    (t-1, t, t+1) starting at positions `triples` of `points`."""
    acceleration = points[triples] - 2 * points[triples + 1] + points[triples + 2]  # (N, 68, 2)
    return float(np.mean(np.sum(acceleration**2, axis=-1)))


def landmark_jitter(output_meshes: Sequence[np.ndarray | None], driven_meshes: np.ndarray) -> float | None:
    """Landmark acceleration added to the driven trajectory's own (module docstring), inter-ocular
    units per frame^2; over the triples of consecutive frames in which the output has a face."""
    found = _trajectories(output_meshes, driven_meshes)
    if found is None:
        return None
    output, driven, kept = found
    triples = np.flatnonzero((kept[2:] - kept[:-2]) == 2)  # positions of three consecutive frames
    if not len(triples):
        return None
    return float(np.sqrt(max(0.0, _energy(output, triples) - _energy(driven, triples))))


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
