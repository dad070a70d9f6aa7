"""Three of the hard real cases of ../shared/data/hard (docs/hard_cases.md has all 23), rendered with
the default settings and judged as a viewer's tool would: the output's face re-detected by the same
face mesh, tracked through the clip."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import inside_ring

from marionette.inference.io import open_driver
from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.landmark_transformer.model import LandmarkTransformer
from marionette.landmarks.layout import MESH_EYE_OPENINGS, MESH_INNER_LIPS
from marionette.landmarks.measures import CLOSED_EYE, CLOSED_MOUTH, eye_openness, lip_gap
from marionette.landmarks.mesh import FaceMesh


def render(shared_data: Path, case_id: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(F, 478, 3) the driver's and the output's re-detected meshes over the case's first `frames`."""
    case = next(c for c in json.loads((shared_data / "hard" / "cases.json").read_text()) if c["id"] == case_id)
    pipeline = ReenactPipeline(ReenactConfig(renderer="warp", size=256, paste_back=False, max_frames=frames))
    pipeline.set_targets([str(shared_data.parent / t) for t in case["target"]])
    driver, output = [], []
    with FaceMesh(video=True, max_faces=1) as on_driver, FaceMesh(video=True, max_faces=1) as on_output:
        for rendered in pipeline.render_frames(open_driver(str(shared_data.parent / case["driver"]))):
            driver.append(on_driver.detect(rendered.driver)[0].mesh)
            found = on_output.detect(rendered.output)
            assert found, "the output's face was lost"
            output.append(found[0].mesh)
    return np.stack(driver), np.stack(output)


def test_a_driver_whose_first_frame_is_mid_word(shared_data: Path) -> None:
    """Case 3b: the driver opens wide in frame 0 (gap 0.76) and closes at frames 60-63; the output's
    mouth follows, closed where it closes (it moved against it before the neutral reference)."""
    if not (shared_data / "hard" / "cases.json").is_file():
        pytest.skip("no ../shared/data/hard")
    driver, output = render(shared_data, "3b_first_frame_mouth_open_o", 100)
    gap_d, gap_o = lip_gap(driver), lip_gap(output)
    assert np.corrcoef(gap_d, gap_o)[0, 1] > 0.75 and gap_o[0] > 0.3
    assert np.median(gap_o[gap_d < CLOSED_MOUTH]) < 0.05  # (the first closed frame lags: 0.15)


def test_blinks_close_the_outputs_eyes(shared_data: Path) -> None:
    """Case 4a: the driver blinks at frames 16-19, 51-52 and 66 (eye openness < 0.1); the output's
    re-detected eyes close with it (recall 0.00 before the lids shut with the driver's)."""
    if not (shared_data / "hard" / "cases.json").is_file():
        pytest.skip("no ../shared/data/hard")
    driver, output = render(shared_data, "4a_blinks_frontal_woman", 80)
    closed = eye_openness(driver) < CLOSED_EYE
    assert closed.sum() >= 5
    assert (eye_openness(output)[closed] < 0.15).mean() >= 0.6
    assert np.median(eye_openness(output)[~closed]) > 0.2  # open eyes stay open


def test_a_driver_whose_lips_never_meet(shared_data: Path) -> None:
    """Case 5b: the driver sings, turned 50°, his lips apart in every frame; the output's mouth is
    open where his is open (no frame under 0.03 where his is over 0.15, measured in 3D). Before the
    neutral face's lips were closed, 38 of these 100 frames were such flips: the output's mouth stayed
    shut at his rest."""
    if not (shared_data / "hard" / "cases.json").is_file():
        pytest.skip("no ../shared/data/hard")
    driver, output = render(shared_data, "5b_lean_in_while_turning", 100)
    gap_d, gap_o = lip_gap(driver, depth=True), lip_gap(output, depth=True)
    assert gap_d.min() > 0.1  # the case is what it says
    assert not ((gap_d > 0.15) & (gap_o < CLOSED_MOUTH)).any(), np.round(gap_o[gap_d > 0.15], 3)


def teeth_share(image: np.ndarray, ring: np.ndarray) -> float:
    """Share of the pixels inside an inner-lip ring (20, 2) that are bright and pale: teeth."""
    pixels = image[inside_ring(image.shape[:2], ring, erode=True)].astype(np.float32)
    if not len(pixels):  # lips too close for a pixel between them
        return float("nan")
    peak = pixels.max(1)
    return float(((pixels.mean(1) > 130) & ((peak - pixels.min(1)) / np.maximum(peak, 1) < 0.4)).mean())


