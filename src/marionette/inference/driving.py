"""Driving: the driver's face mesh -> the mesh a renderer draws on the targets. Shared by the
reenactment pipeline (streams) and the evaluator (dataset episodes), so both drive the same way.

With the landmark transformer (paper): the driver's expression and pose on the targets' face
shape, in absolute or relative mode. Without it (ours, raw landmarks, the driver's face shape
included): relative mode adds the driver's displacement since its reference face, measured in its
first frame's crop, to the first target's mesh; absolute mode takes the driver's mesh in that crop.
Mode auto (ours): relative for a moving driver, absolute for a single still image (relative to its
only frame, a still would drive no motion at all).

Relative mode's reference (ours): motion is measured from the driver's *neutral* face, not from
whatever its first frame shows (most clips start mid-word or turned). Over a window of its frames
(a file's first seconds, a webcam's so far), the neutral expression is the mean of the frames with
open eyes and the most closed mouth, and the neutral pose the mean of the frames nearest to frontal.
A neutral face's lips meet: where even the driver's most closed mouth in the window is open (a
singer's, a mouth breather's), the reference's lips are brought together by that much (`closed_lips`)
so that the output carries that opening too. `reference=first` keeps the first frame as it is, as before.

Lids and lips (ours): the driven lids shut when the driver's eye nearly does (`shut_lids`; an eye the
driver turns away, whose openness the face mesh guesses, as the one it shows), the driven
lips meet when the driver's do where the output takes the driver's expression (`shut_lips`), and no
lower lid or lip ever rises above its upper one (`uncrossed`, in landmarks/openings.py, which the
landmark transformer also applies to the rest face it adds the driver's change to).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from marionette.inference.config import DRIVING_MODES, REFERENCES
from marionette.landmark_transformer.model import DriverStart, LandmarkTransformer, TargetFace
from marionette.landmarks.crop import CropBox
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.measures import CLOSED_MOUTH, eye_ratios, lip_gap, seen_eyes, seen_openness
from marionette.landmarks.openings import LID_PAIRS, LIP_PAIRS, closed_lips, uncrossed
from marionette.landmarks.pose import head_pose

NEUTRAL_SHARE = 0.1  # share of a window's frames averaged into its neutral expression and into its neutral pose
NEUTRAL_MOST = 12  # at most this many frames each
OPEN_EYES = 0.75  # frames whose eyes are open at least this share of the window's open eyes (90th percentile)
# ours: a face mesh reads a shut eye at 0.03-0.06 eye openness, not 0, so the driven lids of an eye
# that the driver closes to under SHUT_FROM of its open value come closer than its mesh says, and meet
# from SHUT_AT on (a lid drawn where the driver's mesh says reads as still open: 0.14-0.22)
SHUT_FROM, SHUT_AT = 0.5, 0.2
LID_MEET = 0.2  # where closing lids meet, from the lower lid to the upper (the upper lid moves most)
# ours: where the output takes the driver's expression (absolute mode; relative mode with the driver's, the
# default), the driven inner lips of a driver whose lips close (its lip gap under LIPS_SHUT_FROM) come
# together, and from LIPS_SHUT_AT on are in 3D no further apart than the driver's: a target's face, its
# rest regressed onto the driver's or misread at a turn, can keep its lips apart in depth, which a turned
# target shows as a slot (1b's profile: 0.08-0.10 apart at the driver's closed frames, the driver's 0.003-0.006)
LIPS_SHUT_FROM, LIPS_SHUT_AT = 1.5 * CLOSED_MOUTH, CLOSED_MOUTH
LIPS_MEET = 0.7  # where closing lips meet, from the lower lip to the upper (the jaw raises the lower lip most)


def neutral_frames(meshes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 478, 3) driver meshes -> indices of its neutral-expression frames (eyes open, the most
    closed mouths; among the frames that show both eyes, where there are any) and of its neutral-pose
    frames (nearest to frontal: the smallest yaw, pitch, roll)."""
    count = int(np.clip(round(NEUTRAL_SHARE * len(meshes)), 1, NEUTRAL_MOST))
    eyes = seen_openness(meshes)  # (N,) over the eyes each frame shows (a turned head's far eye is a guess)
    both = np.flatnonzero(seen_eyes(meshes).all(-1))  # frames showing both eyes (ours): a neutral face's lids read
    shown = both if len(both) else np.arange(len(meshes))
    awake = shown[eyes[shown] >= OPEN_EYES * np.percentile(eyes[shown], 90)]
    expression = awake[np.argsort(lip_gap(meshes[awake]), kind="stable")[:count]]
    angles = np.array([np.linalg.norm(head_pose(mesh_to_ibug68(m))) for m in meshes])  # (N,) degrees
    return expression, np.argsort(angles, kind="stable")[:count]


