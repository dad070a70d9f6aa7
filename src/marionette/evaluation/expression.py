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

Eyes (ours): `eye_ratio` is the mean eye aspect ratio of both eyes (blinks: open eyes ~0.25-0.45,
closed < 0.14); `gaze_offset` is where each iris centre (face mesh points 468 and 473, refined
iris landmarks) sits in its eye: along the corner-to-corner axis (0 = the middle, -0.5/+0.5 = the
image-left/right corner) and across it (towards the image bottom positive), in eye widths,
averaged over both eyes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marionette.config import Settings, between, setting
from marionette.landmarks.layout import LEFT_EYE, RIGHT_EYE, mesh_to_ibug68

INDICATORS = ("mouth_open", "smile", "eye_closed_r", "eye_closed_l", "brows_raised")


@dataclass(frozen=True)
class ExpressionConfig(Settings):
    mouth_open: float = setting(0.08, "inner-lip gap / inter-ocular above which the mouth counts as open",
                                between(0, 1))
    smile_rise: float = setting(0.06, "mouth width above the face's baseline median by this fraction = smile",
                                between(0, 1))
    eye_closed: float = setting(0.14, "eye aspect ratio below which an eye counts as closed", between(0, 1))
    brow_rise: float = setting(0.05, "brow-eye distance above the face's baseline median by this fraction = raised",
                               between(0, 1))


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


IRIS_CENTRES = (468, 473)  # face mesh iris-centre points (refined landmarks)


def eye_ratio(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 3) face meshes -> (...,) eye aspect ratio averaged over both eyes."""
    m = measures(mesh)
    return (m.eye_ratio_r + m.eye_ratio_l) / 2


def gaze_offset(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 3) face meshes -> (..., 2) iris offset within the eye (along, across), eye widths."""
    p = mesh_to_ibug68(mesh.astype(np.float64))[..., :2]  # (..., 68, 2)
    corners = np.stack([p[..., [36, 42], :], p[..., [39, 45], :]], -2)  # (..., eye, corner (image left, right), 2)
    irises = mesh[..., list(IRIS_CENTRES), :2].astype(np.float64)  # (..., 2, 2)
    centres = corners.mean(-2)  # (..., 2 eyes, 2)
    # each iris to its nearest eye (the mesh's iris order need not match the 68-point eye order)
    swap = (np.linalg.norm(irises[..., 0, :] - centres[..., 1, :], axis=-1)
            < np.linalg.norm(irises[..., 0, :] - centres[..., 0, :], axis=-1))  # (...,)
    irises = np.where(swap[..., None, None], irises[..., ::-1, :], irises)
    axis = corners[..., 1, :] - corners[..., 0, :]  # (..., 2 eyes, 2)
    width2 = (axis**2).sum(-1)  # (..., 2)
    normal = np.stack([-axis[..., 1], axis[..., 0]], -1)  # axis turned 90 degrees: towards the image bottom
    rel = irises - centres  # (..., 2, 2)
    along = (rel * axis).sum(-1) / width2
    across = (rel * normal).sum(-1) / width2
    return np.stack([along, across], -1).mean(-2)  # (..., 2)


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
