"""Head pose from 68 3D points: Euler conventions, rotation equivariance, mirror symmetry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marionette.landmarks.layout import IBUG68_MIRROR, LEFT_EYE, RIGHT_EYE
from marionette.landmarks.pose import euler_to_rotation, face_rotation, head_pose, rotation_to_euler

NOSE_TIP = 30
# Measured: Grace Hopper yaw -0.1, roll -2.5; Obama yaw -2.0, roll -1.2 (pitch about -10 to -12:
# zero pitch is the eye-mouth plane facing the camera, which a level head tilts back a little).
FRONTAL_BOUND = 5.0


def rotate_about_centroid(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    centre = points.mean(0)
    return ((points - centre) @ rotation.T + centre).astype(np.float32)


@pytest.fixture(scope="module")
def points(hopper) -> np.ndarray:
    return hopper[1].ibug68.astype(np.float64)


def test_euler_round_trip():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-80, 80, size=(1000, 3))
    rotations = euler_to_rotation(angles)
    assert np.allclose(rotations @ np.swapaxes(rotations, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    assert np.allclose(rotation_to_euler(rotations), angles, atol=1e-9)


def test_single_axis_conventions():
    # yaw turns about y (R[0, 2] = sin), pitch about x (R[2, 1] = sin), roll about z (R[1, 0] = sin)
    for axis, (row, col, fixed) in enumerate([(0, 2, 1), (2, 1, 0), (1, 0, 2)]):
        angles = np.zeros(3)
        angles[axis] = 30.0
        r = euler_to_rotation(angles)
        assert r[row, col] == pytest.approx(np.sin(np.radians(30)))
        assert r[fixed, fixed] == pytest.approx(1.0)  # the rotation axis stays put


def test_pose_follows_applied_rotation(points):
    rng = np.random.default_rng(1)
    r_face = face_rotation(points)
    for applied in rng.uniform(-30, 30, size=(20, 3)):
        r_applied = euler_to_rotation(applied)
        measured = head_pose(rotate_about_centroid(points, r_applied))
        expected = rotation_to_euler(r_applied @ r_face)
        assert np.allclose(measured, expected, atol=0.05), (applied, measured, expected)


def test_roll_adds_and_sign_conventions(points):
    base = head_pose(points)
    rolled = head_pose(rotate_about_centroid(points, euler_to_rotation(np.array([0.0, 0.0, 15.0]))))
    assert rolled - base == pytest.approx([0.0, 0.0, 15.0], abs=0.05)

    def eye_angle(p):  # angle of the right->left eye line on screen (y down: positive = clockwise)
        d = p[LEFT_EYE, :2].mean(0) - p[RIGHT_EYE, :2].mean(0)
        return np.degrees(np.arctan2(d[1], d[0]))

    clockwise = rotate_about_centroid(points, euler_to_rotation(np.array([0.0, 0.0, 15.0])))
    assert eye_angle(clockwise) - eye_angle(points) == pytest.approx(15.0, abs=0.05)

    # yaw > 0 turns the face towards the image's left: the nose tip moves left of the eyes' midpoint
    def nose_offset(p):
        return p[NOSE_TIP, 0] - (p[LEFT_EYE, 0].mean() + p[RIGHT_EYE, 0].mean()) / 2

    turned = rotate_about_centroid(points, euler_to_rotation(np.array([25.0, 0.0, 0.0])))
    assert head_pose(turned)[0] > head_pose(points)[0] + 20
    assert nose_offset(turned) < nose_offset(points) - 5


@pytest.mark.parametrize("applied", [(0.0, 0.0, 0.0), (25.0, 10.0, 12.0), (-35.0, -15.0, -20.0)])
def test_mirror_negates_yaw_and_roll(points, applied):
    face = rotate_about_centroid(points, euler_to_rotation(np.array(applied)))
    mirrored = face * np.array([-1.0, 1.0, 1.0], np.float32)
    mirrored = mirrored[IBUG68_MIRROR]
    yaw, pitch, roll = head_pose(face)
    assert head_pose(mirrored) == pytest.approx([-yaw, pitch, -roll], abs=1e-3)


def test_frontal_portraits_have_small_yaw_and_roll(hopper):
    from marionette.landmarks.mesh import detect_face
    from marionette.media import load_image

    obama = Path(__file__).resolve().parents[1] / "assets" / "faces" / "03_barack_obama_official.jpg"
    for name, face in [("hopper", hopper[1]), ("obama", detect_face(load_image(obama), obama))]:
        yaw, pitch, roll = head_pose(face.ibug68)
        print(f"{name}: yaw {yaw:.1f} pitch {pitch:.1f} roll {roll:.1f}")
        assert abs(yaw) < FRONTAL_BOUND and abs(roll) < FRONTAL_BOUND
        assert -25 < pitch < 5


def test_pose_is_batched(points):
    rng = np.random.default_rng(2)
    batch = np.stack([rotate_about_centroid(points, euler_to_rotation(a)) for a in rng.uniform(-20, 20, (4, 3))])
    out = head_pose(batch)
    assert out.shape == (4, 3) and out.dtype == np.float32
    assert np.allclose(out, np.stack([head_pose(b) for b in batch]))
