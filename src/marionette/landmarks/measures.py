"""How open a face's mouth and eyes are, measured on its 478-point face mesh (x, y; z on request).

ours: the two scale-free measures the renderers, the driving and the hard-case checks share:
- `lip_gap`: the inner-lip gap (vertices 13, 14) over the inner-lip corners' distance (78, 308);
  closed < 0.03, fully open from about 0.08 (in the image; `depth=True` in 3D, for turned faces);
- `eye_openness`: the 6-point eye aspect ratio (Soukupová & Čech 2016), (|p2-p6| + |p3-p5|) /
  (2 |p1-p4|), averaged over both eyes; MediaPipe reads 0.2-0.45 for open eyes and rarely below
  0.03 for shut ones; `seen_openness` over the eyes a turned head still shows.
"""

from __future__ import annotations

import numpy as np

LIP_GAP = (13, 14, 78, 308)  # middle of the upper and lower inner lip, the inner-lip corners
EYES = ((33, 160, 158, 133, 153, 144), (263, 387, 385, 362, 380, 373))  # p1..p6 of the subject's right, left eye
CLOSED_EYE = 0.1  # eye openness below which an eye counts as closed (a blink)
SEEN_EYE = 0.6  # an eye drawn under this share of the other's width is turned away (`seen_eyes`)
CLOSED_MOUTH = 0.03  # lip gap below which a mouth counts as closed
WIDE_MOUTH = 0.3  # lip gap above which a mouth counts as wide open (teeth and the mouth's inside show)


def _dist(mesh: np.ndarray, a: int, b: int, dims: int = 2) -> np.ndarray:
    return np.linalg.norm(mesh[..., a, :dims].astype(np.float64) - mesh[..., b, :dims], axis=-1)


def lip_gap(mesh: np.ndarray, depth: bool = False) -> np.ndarray:
    """(..., 478, 2+) meshes -> (...,) inner-lip gap as a share of the mouth's inner width; `depth`:
    measured in 3D on (..., 478, 3) meshes whose z is in x's units (a face mesh's), so that a turned
    face's foreshortened mouth width does not inflate it."""
    upper, lower, left, right = LIP_GAP
    dims = 3 if depth else 2
    return _dist(mesh, upper, lower, dims) / np.maximum(_dist(mesh, left, right, dims), 1e-6)


def eye_ratios(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 2+) meshes -> (..., 2) eye aspect ratio of the subject's right and left eye."""
    return np.stack([(_dist(mesh, p2, p6) + _dist(mesh, p3, p5)) / np.maximum(2 * _dist(mesh, p1, p4), 1e-6)
                     for p1, p2, p3, p4, p5, p6 in EYES], -1)


def eye_openness(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 2+) meshes -> (...,) eye aspect ratio, the mean of both eyes."""
    return eye_ratios(mesh).mean(-1)


def seen_eyes(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 2+) meshes -> (..., 2) whether each eye (the subject's right, left) is drawn at least
    SEEN_EYE times as wide as the other in the image: a head turned well aside hides its far eye, whose
    openness the face mesh only guesses (a profile's far eye reads 0.3-1.2 whatever it does)."""
    widths = np.stack([_dist(mesh, p1, p4) for p1, _, _, p4, _, _ in EYES], -1)  # (..., 2)
    return widths >= SEEN_EYE * widths.max(-1, keepdims=True)


def seen_openness(mesh: np.ndarray, seen_in: np.ndarray | None = None) -> np.ndarray:
    """(..., 478, 2+) meshes -> (...,) eye aspect ratio, the mean of the eyes that `seen_in` (same shape;
    default the meshes themselves) shows (`seen_eyes`)."""
    seen = seen_eyes(mesh if seen_in is None else seen_in)
    return (eye_ratios(mesh) * seen).sum(-1) / seen.sum(-1)


def hard_frames(mesh: np.ndarray) -> np.ndarray:
    """(N, 478, 2+) a clip's meshes -> indices of its frames with closed eyes or a wide-open mouth
    (what a warp of other frames cannot draw)."""
    return np.flatnonzero((eye_openness(mesh) < CLOSED_EYE) | (lip_gap(mesh) > WIDE_MOUTH))
