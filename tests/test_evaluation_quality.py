"""The metrics that tell good from bad, on cases whose answer is known: identical images score
perfectly, a blurred copy is further and noisier, closed vs open eyes, a shifted iris, the
identity score of a copy and of another person, pose and expression against the driven
landmarks, and the calibration's separation measure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from marionette.evaluation.calibration import FrameEmbedding, Reference, identity_score, roc_auc, separation
from marionette.evaluation.expression import eye_ratio, gaze_offset
from marionette.evaluation.metrics import (
    REGISTRY,
    Sample,
    Tools,
    kernel_distance,
    measure_sample,
    paired_correlation,
    region_boxes,
    summarize,
)
from marionette.landmarks.layout import MESH_TO_IBUG68

SELF_IMAGE_METRICS = ["psnr", "perceptual", "psnr_mouth", "perceptual_mouth", "psnr_eyes", "perceptual_eyes"]
EYE_METRICS = ["blink_correlation", "closed_eye_recall", "gaze_correlation", "gaze_error"]


@pytest.fixture(scope="module")
def face(hopper):
    """Grace Hopper's portrait scaled to a 256 px crop, with its mesh in the crop's pixels."""
    image, found = hopper
    scale = 256 / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mesh = found.mesh.astype(np.float64) * np.array([scale, scale, scale])
    return small, mesh


@pytest.fixture(scope="module")
def tools() -> Tools:
    return Tools()


def _closed_eyes(mesh: np.ndarray, openness: float = 0.0) -> np.ndarray:
    """The mesh with each upper lid (68-point 37, 38 / 43, 44) moved to `openness` of its height
    above the lower lid (41, 40 / 47, 46): 0 = shut."""
    out = mesh.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        u, lo = MESH_TO_IBUG68[upper], MESH_TO_IBUG68[lower]
        out[u] = mesh[lo] + openness * (mesh[u] - mesh[lo])
    return out


def _shift_irises(mesh: np.ndarray, dx: float) -> np.ndarray:
    out = mesh.copy()
    out[468:478, 0] += dx
    return out


def test_identical_images_score_perfectly(face, tools):
    image, mesh = face
    sample = Sample(mode="self", output=image, truth=image.copy(), truth_mesh=mesh, driver_mesh=mesh,
                    output_mesh=mesh)
    values = measure_sample(sample, SELF_IMAGE_METRICS + ["gaze_error"], tools)
    assert values == {"psnr": float("inf"), "perceptual": 0.0, "psnr_mouth": float("inf"), "perceptual_mouth": 0.0,
                      "psnr_eyes": float("inf"), "perceptual_eyes": 0.0, "gaze_error": 0.0}


def test_blurred_copy_is_further_and_noisier(face, tools):
    image, mesh = face
    values = {}
    for sigma in (1.0, 3.0):
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        sample = Sample(mode="self", output=blurred, truth=image, truth_mesh=mesh)
        values[sigma] = measure_sample(sample, SELF_IMAGE_METRICS, tools)
    for name in SELF_IMAGE_METRICS:
        light, heavy = values[1.0][name], values[3.0][name]
        if name.startswith("psnr"):
            assert np.isfinite(light) and heavy < light < 60  # more blur, lower PSNR
        else:
            assert 0 < light < heavy < 2  # more blur, further
    # a blur only inside the mouth box moves the mouth's figures and leaves the eyes' untouched
    x0, y0, x1, y1 = region_boxes(mesh, "mouth", image.shape)[0]
    mouth_only = image.copy()
    mouth_only[y0:y1, x0:x1] = cv2.GaussianBlur(image, (0, 0), 3.0)[y0:y1, x0:x1]
    local = measure_sample(Sample(mode="self", output=mouth_only, truth=image, truth_mesh=mesh), SELF_IMAGE_METRICS,
                           tools)
    assert local["psnr_eyes"] == float("inf") and local["perceptual_eyes"] == 0.0
    assert local["perceptual_mouth"] > 0.05 and np.isfinite(local["psnr_mouth"])


def test_region_boxes_hold_their_landmarks(face):
    image, mesh = face
    points = mesh[MESH_TO_IBUG68][:, :2]
    (mx0, my0, mx1, my1), = region_boxes(mesh, "mouth", image.shape)
    assert (points[48:68] >= [mx0, my0]).all() and (points[48:68] <= [mx1, my1]).all()
    right, left = region_boxes(mesh, "eyes", image.shape)
    assert right[2] <= left[0] + 5  # two boxes, one per eye (image left first)
    for (x0, y0, x1, y1), eye in ((right, points[36:42]), (left, points[42:48])):
        assert (eye >= [x0, y0]).all() and (eye <= [x1, y1]).all()


def test_blink_closed_vs_open_eyes(face, tools):
    _, mesh = face
    shut = _closed_eyes(mesh)
    assert eye_ratio(mesh) > 0.2 and eye_ratio(shut) < 0.02
    recall = REGISTRY["closed_eye_recall"].measure
    assert recall(Sample(mode="cross", output=None, driver_mesh=shut, output_mesh=shut), tools) == 1.0
    assert recall(Sample(mode="cross", output=None, driver_mesh=shut, output_mesh=mesh), tools) == 0.0
    assert recall(Sample(mode="cross", output=None, driver_mesh=mesh, output_mesh=shut), tools) is None  # driver open
    unseen = REGISTRY["closed_eye_recall_unseen"].measure  # counted only where no target shows closed lids
    assert unseen(Sample(mode="self", output=None, driver_mesh=shut, output_mesh=shut,
                         target_meshes=np.stack([mesh, mesh])), tools) == 1.0
    assert unseen(Sample(mode="self", output=None, driver_mesh=shut, output_mesh=shut,
                         target_meshes=np.stack([mesh, shut])), tools) is None
    # blinks followed (output = driver's openness) vs ignored (eyes always open) vs inverted
    driver = [_closed_eyes(mesh, o) for o in np.linspace(0, 1, 6)]
    records = {
        "followed": [measure_sample(Sample(mode="cross", output=None, driver_mesh=d, output_mesh=d), EYE_METRICS,
                                    tools) for d in driver],
        "inverted": [measure_sample(Sample(mode="cross", output=None, driver_mesh=d, output_mesh=o), EYE_METRICS,
                                    tools) for d, o in zip(driver, driver[::-1])],
    }
    followed, inverted = summarize(records["followed"]), summarize(records["inverted"])
    assert followed["blink_correlation"] == pytest.approx(1.0)
    assert inverted["blink_correlation"] == pytest.approx(-1.0)
    assert followed["closed_eye_recall"] == 1.0 and inverted["closed_eye_recall"] == 0.0


def test_gaze_of_a_horizontally_shifted_iris(face, tools):
    _, mesh = face
    points = mesh[MESH_TO_IBUG68][:, :2]
    width = np.mean([np.linalg.norm(points[39] - points[36]), np.linalg.norm(points[45] - points[42])])
    before = gaze_offset(mesh)
    assert np.abs(before).max() < 0.15  # a portrait looking at the camera: irises near the eye centres
    moved = _shift_irises(mesh, 0.2 * width)
    assert gaze_offset(moved)[0] - before[0] == pytest.approx(0.2, abs=0.02)  # along the eye, to the image right
    assert gaze_offset(moved)[1] == pytest.approx(before[1], abs=0.02)
    shifted = Sample(mode="cross", output=None, driver_mesh=mesh, output_mesh=moved)
    error = REGISTRY["gaze_error"].measure(shifted, tools)
    assert error == pytest.approx(0.2, abs=0.02)
    shifts = np.linspace(-0.2, 0.2, 5) * width
    records = [measure_sample(Sample(mode="cross", output=None, driver_mesh=_shift_irises(mesh, d),
                                     output_mesh=_shift_irises(mesh, d)), ["gaze_correlation"], tools) for d in shifts]
    assert summarize(records)["gaze_correlation"] == pytest.approx(1.0, abs=1e-6)  # along: r = 1; across: no spread


def test_identity_score_of_a_copy_is_one_and_of_another_person_near_zero(face, tools, shared_data):
    from marionette.media import load_image

    image, mesh = face
    others = [load_image(shared_data / "faces" / n) for n in ("03_barack_obama_official.jpg",
                                                               "01_eileen_collins_nasa.jpg",
                                                               "13_alex_lacamoire.jpg")]
    # references of Grace Hopper's identity: a second "frame" (the portrait shifted and rescaled) and strangers
    frame2 = cv2.resize(image[8:, 6:], (256, 256), interpolation=cv2.INTER_AREA)
    own = [tools.embedding(im, None) for im in (image, frame2)]
    strangers = [tools.embedding(im, None) for im in others]
    same = float(own[0] @ own[1])
    different = float(np.mean([own[0] @ s for s in strangers]))
    assert same > different
    reference = Reference(same, different)
    copy = Sample(mode="cross", output=image.copy(), targets=image[None], target_meshes=mesh[None],
                  identity_reference=reference)
    assert measure_sample(copy, ["identity_score"], tools)["identity_score"] == 1.0
    stranger = Sample(mode="cross", output=others[0], targets=image[None], target_meshes=mesh[None],
                      identity_reference=reference)
    assert measure_sample(stranger, ["identity_score"], tools)["identity_score"] < 0.25


def test_identity_score_and_separation_on_known_embeddings():
    assert identity_score(0.9, 0.9, 0.5) == 1.0 and identity_score(0.7, 0.9, 0.5) == pytest.approx(0.5)
    assert identity_score(0.2, 0.9, 0.5) == 0.0
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.25)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    found = [FrameEmbedding(f"id{i}", f"id{i}_clip", p, centres[i] + 0.1 * rng.normal(size=16))
             for i in range(4) for p in range(4)]
    result = separation(found)
    assert result.auc == 1.0 and result.identities == 4
    assert result.same_pairs == 4 * 2 * 1 and result.different_pairs == 8 * 7 - 8
    assert result.same_pairs_other_clip == 0 and np.isnan(result.auc_other_clip)  # one clip per identity


def test_pose_and_expression_against_the_driven_landmarks(face, tools):
    _, mesh = face
    turned = mesh.copy()
    turned[:, 0] = 2 * mesh[:, 0].mean() - mesh[:, 0]  # mirrored: another pose and expression side
    sample = Sample(mode="cross", output=None, output_mesh=mesh, driven_mesh=mesh, driver_mesh=turned,
                    driver_clip_meshes=turned[None], target_meshes=mesh[None])
    values = measure_sample(sample, ["prmse", "prmse_driven", "expression_agreement_driven"], tools)
    assert values["prmse_driven"] == 0.0 and values["expression_agreement_driven"] == 1.0
    assert values["prmse"] > 0.0  # the driver's own pose is another question
    shut = _closed_eyes(mesh)
    asked_to_blink = Sample(mode="cross", output=None, output_mesh=mesh, driven_mesh=shut, driver_mesh=shut,
                            target_meshes=mesh[None])
    # both eye indicators disagree (lowered lids also move the eye centres, so the brows may count as raised)
    agreement = measure_sample(asked_to_blink, ["expression_agreement_driven"], tools)["expression_agreement_driven"]
    assert agreement <= 3 / 5


def test_kid_is_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 32)), rng.normal(size=(200, 32))
    same, shifted, wider = kernel_distance(x, y), kernel_distance(x, y + 0.5), kernel_distance(x, 1.5 * y)
    assert abs(same) < 0.05 * min(shifted, wider) and shifted > 1.0 and wider > 0.1
    assert kernel_distance(x[:100], x[100:]) < 0.05


def test_kid_on_vgg_features_tells_a_blurred_set_from_a_sharp_one(hopper):
    """Results drawn from the ground truth's distribution (the same portrait, other small shifts)
    score about 0; the same results blurred score far above."""
    image, _ = hopper
    scale = 64 / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def moved(seed: int) -> np.ndarray:
        dx, dy = np.random.default_rng(seed).uniform(-6, 6, 2)
        return cv2.warpAffine(small, np.float32([[1, 0, dx], [0, 1, dy]]), small.shape[1::-1],
                              borderMode=cv2.BORDER_REFLECT)

    tools = Tools()
    figures = {}
    for name, output in (("sharp", moved), ("blurred", lambda i: cv2.GaussianBlur(moved(i), (0, 0), 2.0))):
        records = [measure_sample(Sample(mode="self", output=output(100 + i), truth=moved(i), truth_key=str(i)),
                                  ["kid"], tools) for i in range(6)]
        figures[name] = summarize(records)["kid"]
    assert figures["blurred"] > 10.0 and abs(figures["sharp"]) < 0.05 * figures["blurred"]  # measured: -0.7, 192


def test_one_registry_names_every_metric():
    assert set(REGISTRY) >= {"l1", "psnr", "ssim", "lpips", "perceptual", "psnr_mouth", "perceptual_mouth",
                             "psnr_eyes", "perceptual_eyes", "kid", "csim", "identity_score", "prmse", "prmse_driven",
                             "expression_agreement", "expression_agreement_driven", "expression_correlation",
                             "blink_correlation", "closed_eye_recall", "closed_eye_recall_unseen", "gaze_correlation",
                             "gaze_error", "nme", "motion_correlation", "motion_error", "landmark_jitter", "flicker", "jumps",
                             "face_found"}
    # motion fidelity against the driven landmarks is measured in both modes, beside identity
    assert all(REGISTRY[name].modes == ("self", "cross") for name in ("csim", "identity_score", "prmse_driven",
                                                                      "expression_agreement_driven", "nme"))
    assert paired_correlation([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]]) == pytest.approx(0.9934, abs=1e-3)
