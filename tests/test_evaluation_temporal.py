"""Temporal measures on videos whose answer is known: motion fidelity ranks a frozen face last, a
3-frame delay below an aligned result and catches shuffled frames; jitter is the shake added to the
driven trajectory's own; a still video has no flicker and no jump, a switch to another frame is one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from marionette.evaluation.metrics import TEMPORAL, Sample, Tools, measure_sample
from marionette.evaluation.temporal import flicker, jumps, landmark_jitter, motion_correlation, motion_error
from marionette.landmarks.layout import MESH_TO_IBUG68, inter_ocular, mesh_to_ibug68


@pytest.fixture(scope="module")
def face(hopper):
    image, found = hopper
    scale = 128 / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return small, found.mesh.astype(np.float64) * scale


FRAMES = 40
PERIOD = 40  # frames per cycle of the driven motion: a slow head turn and mouth opening
LOWER_LIP = [MESH_TO_IBUG68[i] for i in range(55, 60)] + [MESH_TO_IBUG68[i] for i in range(65, 68)]


def _driven(mesh: np.ndarray) -> np.ndarray:
    """(FRAMES, 478, 3): the head moving on an ellipse of 0.15 x 0.08 inter-ocular distances while
    the lower lip drops by up to 0.1 of it, one cycle per PERIOD frames."""
    iod = float(inter_ocular(mesh_to_ibug68(mesh)))
    out = []
    for t in range(FRAMES):
        phase = 2 * np.pi * t / PERIOD
        m = mesh + np.array([0.15 * np.sin(phase), 0.08 * np.cos(phase), 0.0]) * iod
        m[LOWER_LIP, 1] += 0.05 * (1 - np.cos(phase)) * iod
        out.append(m)
    return np.stack(out)


def _noisy(meshes: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Independent image-plane noise of `sigma` pixels on every point of every frame (a detector's)."""
    noise = np.random.default_rng(seed).normal(0, sigma, meshes.shape) * np.array([1.0, 1.0, 0.0])
    return meshes + noise


def _scores(output: np.ndarray, driven: np.ndarray) -> tuple[float, float]:
    return motion_correlation(list(output), driven), motion_error(list(output), driven)


def test_motion_fidelity_ranks_a_frozen_face_last(face):
    _, mesh = face
    driven = _driven(mesh)
    frozen = np.repeat(driven[:1], FRAMES, axis=0)  # a copy renderer holding one frame
    assert _scores(frozen, driven) == (0.0, 1.0)
    candidates = {
        "aligned": driven,
        "detector noise": _noisy(driven, 0.3, 0),
        "half the motion": driven[:1] + 0.5 * (driven - driven[:1]),
        "delayed 3 frames": np.concatenate([driven[:1].repeat(3, 0), driven[:-3]]),
    }
    assert _scores(driven, driven) == pytest.approx((1.0, 0.0))
    for name, output in candidates.items():
        correlation, error = _scores(output, driven)
        assert correlation > 0.5 and error < 0.8, name  # each beats the frozen face clearly


def test_a_three_frame_delay_scores_worse_than_aligned(face):
    _, mesh = face
    driven = _noisy(_driven(mesh), 0.3, 1)
    aligned = _noisy(driven, 0.3, 2)  # re-detected: its own detector noise
    delayed = np.concatenate([aligned[:1].repeat(3, 0), aligned[:-3]])
    (r_aligned, e_aligned), (r_delayed, e_delayed) = _scores(aligned, driven), _scores(delayed, driven)
    assert r_delayed < r_aligned - 0.05 and e_delayed > e_aligned + 0.2
    # a cycle of 40 frames delayed by 3: r = cos(2 pi 3 / 40) = 0.89, error = sqrt(2 (1 - r)) = 0.47
    assert r_delayed == pytest.approx(np.cos(2 * np.pi * 3 / PERIOD), abs=0.08)
    assert e_delayed == pytest.approx(np.sqrt(2 * (1 - np.cos(2 * np.pi * 3 / PERIOD))), abs=0.1)


def test_shuffled_frames_are_caught(face):
    _, mesh = face
    driven = _driven(mesh)
    shuffled = driven[np.random.default_rng(3).permutation(FRAMES)]
    correlation, error = _scores(shuffled, driven)
    assert abs(correlation) < 0.4 and error > 1.0  # the wrong motion: further than a frozen face
    assert landmark_jitter(list(shuffled), driven) > 4 * landmark_jitter(list(_noisy(driven, 0.3, 4)), driven)


def test_landmark_jitter_is_the_shake_added_to_the_driven_trajectory(face):
    _, mesh = face
    driven = _noisy(_driven(mesh), 0.5, 5)  # a driver that shakes on its own
    iod = float(np.median(inter_ocular(mesh_to_ibug68(driven))))
    assert landmark_jitter(list(driven), driven) == 0.0  # its own shake reproduced: nothing added
    assert landmark_jitter(list(np.repeat(driven[:1], FRAMES, 0)), driven) == 0.0  # stillness: a frozen face too
    sigma = 1.0
    shaking = _noisy(driven, sigma, 6)
    # independent noise of sigma per coordinate: the second difference has variance 6 sigma^2 per
    # coordinate, 12 sigma^2 per point: the added RMS acceleration is sqrt(12) sigma
    assert landmark_jitter(list(shaking), driven) == pytest.approx(np.sqrt(12) * sigma / iod, rel=0.15)
    gaps = [None if t % 3 == 1 else m for t, m in enumerate(shaking)]  # no three consecutive faces
    assert landmark_jitter(gaps, driven) is None
    assert motion_correlation([None, None, *shaking[2:4]], driven[:4]) is None  # too few faces
    still = np.repeat(mesh[None], 6, 0)
    assert motion_correlation(list(still), still) is None  # a driver that does not move: not measured


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


def test_temporal_metrics_in_the_registry(face):
    image, mesh = face
    video, meshes = _panning(image, mesh, 6)
    sample = Sample(mode="cross", output=video[0], output_frames=video, output_frame_meshes=tuple(meshes),
                    driver_clip_meshes=np.stack(meshes), driven_frame_meshes=np.stack(meshes))
    values = measure_sample(sample, TEMPORAL, Tools())
    assert values["motion_correlation"] == pytest.approx(1.0) and values["motion_error"] == pytest.approx(0.0)
    assert values["landmark_jitter"] == 0.0 and values["jumps"] == 0.0
    assert 0 < values["flicker"] < 0.02  # the background moves with the pan, a little
    assert values["video_psnr"] is None  # cross-identity: no ground truth
    single = Sample(mode="cross", output=video[0])  # frame evaluation: no video, not measured
    assert measure_sample(single, TEMPORAL, Tools()) == dict.fromkeys(TEMPORAL)


def test_video_psnr_pairs_every_frame_but_the_targets(face):
    image, mesh = face
    truth, _ = _panning(image, mesh, 6)
    exact = np.minimum(truth, 245)
    output = exact + np.uint8(10)  # 10 levels off on every pixel of every frame
    output[2] = 0  # a target frame copied badly: not a reenacted frame, left out
    sample = Sample(mode="self", output=output[0], output_frames=output, truth_frames=exact, target_positions=(2,))
    assert measure_sample(sample, ["video_psnr"], Tools())["video_psnr"] == pytest.approx(20 * np.log10(255 / 10))
