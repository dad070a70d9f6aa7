"""Head pose (yaw, pitch, roll in degrees) from 3D landmarks.

ours (the paper uses OpenFace for pose): a face frame is built from the 68-point layout: x from the
right eye centre to the left eye centre, y from the eyes down to the mouth centre (made orthogonal
to x), z = x × y pointing away from the camera; the rotation R = [x y z] (camera from face) is
decomposed as R = Rz(roll) · Ry(yaw) · Rx(pitch). Zero pose is the eye-mouth plane facing the
camera, eyes level. Signs, in image axes (x right, y down, z away): roll > 0 turns the eye line
clockwise on screen; yaw > 0 turns the face towards the image's left; pitch > 0 moves the chin
away from the camera and the forehead towards it (looking down).
"""

from __future__ import annotations

import numpy as np

from marionette.landmarks.layout import LEFT_EYE, MOUTH, RIGHT_EYE


def face_rotation(points68: np.ndarray) -> np.ndarray:
    """(..., 68, 3) points in pixels (x right, y down, z away) -> (..., 3, 3) rotation camera<-face."""
    eyes_r = points68[..., RIGHT_EYE, :].mean(-2)
    eyes_l = points68[..., LEFT_EYE, :].mean(-2)
    mouth = points68[..., MOUTH, :].mean(-2)
    x = eyes_l - eyes_r
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    down = mouth - (eyes_r + eyes_l) / 2
    y = down - (down * x).sum(-1, keepdims=True) * x
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)  # columns are the face axes in camera coordinates


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) R = Rz(roll) Ry(yaw) Rx(pitch) -> (..., 3) degrees (yaw, pitch, roll)."""
    yaw = -np.arcsin(np.clip(rotation[..., 2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def euler_to_rotation(angles: np.ndarray) -> np.ndarray:
    """(..., 3) degrees (yaw, pitch, roll) -> (..., 3, 3) R = Rz(roll) Ry(yaw) Rx(pitch)."""
    yaw, pitch, roll = np.moveaxis(np.radians(angles), -1, 0)
    c, s = np.cos, np.sin
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    rz = np.stack([c(roll), -s(roll), zero, s(roll), c(roll), zero, zero, zero, one], -1)
    ry = np.stack([c(yaw), zero, s(yaw), zero, one, zero, -s(yaw), zero, c(yaw)], -1)
    rx = np.stack([one, zero, zero, zero, c(pitch), -s(pitch), zero, s(pitch), c(pitch)], -1)
    shape = yaw.shape + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def head_pose(points68: np.ndarray) -> np.ndarray:
    """(..., 68, 3) points -> (..., 3) float32 degrees (yaw, pitch, roll)."""
    return rotation_to_euler(face_rotation(points68)).astype(np.float32)