@dataclass(frozen=True)
class DriverReference:
    """The driver's face that relative mode measures motion from."""

    mesh: np.ndarray  # (478, 3) in driver pixels: raw landmarks' reference (the most frontal neutral frame)
    box: CropBox  # its crop
    start: DriverStart | None  # its expression and pose for the landmark transformer (None without one)
    mode: str  # relative or absolute: how this stream is driven
    eyes_open: np.ndarray  # (2,) the driver's eye openness, right and left, at its reference (its open eyes)


class Driving:
    def __init__(self, transformer: LandmarkTransformer | None, mode: str, alpha: float, size: int,
                 reference: str = "neutral", expression: str = "driver", max_turn: float = 0.0) -> None:
        """`transformer` None drives with raw landmarks; `size` is the side of the target crops;
        `reference`: neutral or first (REFERENCES); `expression`: relative mode's, the driver's or
        the target's (the landmark transformer's EXPRESSIONS; raw landmarks keep the target's);
        `max_turn`: the soft limit on the output's turn from the targets' pose, degrees (0: off; with
        the landmark transformer)."""
        assert mode in DRIVING_MODES and reference in REFERENCES, (mode, reference)  # checked where set
        self.transformer, self.mode, self.alpha, self.size = transformer, mode, alpha, size
        self.neutral, self.expression, self.max_turn = reference == "neutral", expression, max_turn
        self._first_target: np.ndarray | None = None  # (478, 3) the first target's mesh
        self._target_face: TargetFace | None = None  # identity shape and pose of all K targets

    def set_targets(self, meshes: np.ndarray) -> None:
        """(K, 478, 3) the targets' meshes in crop pixels, prepared once per target set."""
        self._first_target = meshes[0]
        if self.transformer is not None:
            self._target_face = self.transformer.prepare_targets(meshes)

    def reference(self, meshes: np.ndarray, box: CropBox, still: bool = False) -> DriverReference:
        """What relative mode measures from, prepared once per stream (or as a webcam's window
        grows) from (N, 478, 3) driver meshes in driver pixels, the first N of the stream (its
        neutral face, or its first frame with reference=first); `box` is the driver's crop; `still`:
        the driver is a single image (mode auto then drives in absolute mode)."""
        mode = self.mode if self.mode != "auto" else ("absolute" if still else "relative")
        searched = self.neutral and len(meshes) > 1  # a single frame is its own reference, as it is
        if not searched:
            expression = pose = np.zeros(1, np.int64)
        else:
            expression, pose = neutral_frames(meshes)
        start = None if self.transformer is None else self.transformer.prepare_reference(meshes[expression], meshes[pose])
        raw = meshes[pose[0] if pose[0] in expression else expression[0]]  # raw landmarks: one frame, the expression's first
        apart = float(lip_gap(meshes[expression]).min()) - CLOSED_MOUTH if searched else 0.0  # > 0: lips never meet
        if apart > 0:  # motion measured from closed lips (the start's λ̂ kept: the rest it draws)
            raw = closed_lips(raw, apart)
            start = None if start is None else replace(start, shape=closed_lips(start.shape, apart))
        return DriverReference(raw, box, start, mode, open_eyes(meshes[expression]))

    def __call__(self, driver_mesh: np.ndarray, reference: DriverReference) -> np.ndarray:
        """(478, 3) driver mesh (driver pixels) -> (478, 3) driven mesh in the targets' crop pixels."""
        assert self._first_target is not None, "set_targets() first"
        if self.transformer is not None:
            driven = self.transformer.drive(driver_mesh[None], self._target_face, alpha=self.alpha,
                                            mode=reference.mode, start=reference.start,
                                            expression=self.expression, max_turn=self.max_turn).mesh[0]
        else:
            driven = reference.box.to_crop(driver_mesh, self.size)
            if reference.mode == "relative":
                driven = self._first_target + (driven - reference.box.to_crop(reference.mesh, self.size))
        driven = shut_lids(driven, driver_mesh, reference.eyes_open)
        if reference.mode == "absolute" or (self.transformer is not None and self.expression == "driver"):
            driven = shut_lips(driven, driver_mesh)  # the driver's expression: its closed lips too
        return uncrossed(driven)


