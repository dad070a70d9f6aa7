"""Landmark images: coloured anti-aliased polylines of the 68-point parts on black."""

from __future__ import annotations

import numpy as np
import pytest

from marionette.landmarks.crop import head_box
from marionette.landmarks.layout import IBUG68_PARTS
from marionette.landmarks.render import PART_COLORS, line_thickness, render_landmarks


@pytest.fixture(scope="module")
def crop_points(hopper):
    """Grace Hopper's 68 points in a 256-px head crop, and the box that made them."""
    face = hopper[1]
    box = head_box(face.mesh, 1.8, -0.1)
    return box, face.ibug68


def _segment_distance(size: int, points: np.ndarray) -> np.ndarray:
    """(size, size) distance of each pixel centre to the nearest segment of every part's polyline."""
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.stack([xx, yy], -1).astype(np.float64)  # (size, size, 2)
    nearest = np.full((size, size), np.inf)
    for _, index, closed in IBUG68_PARTS:
        idx = list(index) + ([index[0]] if closed else [])
        for i, j in zip(idx[:-1], idx[1:]):
            a, b = points[i, :2].astype(np.float64), points[j, :2].astype(np.float64)
            t = np.clip(((pix - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-12), 0, 1)
            nearest = np.minimum(nearest, np.linalg.norm(pix - (a + t[..., None] * (b - a)), axis=-1))
    return nearest


def test_shape_dtype_black_background(crop_points):
    box, pts = crop_points
    image = render_landmarks(box.to_crop(pts, 256), 256)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    ink = image.max(-1) > 0
    assert 0.01 < ink.mean() < 0.15  # measured 0.050: thin lines on a black canvas
    assert (image[0] == 0).all() and (image[:, 0] == 0).all()  # corners/edges far from the face


def test_every_part_colour_appears(crop_points):
    box, pts = crop_points
    image = render_landmarks(box.to_crop(pts, 256), 256)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert len(PART_COLORS) == len(IBUG68_PARTS)
    for name, _, _ in IBUG68_PARTS:
        assert PART_COLORS[name] in colours, f"{name}: colour {PART_COLORS[name]} not drawn"
    assert len(set(PART_COLORS.values())) == len(PART_COLORS)  # parts are distinguishable


@pytest.mark.parametrize("size", [128, 256, 512])
def test_drawing_lies_on_the_polylines(crop_points, size):
    box, pts = crop_points
    crop = box.to_crop(pts, size)
    image = render_landmarks(crop, size).max(-1)
    distance = _segment_distance(size, crop)
    half = line_thickness(size) / 2
    # measured: anti-aliasing fades out by half + 2.5 px; values over 128 stay within half + 1 px
    assert (image[distance > half + 2.5] == 0).all(), f"ink {distance[image > 0].max():.2f} px from the lines"
    assert (image[distance > half + 1] <= 128).all()
    assert (image[distance < 0.5] > 0).all()  # and the polylines are drawn without gaps


def test_thickness_scales_with_size(crop_points):
    box, pts = crop_points
    ink = {s: int((render_landmarks(box.to_crop(pts, s), s).max(-1) > 0).sum()) for s in (128, 256, 512)}
    print(f"ink pixels by canvas size: {ink}; thickness {[line_thickness(s) for s in ink]}")
    # Measured 944, 3268, 9141: lines twice as long and twice as thick give ~3.5x the ink at 256 than at
    # 128 (2x if the thickness did not scale); the ink fraction of the canvas stays within 2x.
    assert line_thickness(128) == 1 and line_thickness(256) == 2 and line_thickness(512) == 4
    assert 2.7 < ink[256] / ink[128] < 4.5
    assert 2.2 < ink[512] / ink[256] < 4.5
    fractions = [ink[s] / s**2 for s in ink]
    assert max(fractions) / min(fractions) < 2


def test_deterministic_and_subpixel(crop_points):
    box, pts = crop_points
    crop = box.to_crop(pts, 256)
    first = render_landmarks(crop, 256)
    assert np.array_equal(first, render_landmarks(crop.copy(), 256))
    assert np.array_equal(first, render_landmarks(crop[:, :2], 256))  # z is ignored
    moved = render_landmarks(crop + np.array([0.25, 0.0, 0.0], np.float32), 256)
    assert not np.array_equal(first, moved)  # quarter-pixel moves change the anti-aliased drawing
    with pytest.raises(AssertionError):
        render_landmarks(crop[:60], 256)
