"""Expression agreement in the spirit of AUCON (paper §Experiments: agreement of facial action
units between driver and result, measured there with OpenFace).

ours (offline stand-in): binarized expression indicators computed from 3D landmarks, and the
shipped landmark transformer's expression coefficients. Indicators use 3D distances between
68-point landmarks divided by the 3D inter-ocular distance, so they do not depend on head pose or
crop scale:
  mouth_open   inner-lip gap (points 62-66) / inter-ocular > mouth_open
  smile        mouth width (48-54) / inter-ocular, over the face's baseline median, > 1 + smile_rise
  eye_closed_r eye aspect ratio of the subject's right eye < eye_closed (Soukupová & Čech 2016)
  eye_closed_l the same for the left eye
  brows_raised brow-to-eye distance / inter-ocular, over the face's baseline median, > 1 + brow_rise
The baseline of a face (for smile and brows) is the median over a set of its frames: the driver's
whole clip for the driver, the K targets for a result (the face the result should look like).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marionette.config import Settings, between
from marionette.landmarks.layout import LEFT_EYE, RIGHT_EYE, mesh_to_ibug68

INDICATORS = ("mouth_open", "smile", "eye_closed_r", "eye_closed_l", "brows_raised")


@dataclass(frozen=True)
class ExpressionConfig(Settings):
    mouth_open: float = 0.08  # inner-lip gap / inter-ocular above which the mouth counts as open
    smile_rise: float = 0.06  # mouth width above the face's baseline median by this fraction = smile
    eye_closed: float = 0.14  # eye aspect ratio below which an eye counts as closed
    brow_rise: float = 0.05  # brow-eye distance above the face's baseline median by this fraction = raised

    RULES = dict(mouth_open=between(0, 1), smile_rise=between(0, 1), eye_closed=between(0, 1), brow_rise=between(0, 1))


@dataclass(frozen=True)
class Measures:
    """Continuous expression measures of landmark sets (all (...,), scale-free)."""

    mouth_gap: np.ndarray  # inner-lip gap / inter-ocular
    mouth_width: np.ndarray  # mouth-corner distance / inter-ocular
    eye_ratio_r: np.ndarray  # eye aspect ratio, subject's right eye
    eye_ratio_l: np.ndarray  # eye aspect ratio, subject's left eye
    brow_height: np.ndarray  # mean brow-to-eye-centre distance / inter-ocular


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def _eye_ratio(eye: np.ndarray) -> np.ndarray:
    """(..., 6, 3) eye contour (iBUG order) -> (...,) (|p1-p5| + |p2-p4|) / (2 |p0-p3|)."""
    return (_dist(eye[..., 1, :], eye[..., 5, :]) + _dist(eye[..., 2, :], eye[..., 4, :])) / (
        2 * _dist(eye[..., 0, :], eye[..., 3, :]))


def measures(mesh: np.ndarray) -> Measures:
    """(..., 478, 3) face meshes -> their expression measures."""
    p = mesh_to_ibug68(mesh.astype(np.float64))  # (..., 68, 3)
    eye_r, eye_l = p[..., RIGHT_EYE, :], p[..., LEFT_EYE, :]  # (..., 6, 3)
    iod = _dist(eye_r.mean(-2), eye_l.mean(-2))  # (...,) 3D inter-ocular distance
    brows = (_dist(p[..., 17:22, :].mean(-2), eye_r.mean(-2)) + _dist(p[..., 22:27, :].mean(-2), eye_l.mean(-2))) / 2
    return Measures(
        mouth_gap=_dist(p[..., 62, :], p[..., 66, :]) / iod,
        mouth_width=_dist(p[..., 48, :], p[..., 54, :]) / iod,
        eye_ratio_r=_eye_ratio(eye_r),
        eye_ratio_l=_eye_ratio(eye_l),
        brow_height=brows / iod,
    )


def indicators(mesh: np.ndarray, baseline: np.ndarray, config: ExpressionConfig) -> np.ndarray:
    """(478, 3) mesh and (N, 478, 3) frames of the same face (its baseline) -> (5,) bool, in
    INDICATORS order."""
    now, base = measures(mesh), measures(baseline)
    return np.array([
        now.mouth_gap > config.mouth_open,
        now.mouth_width > (1 + config.smile_rise) * np.median(base.mouth_width),
        now.eye_ratio_r < config.eye_closed,
        now.eye_ratio_l < config.eye_closed,
        now.brow_height > (1 + config.brow_rise) * np.median(base.brow_height),
    ])
