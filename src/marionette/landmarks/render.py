"""Landmark images r: the 68-point face parts drawn as coloured anti-aliased polylines.

method.md (Preprocessing): black canvas, one colour per part (jaw; each brow; nose bridge;
nostrils; each eye closed; outer lips closed; inner lips closed), 3 channels, the crop's size.
Colours and thickness are ours (NeuralHead-style); thickness scales with resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from marionette.landmarks.layout import IBUG68_PARTS

# RGB colour of each part, in the order of IBUG68_PARTS; distinct hues so left and right differ.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 255, 255),
    "right_brow": (255, 128, 0),
    "left_brow": (255, 220, 0),
    "nose_bridge": (0, 200, 255),
    "nostrils": (0, 90, 255),
    "right_eye": (0, 255, 64),
    "left_eye": (160, 255, 0),
    "outer_lips": (255, 0, 80),
    "inner_lips": (200, 0, 255),
}

_SHIFT = 4  # sub-pixel precision of cv2 drawing: 4 fractional bits


def line_thickness(size: int) -> int:
    """Polyline thickness for a size x size canvas: 2 px at 256, scaling linearly (ours)."""
    return max(1, round(size / 128))


def render_landmarks(points68: np.ndarray, size: int) -> np.ndarray:
    """(68, 2+) crop-pixel points -> (size, size, 3) uint8 RGB landmark image."""
    assert points68.shape[0] == 68, f"expected 68 points, got {points68.shape}"
    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(points68[:, :2] * (1 << _SHIFT)).astype(np.int32)  # (68, 2) fixed-point
    thickness = line_thickness(size)
    for name, index, closed in IBUG68_PARTS:
        cv2.polylines(canvas, [fixed[list(index)]], closed, PART_COLORS[name], thickness, cv2.LINE_AA, _SHIFT)
    return canvas


def draw_points(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """A copy of an (H, W, 3) image with (N, 2+) points drawn as small dots (previews)."""
    out = image.copy()
    radius = max(1, round(min(image.shape[:2]) / 200))
    for x, y in np.round(points[:, :2] * (1 << _SHIFT)).astype(np.int32):
        cv2.circle(out, (int(x), int(y)), radius << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
    return out