def _bring_together(mesh: np.ndarray, upper: np.ndarray, lower: np.ndarray, meet: float, keep: float) -> None:
    """In place: the (478, 3) mesh's `upper` and `lower` vertices (paired, (N,) each) moved towards where
    they meet (`meet` of the way from the lower to the upper), keeping `keep` of their distance from it."""
    line = mesh[lower] + meet * (mesh[upper] - mesh[lower])  # (N, 3) where they meet
    mesh[upper] = line + keep * (mesh[upper] - line)
    mesh[lower] = line + keep * (mesh[lower] - line)


def _closure_gap(mesh: np.ndarray) -> float:
    """(478, 3) mesh -> its lip gap, the smaller of the image's and the 3D one: a turn inflates the
    first, lips apart in depth the second."""
    return min(float(lip_gap(mesh)), float(lip_gap(mesh, depth=True)))


def shut_lips(driven: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """(478, 3) driven mesh whose inner lips, where the (478, 3) driver mesh closes its lips
    (LIPS_SHUT_FROM, LIPS_SHUT_AT), come in 3D as close as the driver's."""
    gap, driven_gap = _closure_gap(driver), _closure_gap(driven)
    closing = float(np.clip((LIPS_SHUT_FROM - gap) / (LIPS_SHUT_FROM - LIPS_SHUT_AT), 0, 1))  # 0 open .. 1 closed
    if closing == 0 or driven_gap <= gap:
        return driven
    keep = 1 - closing * (1 - gap / driven_gap)  # of the driven lips' distance
    out = driven.copy()
    _bring_together(out, *LIP_PAIRS, LIPS_MEET, keep)
    return out


def open_eyes(meshes: np.ndarray) -> np.ndarray:
    """(N, 478, 3) a driver's open-eyed frames -> (2,) each eye's median openness over the frames that
    show it (`seen_eyes`); an eye none of them shows takes the other's."""
    ratios, seen = eye_ratios(meshes), seen_eyes(meshes)  # (N, 2) each
    median = np.array([np.median(r[s]) if s.any() else np.nan for r, s in zip(ratios.T, seen.T)])  # (2,)
    return np.where(np.isnan(median), median[::-1], median)


def shut_lids(driven: np.ndarray, driver: np.ndarray, eyes_open: np.ndarray) -> np.ndarray:
    """(478, 3) driven mesh with the lids of each eye the (478, 3) driver mesh nearly closes brought
    together (SHUT_FROM, SHUT_AT), given the driver's (2,) open-eye openness (`open_eyes`). An eye the
    driver turns away (`seen_eyes`) closes as far as the one it shows (ours: the far eye's openness is
    the face mesh's guess; read as shut, it winked the output's)."""
    share = eye_ratios(driver) / np.maximum(eyes_open, 1e-6)  # (2,) of each eye's open openness
    share = np.where(seen_eyes(driver), share, share[::-1])
    keep = np.clip((share - SHUT_AT) / (SHUT_FROM - SHUT_AT), 0, 1)  # (2,)
    if keep.min() >= 1:
        return driven
    out = driven.copy()
    for (upper, lower), share in zip(LID_PAIRS, keep):
        _bring_together(out, upper, lower, LID_MEET, share)
    return out
