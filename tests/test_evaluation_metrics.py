"""Metrics against known values: PSNR/SSIM vs closed forms and a direct Wang et al. (2004)
computation, CSIM of a photo with itself and between two people, PRMSE of known rotations."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from marionette.evaluation.expression import ExpressionConfig, indicators
from marionette.evaluation.metrics import (
    REGISTRY,
    Sample,
    Tools,
    l1,
    landmark_nme,
    measure_sample,
    paired_correlation,
    pose_error,
    psnr,
    root_mean_square,
    ssim,
    summarize,
)
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.pose import euler_to_rotation, face_rotation


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = cv_smooth(rng.integers(0, 256, (48, 40, 3)).astype(np.float64))
    a = np.clip(base, 0, 255).astype(np.uint8)
    b = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return a, b


def cv_smooth(x: np.ndarray) -> np.ndarray:
    """Some spatial structure (box blur along both axes) so windows have non-trivial statistics."""
    for axis in (0, 1):
        x = (np.roll(x, 1, axis) + x + np.roll(x, -1, axis)) / 3
    return x


def ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out: every 11x11 window inside the image, Gaussian weights
    (sigma 1.5, normalised), weighted means, variances and covariance, per channel, averaged."""
    r = np.arange(-5, 6)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()  # (11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for ch in range(3):
        x = sliding_window_view(a[..., ch].astype(np.float64), (11, 11))  # (H-10, W-10, 11, 11)
        y = sliding_window_view(b[..., ch].astype(np.float64), (11, 11))
        mx, my = (x * w).sum((-2, -1)), (y * w).sum((-2, -1))
        vx = (w * (x - mx[..., None, None]) ** 2).sum((-2, -1))
        vy = (w * (y - my[..., None, None]) ** 2).sum((-2, -1))
        cov = (w * (x - mx[..., None, None]) * (y - my[..., None, None])).sum((-2, -1))
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))


def test_ssim_matches_direct_gaussian_window_computation():
    a, b = _images()
    assert ssim(a, b) == pytest.approx(ssim_direct(a, b), abs=1e-9)
    assert 0.2 < ssim(a, b) < 0.99  # the inputs differ: not a degenerate case


def test_ssim_identity_and_constant_offset_closed_form():
    a, _ = _images(1)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    c, d = 100.0, 30.0  # flat images: the structure term is 1, only the luminance term remains
    flat_a, flat_b = np.full((32, 32, 3), c, np.uint8), np.full((32, 32, 3), c + d, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(flat_a, flat_b) == pytest.approx((2 * c * (c + d) + c1) / (c**2 + (c + d) ** 2 + c1), abs=1e-9)


def test_psnr_and_l1_closed_form():
    a, b = _images(2)
    assert psnr(a, a) == float("inf")
    offset = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    exact = a < 246  # pixels where the offset is not clipped
    a, offset = a[exact][None, :, None].repeat(3, -1), offset[exact][None, :, None].repeat(3, -1)
    assert psnr(a, offset) == pytest.approx(20 * np.log10(255 / 10), abs=1e-9)
    assert l1(a, offset) == pytest.approx(10 / 255)


def _frontal(mesh: np.ndarray) -> np.ndarray:
    """The mesh rotated about its centroid so that its landmark pose is exactly (0, 0, 0)."""
    centre = mesh.mean(0)
    rotation = face_rotation(mesh_to_ibug68(mesh))  # camera <- face
    return (mesh - centre) @ rotation + centre  # apply rotation.T to every point


def test_prmse_zero_for_itself_and_equal_to_a_known_rotation(hopper):
    _, face = hopper
    frontal = _frontal(face.mesh.astype(np.float64))
    assert pose_error(frontal, frontal) == 0.0
    for angles, expected in (((12.0, 0, 0), 12.0), ((0, -7.0, 0), 7.0), ((3.0, 4.0, 0), 5.0)):
        turned = (frontal - frontal.mean(0)) @ euler_to_rotation(np.array(angles)).T + frontal.mean(0)
        assert pose_error(turned, frontal) == pytest.approx(expected, abs=1e-3)
    assert root_mean_square([3.0, 4.0, None]) == pytest.approx(np.sqrt(12.5))


def test_nme_zero_for_itself_and_scales_with_shift(hopper):
    _, face = hopper
    mesh = face.mesh.astype(np.float64)
    assert landmark_nme(mesh, mesh) == 0.0
    iod = np.linalg.norm(mesh_to_ibug68(mesh)[36:42, :2].mean(0) - mesh_to_ibug68(mesh)[42:48, :2].mean(0))
    assert landmark_nme(mesh + np.array([3.0, 4.0, 0.0]), mesh) == pytest.approx(5.0 / iod)


def test_csim_of_a_photo_with_itself_is_one_and_two_people_differ(hopper, shared_data):
    from marionette.evaluation.judges import DlibJudge, cosine
    from marionette.media import load_image

    judge = DlibJudge()
    image, face = hopper
    e = judge.embed(image, face.mesh)
    assert cosine(e, judge.embed(image.copy(), None)) == pytest.approx(1.0, abs=1e-6)
    obama, biden = (judge.embed(load_image(shared_data / "faces" / n), None)
                    for n in ("03_barack_obama_official.jpg", "04_joe_biden_official.jpg"))
    assert cosine(obama, biden) < 0.9  # same person across frames scores ~0.98 with this judge


def test_registry_on_an_oracle_output(hopper):
    """A result equal to the ground truth scores perfectly on every self metric that runs here."""
    image, face = hopper
    sample = Sample(mode="self", output=image, truth=image.copy(), truth_mesh=face.mesh, output_mesh=face.mesh)
    values = measure_sample(sample, ["l1", "psnr", "ssim", "csim", "face_found"], Tools())
    assert values == pytest.approx({"l1": 0.0, "psnr": float("inf"), "ssim": 1.0, "csim": 1.0, "face_found": 1.0})
    assert set(REGISTRY) >= {"l1", "psnr", "ssim", "lpips", "csim", "prmse", "expression_agreement",
                             "expression_correlation", "nme", "face_found"}
    assert summarize([{"prmse": 3.0}, {"prmse": 4.0}]) == pytest.approx({"prmse": np.sqrt(12.5)})


def test_expression_correlation_and_indicators(hopper):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 4))
    assert paired_correlation(np.concatenate([a, 2 * a + 1], 1).tolist()) == pytest.approx(1.0)
    assert paired_correlation(np.concatenate([a, -a], 1).tolist()) == pytest.approx(-1.0)
    _, face = hopper
    closed = face.mesh.astype(np.float64)
    opened = closed.copy()
    lower_lip = [14, 87, 178, 88, 95, 317, 402, 318, 324, 17, 84, 181, 91, 146, 314, 405, 321, 375]
    iod = np.linalg.norm(mesh_to_ibug68(closed)[36:42].mean(0) - mesh_to_ibug68(closed)[42:48].mean(0))
    opened[lower_lip, 1] += 0.3 * iod  # drop the lower lip by 0.3 inter-ocular distances
    config = ExpressionConfig()
    assert not indicators(closed, closed[None], config)[0]  # Grace Hopper's portrait: mouth closed
    assert indicators(opened, closed[None], config)[0]
