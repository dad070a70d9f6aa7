"""Square head crops: geometry, resampling, paste-back, temporal smoothing, stability on a real clip."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from marionette.data.config import PreprocessConfig
from marionette.landmarks.crop import CropBox, PasteBack, crop_image, head_box, paste_back, smooth_boxes

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_to_crop_to_source_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        box = CropBox(*rng.uniform(50, 500, 2), rng.uniform(20, 800))
        size = int(rng.choice([64, 256, 513]))
        points = rng.uniform(-100, 900, size=(478, 3)).astype(np.float32)
        back = box.to_source(box.to_crop(points, size), size)
        assert np.allclose(back, points, atol=0.01)
        # z is scaled like x and y
        crop = box.to_crop(points, size)
        assert np.allclose(crop[:, 2], points[:, 2] * size / box.side, rtol=1e-5)


def test_box_geometry():
    box = CropBox(100.0, 80.0, 50.0)
    size = 64
    centre = box.to_crop(np.array([[100.0, 80.0]]), size)[0]
    assert centre == pytest.approx([(size - 1) / 2] * 2, abs=1e-4)
    corners = box.to_crop(np.array([[75.0, 55.0], [125.0, 105.0]]), size)  # continuous box edges
    assert corners == pytest.approx(np.array([[-0.5, -0.5], [size - 0.5, size - 0.5]]), abs=1e-4)


def test_whole_image_box_is_identity():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    box = CropBox.whole(40)
    assert box == CropBox(19.5, 19.5, 40.0)  # pixel centres 0..39: the box is exactly the image
    assert np.array_equal(crop_image(image, box, 40), image)
    points = rng.uniform(0, 39, (478, 3)).astype(np.float32)
    assert np.allclose(box.to_crop(points, 40), points, atol=1e-5)


def _dot_image(h: int, w: int, x: float, y: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    blob = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


@pytest.mark.parametrize(
    "shape, dot, sigma, box, size",
    [
        ((300, 400), (123.3, 77.8), 4.0, CropBox(130.0, 90.0, 60.0), 128),  # upscale x2.1
        ((300, 400), (123.3, 77.8), 4.0, CropBox(140.2, 95.7, 100.0), 100),  # 1:1, sub-pixel offset
        ((300, 400), (203.6, 151.2), 6.0, CropBox(190.0, 160.0, 220.0), 64),  # downscale x3.4 (blurred)
        ((1000, 1000), (433.7, 611.1), 18.0, CropBox(500.0, 500.0, 800.0), 64),  # downscale x12.5
    ],
)
def test_crop_puts_a_dot_where_to_crop_says(shape, dot, sigma, box, size):
    image = _dot_image(*shape, *dot, sigma)
    crop = crop_image(image, box, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    expected = box.to_crop(np.array([dot]), size)[0]
    found = _centroid(crop)
    assert np.abs(found - expected).max() < 0.5, (found, expected)


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 6)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.round(255 * smooth).astype(np.uint8)


@pytest.mark.parametrize("box, size", [(CropBox(150.0, 120.0, 160.0), 256), (CropBox(170.3, 110.6, 130.0), 128)])
def test_paste_back_reproduces_frame(box, size):
    frame = _smooth_image(240, 320, 2)
    out = paste_back(frame, crop_image(frame, box, size), box)
    assert out.shape == frame.shape and out.dtype == np.uint8
    half = box.side / 2 * 0.75  # interior: away from the feathered edge
    y0, y1 = int(box.cy - half), int(box.cy + half)
    x0, x1 = int(box.cx - half), int(box.cx + half)
    err = out[y0:y1, x0:x1].astype(np.float64) - frame[y0:y1, x0:x1]
    psnr = 10 * np.log10(255**2 / np.mean(err**2))
    assert psnr > 30, psnr
    outside = np.ones(frame.shape[:2], bool)
    pad = int(box.side / 2) + 2
    outside[int(box.cy) - pad : int(box.cy) + pad, int(box.cx) - pad : int(box.cx) + pad] = False
    assert np.array_equal(out[outside], frame[outside])  # untouched outside the box


def test_paste_back_puts_the_crop_inside_and_feathers_its_edge():
    frame, box = _smooth_image(240, 320, 3), CropBox(150.0, 120.0, 160.0)
    paste = PasteBack(frame.shape, box, 256)
    out = paste(frame, np.full((256, 256, 3), 200, np.uint8))  # a flat crop: the blend is the mask itself
    half = box.side / 2 * 0.5  # the interior, where the mask is 1
    assert (out[int(box.cy - half):int(box.cy + half), int(box.cx - half):int(box.cx + half)] == 200).all()
    under = frame[paste.y0:paste.y1, paste.x0:paste.x1].astype(np.float64)
    expected = under + (200 - under) * paste.mask[..., None]  # the frame, then the crop as the mask rises
    assert 0.05 < paste.mask.mean() < 0.95  # the region holds a feathered edge
    assert np.abs(out[paste.y0:paste.y1, paste.x0:paste.x1] - expected).max() <= 1


def test_smooth_boxes_interpolates_missing_frames():
    t = np.arange(40, dtype=np.float64)
    truth = np.stack([100 + 2 * t, 50 - t, 80 + 0.5 * t], axis=1)
    valid = np.ones(40, bool)
    valid[[0, 1, 10, 11, 12, 39]] = False
    boxes = np.where(valid[:, None], truth, 0.0)  # missing rows hold garbage
    filled = smooth_boxes(boxes, valid, sigma=0)
    # inside: linear interpolation recovers a linear track; ends: the nearest valid box
    assert np.allclose(filled[2:39], truth[2:39], atol=1e-4)
    assert np.allclose(filled[:2], truth[2], atol=1e-4) and np.allclose(filled[39], truth[38], atol=1e-4)
    smoothed = smooth_boxes(boxes, valid, sigma=3)
    assert smoothed.shape == (40, 3) and smoothed.dtype == np.float32
    assert np.allclose(smoothed[12:28], truth[12:28], atol=1e-3)  # a Gaussian keeps a line (away from ends)
    with pytest.raises(ValueError):
        smooth_boxes(boxes, np.zeros(40, bool), sigma=3)


def test_smooth_boxes_reduces_jitter():
    rng = np.random.default_rng(3)
    t = np.arange(120, dtype=np.float64)
    truth = np.stack([200 + 30 * np.sin(t / 20), 150 + 10 * np.cos(t / 15), 180 + 5 * np.sin(t / 30)], axis=1)
    noisy = truth + rng.normal(scale=2.0, size=truth.shape)
    smoothed = smooth_boxes(noisy, np.ones(120, bool), sigma=4)
    jitter_raw = np.abs(np.diff(noisy - truth, axis=0)).mean()
    jitter_smooth = np.abs(np.diff(smoothed - truth, axis=0)).mean()
    assert jitter_smooth < jitter_raw / 5
    inner = slice(12, -12)
    assert np.abs(smoothed - truth)[inner].mean() < np.abs(noisy - truth)[inner].mean() / 2


# Measured over 60 frames with the default config (max |change| of cx, cy, side per frame / side):
#   grid_brbk7n (assets):          raw 0.005 0.009 0.018 -> smoothed 0.0004 0.0012 0.0019
#   obama_weekly_address_256:      raw 0.008 0.012 0.034 -> smoothed 0.0017 0.0019 0.0046
STEP_BOUND = 0.01  # smoothed, any frame, any of cx, cy, side, relative to side
MEAN_STEP_BOUND = 0.003


@pytest.mark.parametrize("name, where", [("grid_brbk7n.mp4", "assets"), ("obama_weekly_address_256.mp4", "shared")])
def test_crop_is_steady_on_a_real_clip(name, where, request):
    from marionette.landmarks.mesh import FaceMesh
    from marionette.media import iter_video

    path = ASSETS / "videos" / name if where == "assets" else request.getfixturevalue("shared_data") / "videos" / name
    config = PreprocessConfig()
    raw, mesh_boxes = [], []
    with FaceMesh(video=True, max_faces=1) as mesh:
        for frame in islice(iter_video(path), 60):
            faces = mesh.detect(frame)
            assert faces, f"{name}: no face in a frame"
            raw.append(head_box(faces[0].mesh, config.crop_scale, config.crop_shift).as_array())
            mesh_boxes.append(faces[0].box)
    raw = np.array(raw, np.float64)
    mesh_boxes = np.array(mesh_boxes)
    smooth = smooth_boxes(raw, np.ones(len(raw), bool), config.smooth_sigma).astype(np.float64)

    def steps(boxes):
        return np.abs(np.diff(boxes, axis=0)) / boxes[:-1, 2:3]  # (T-1, 3) relative to side

    s_raw, s_smooth = steps(raw), steps(smooth)
    print(f"{name}: per-frame change / side (cx, cy, side) max raw {np.round(s_raw.max(0), 4)} "
          f"smoothed {np.round(s_smooth.max(0), 4)}; mean raw {np.round(s_raw.mean(0), 4)} "
          f"smoothed {np.round(s_smooth.mean(0), 4)}")
    assert len(raw) == 60
    assert s_smooth.max() < STEP_BOUND
    assert s_smooth.mean(0).max() < MEAN_STEP_BOUND
    assert s_smooth.mean() < s_raw.mean() / 2
    half = smooth[:, 2] / 2
    inside = ((smooth[:, 0] - half <= mesh_boxes[:, 0]) & (smooth[:, 0] + half >= mesh_boxes[:, 2])
              & (smooth[:, 1] - half <= mesh_boxes[:, 1]) & (smooth[:, 1] + half >= mesh_boxes[:, 3]))
    assert inside.all(), f"face outside the smoothed crop in frames {np.flatnonzero(~inside)}"
