"""The openness term (ours, model/openness.py): the face mesh network run on an image through a
differentiable crop reads the eyes and mouth as the face mesh does, and its gradient opens or
closes them."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
from conftest import ASSETS

from marionette.config import override
from marionette.inference.io import open_driver
from marionette.landmarks.crop import CropConfig, crop_image
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.measures import eye_ratios, lip_gap
from marionette.landmarks.mesh import FaceMesh
from marionette.model.config import LossConfig, model_config
from marionette.model.discriminator import Discriminator
from marionette.model.losses import build_objective
from marionette.model.openness import MeshOpenness

SIZE = 256
OPEN_EYES, CLOSED_EYES = 0, 21  # grid_brbk7n: eye ratio 0.3 at frame 0, a blink (0.05) at frame 21


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Crops of the bundled clip's frames and portraits (B, 3, S, S) in [-1, 1], their 68 landmarks
    (B, 68, 3) and what the face mesh reads on them (B, 3): both eye ratios and the lip gap."""
    frames = [frame for frame, _ in itertools.islice(open_driver(str(ASSETS / "videos" / "grid_brbk7n.mp4")).frames(),
                                                      0, CLOSED_EYES + 1)]
    images = [frames[OPEN_EYES], frames[CLOSED_EYES], frames[10]] + [
        cv2.imread(str(path))[..., ::-1].copy() for path in sorted((ASSETS / "faces").glob("*.jpg"))]
    crops, landmarks, read = [], [], []
    with FaceMesh(video=False, max_faces=1) as mesh:
        for image in images:
            crop = crop_image(image, CropConfig().box(mesh.detect(image)[0].mesh), SIZE)  # as the dataset's
            found = mesh.detect(crop)[0].mesh
            crops.append(crop)
            landmarks.append(mesh_to_ibug68(found))
            read.append(np.r_[eye_ratios(found), lip_gap(found)])
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return batch, torch.from_numpy(np.stack(landmarks)).float(), np.array(read)


@pytest.fixture(scope="module")
def openness() -> MeshOpenness:
    return MeshOpenness()


def test_reads_what_the_face_mesh_reads(faces, openness: MeshOpenness) -> None:
    images, landmarks, read = faces
    with torch.no_grad():
        found = openness(images, landmarks).numpy()  # (B, 3)
    assert read[1, :2].mean() < 0.1 < read[0, :2].mean()  # the frames are what they are said to be
    assert np.abs(found - read).mean() < 0.015  # 0.011 measured; 0.033 with the square 2.5x the points' extent
    assert np.abs(found - read).max() < 0.05
    assert found[1, :2].mean() < 0.1 < found[0, :2].mean()  # the blink read as shut, the open eyes as open


def test_the_term_and_its_gradient(faces) -> None:
    """Zero for the truth itself; for open eyes where the truth's are shut, positive, and descending
    its gradient on the image's pixels closes them as the face mesh reads them; on the eyes alone
    (`openness_mouth` false), the mean of the two eye ratios' differences."""
    images, landmarks, _ = faces
    config = override(LossConfig(), dict(perceptual_weights="random", adversarial_weight=0, feature_matching_weight=0,
                                         openness_weight=1.0))
    objective = build_objective(config, Discriminator(model_config("tiny")))
    real, lm = images[1:2], landmarks[1:2]  # the blink
    same = objective.generator_step(real.clone(), real, torch.zeros_like(real), landmarks=lm)
    assert same.openness.item() == 0
    fake = images[0:1].clone().requires_grad_(True)  # the same face, eyes open
    optimiser = torch.optim.Adam([fake], lr=0.01)
    first = None
    for _ in range(15):
        term = objective.generator_step(fake, real, torch.zeros_like(real), landmarks=lm).openness
        first = term.item() if first is None else first
        optimiser.zero_grad()
        term.backward()
        assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
        optimiser.step()
    with torch.no_grad():
        eyes = objective.openness(fake, lm)[0, :2].mean().item()
    assert first > 0.05 and term.item() < 0.5 * first
    with torch.no_grad():  # the eyes alone: the mean over the two eye ratios only
        eyes_only = build_objective(override(config, dict(openness_mouth=False)), Discriminator(model_config("tiny")))
        measured = (objective.openness(images[0:1], lm) - objective.openness(real, lm)).abs()[0]  # (3,)
        eyes_term = eyes_only.generator_step(images[0:1], real, torch.zeros_like(real), landmarks=lm).openness
    assert eyes_term.item() == pytest.approx(measured[:2].mean().item(), rel=1e-5)
    assert measured[:2].mean() - measured.mean() > 0.02  # the lip gap no longer counts
    assert eyes < objective.openness(images[0:1], lm)[0, :2].mean().item() - 0.05