def test_a_mouth_opened_wider_than_the_targets_shows_the_drivers_teeth(shared_data: Path) -> None:
    """Case 7b: a furious driver bares his teeth; the target (Grace Hopper) keeps her mouth closed.
    With the driver's teeth (mouth=driver, the default) the opened mouth shows teeth, and the output's
    re-detected mouth follows the driver's (r 0.78 with the drawn cavity alone, measured in 3D)."""
    if not (shared_data / "hard" / "cases.json").is_file():
        pytest.skip("no ../shared/data/hard")
    case = next(c for c in json.loads((shared_data / "hard" / "cases.json").read_text())
                if c["id"] == "7b_wide_mouth_teeth_furious")
    shares, gaps = {}, {}
    for mouth in ("drawn", "driver"):
        pipeline = ReenactPipeline(ReenactConfig(renderer="warp", size=256, paste_back=False, mouth=mouth))
        pipeline.set_targets([str(shared_data.parent / t) for t in case["target"]])
        with FaceMesh(video=True, max_faces=1) as on_driver, FaceMesh(video=True, max_faces=1) as on_output:
            rows = [(lip_gap(r.driven), teeth_share(r.output, r.driven[MESH_INNER_LIPS, :2]),
                     lip_gap(on_driver.detect(r.driver)[0].mesh, depth=True),
                     lip_gap(on_output.detect(r.output)[0].mesh, depth=True))
                    for r in pipeline.render_frames(open_driver(str(shared_data.parent / case["driver"])))]
        driven, share, gap_d, gap_o = np.array(rows).T
        shares[mouth], gaps[mouth] = share[driven > 0.15].mean(), np.corrcoef(gap_d, gap_o)[0, 1]
    assert shares["drawn"] < 0.02 and shares["driver"] > 0.08, shares  # measured 0.000 and 0.17
    assert gaps["driver"] > 0.85, gaps


def test_the_eye_figures_tell_the_measures_floor_from_the_drawn_eye() -> None:
    """tools/hard_cases.py's score at the driver's closed-eye frames: `eye_vs_driven` the output's
    re-detected openness against the driven lids, `eye_floor` the driver's own against them (what an
    output reading exactly as the driver would score), `eye_vs_driver` the output's against the driver's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    score = importlib.import_module("hard_cases").score
    face = LandmarkTransformer.load().reference * 100 + 200  # a frontal face, both eyes seen, eyes level
    open_ratio = float(eye_openness(face))

    def lids(ratio: float, at: slice) -> np.ndarray:  # (8, 478, 3): the face squashed at frames `at`, its eyes narrower
        meshes = np.stack([face] * 8)
        meshes[at, :, 1] = 200 + (face[:, 1] - 200) * ratio / open_ratio  # (their ratios not quite in proportion)
        return meshes

    shut = slice(2, 5)  # the driver's, the driven and the output's eyes at those frames: 0.069, 0.049, 0.093 open
    driver, driven, output = lids(0.05, shut), lids(0.01, shut), lids(0.08, shut)
    d, v, o = (float(eye_openness(m[3])) for m in (driver, driven, output))
    assert v < d < o < CLOSED_EYE and eye_openness(driver[0]) > CLOSED_EYE
    figures = score({"driver": driver, "driven": driven, "output": output, "folded": np.zeros(8)})
    assert figures["eye_closed_n"] == 3 and figures["eye_recall"] == 1.0
    assert figures["eye_vs_driven"] == pytest.approx(o - v)
    assert figures["eye_floor"] == pytest.approx(d - v)
    assert figures["eye_vs_driver"] == pytest.approx(o - d)
    assert np.isnan(figures["real_eye_recall"]) and np.isnan(figures["real_eye_vs_driven"])  # a run from before the control
    # the output with the driver's eyes laid in: read shut at two of the three frames, no face at the third
    lent = lids(0.05, shut)
    lent[[0, 1, 5, 6, 7]] = np.nan  # the driver's eyes open there: not laid in
    lent[4] = np.nan  # no face found
    figures = score({"driver": driver, "driven": driven, "output": output, "driver_eyes": lent, "folded": np.zeros(8)})
    assert figures["real_eye_recall"] == pytest.approx(2 / 3)
    assert figures["real_eye_vs_driven"] == pytest.approx(d - v)  # the two faces found: the driver's eyes, 0.069 open


def test_the_drivers_eyes_laid_into_the_output_replace_its_eyes_only() -> None:
    """tools/hard_cases.py's control for the eye figures: the driver's eye regions, moved onto the driven
    eyes and matched to the output's colours there, darken the output's eye openings where the driver's
    eyes are dark; pixels far from the eyes are untouched."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    driver_eyes = importlib.import_module("hard_cases").driver_eyes
    face = LandmarkTransformer.load().reference * 100 + 200  # (478, 3) a frontal face in a 400 px image
    moved = face + [15, -10, 0]  # the driver's face elsewhere in its frame
    rng = np.random.default_rng(0)
    output = np.clip(rng.normal(128, 20, (400, 400, 3)), 0, 255).astype(np.uint8)
    driver = np.full((400, 400, 3), 200, np.uint8)
    for opening in MESH_EYE_OPENINGS:  # dark openings on a light face
        cv2.fillPoly(driver, [np.round(moved[opening, :2]).astype(np.int32)], (20, 20, 20))
    laid = driver_eyes(output, driver, moved, face)
    eyes = np.zeros((400, 400), np.uint8)
    for opening in MESH_EYE_OPENINGS:
        cv2.fillPoly(eyes, [np.round(face[opening, :2]).astype(np.int32)], 1)
    luma = laid.astype(np.float32).mean(-1)
    assert luma[eyes > 0].mean() < 128 - 10, luma[eyes > 0].mean()  # measured 108: a spread (20) darker
    far = np.ones((400, 400), bool)
    far[int(face[:, 1].min()):int(face[:, 1].max()), int(face[:, 0].min()):int(face[:, 0].max())] = False
    assert np.array_equal(laid[far], output[far])
