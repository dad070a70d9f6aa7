"""Temporal measures on videos whose answer is known: a still video has no flicker and no jump,
a switch to another frame is one jump, landmarks shaking on top of the driver's motion are jitter."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from marionette.evaluation.metrics import Sample, Tools, measure_sample
from marionette.evaluation.temporal import flicker, jumps, landmark_jitter

TEMPORAL = ["landmark_jitter", "flicker", "jumps"]


@pytest.fixture(scope="module")
def face(hopper):
    image, found = hopper
    scale = 128 / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return small, found.mesh.astype(np.float64) * scale


STEP = 0.25  # pixels a frame


def _shifted(image: np.ndarray, dx: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _panning(image: np.ndarray, mesh: np.ndarray, frames: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A video of `image` moving right by STEP pixels a frame (a slow head motion), and its meshes."""
    video = np.stack([_shifted(image, STEP * t) for t in range(frames)])
    return video, [mesh + np.array([STEP * t, 0.0, 0.0]) for t in range(frames)]


def test_a_still_or_smooth_video_has_no_jump_and_a_switch_is_one(face):
    image, mesh = face
    still = np.repeat(image[None], 6, axis=0)
    assert jumps(still) == 0 and flicker(still, [mesh] * 6) == 0.0
    video, _ = _panning(image, mesh, 10)
    assert jumps(video) == 0
    other = cv2.GaussianBlur(np.ascontiguousarray(image[:, ::-1]), (0, 0), 2.0)  # another "target frame"
    switched = video.copy()
    switched[6:] = np.stack([_shifted(other, STEP * t) for t in range(6, 10)])
    assert jumps(switched) == 1
    held = still.copy()  # a copy renderer holding one frame, then switching to another
    held[3:] = other
    assert jumps(held) == 1


def test_flicker_sees_the_background_not_the_face(face):
    image, mesh = face
    rng = np.random.default_rng(0)
    noisy = np.stack([np.clip(image.astype(int) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
                      for _ in range(4)])
    assert flicker(noisy, [mesh] * 4) > 0.02
    face_only = noisy.copy()
    hull = cv2.convexHull(np.round(mesh[:, :2]).astype(np.int32))
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    face_only[:, inside == 0] = image[inside == 0]  # the noise stays inside the face only
    assert flicker(face_only, [mesh] * 4) == 0.0
    assert flicker(noisy, [None] * 4) is None  # no face found anywhere: not measured


def test_landmark_jitter_is_shaking_beyond_the_drivers_motion(face):
    image, mesh = face
    _, driver = _panning(image, mesh, 8)
    assert landmark_jitter(driver, driver) == 0.0
    rng = np.random.default_rng(1)
    shaking = [m + rng.normal(0, 1.0, size=(1, 3)) * np.array([1, 1, 0]) for m in driver]
    assert landmark_jitter(shaking, driver) > 0.01
    assert landmark_jitter([None, *driver[1:3], None], driver) is None  # no three consecutive faces


def test_temporal_metrics_in_the_registry(face):
    image, mesh = face
    video, meshes = _panning(image, mesh, 6)
    sample = Sample(mode="cross", output=video[0], output_frames=video, output_frame_meshes=tuple(meshes),
                    driver_clip_meshes=np.stack(meshes))
    values = measure_sample(sample, TEMPORAL, Tools())
    assert values["landmark_jitter"] == 0.0 and values["jumps"] == 0.0
    assert 0 < values["flicker"] < 0.02  # the background moves with the pan, a little
    single = Sample(mode="cross", output=video[0])  # frame evaluation: no video, not measured
    assert measure_sample(single, TEMPORAL, Tools()) == {"landmark_jitter": None, "flicker": None, "jumps": None}
