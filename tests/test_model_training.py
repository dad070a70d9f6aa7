"""The objective: gradients reach every trainable parameter of G and D, hinge signs, named and
weighted terms."""

from __future__ import annotations

import logging

import pytest
import torch

from marionette.config import override
from marionette.model.config import LossConfig, model_config
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator
from marionette.model.losses import (
    REGION_SCALE,
    REGION_SIZE,
    REGIONS,
    build_objective,
    feature_distance,
    hinge_discriminator,
    hinge_generator,
    region_crops,
)

SIZE = 64


@pytest.fixture(scope="module")
def episode() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    return rand(2, 2, 3, SIZE, SIZE), rand(2, 2, 3, SIZE, SIZE), rand(2, 3, SIZE, SIZE), rand(2, 3, SIZE, SIZE)


def face_points(b: int) -> torch.Tensor:
    """(b, 68, 3) iBUG-68 points in SIZE-pixel crops: eyes at rows 24, the mouth at row 44."""
    points = torch.full((b, 68, 3), SIZE / 2)
    points[:, 36:42, :2] = torch.tensor([[18.0, 24], [20, 22], [22, 22], [24, 24], [22, 26], [20, 26]])
    points[:, 42:48, :2] = points[:, 36:42, :2] + torch.tensor([22.0, 0])
    angles = torch.linspace(0, 6.283, 21)[:20]
    points[:, 48:68, 0], points[:, 48:68, 1] = 32 + 8 * torch.cos(angles), 44 + 4 * torch.sin(angles)
    return points


def random_objective(discriminator: Discriminator, **weights: float):
    config = override(LossConfig(), dict(perceptual_weights="random", face_weights="random", **weights))
    return build_objective(config, discriminator)


def test_gradients_reach_every_parameter_of_g_and_d(episode) -> None:
    torch.manual_seed(0)
    c = model_config("tiny")
    g, d = Generator(c), Discriminator(c)
    objective = random_objective(d)
    images, landmarks, driver_landmarks, driver = episode

    fake = g(images, landmarks, driver_landmarks).image
    d_losses = objective.discriminator_step(driver, fake, driver_landmarks)
    d_losses.total.backward()
    assert all(p.grad is None for p in g.parameters())  # the D step does not reach G
    d_params = dict(d.named_parameters())
    assert all(p.grad is not None for p in d_params.values())
    # With every score inside the margin, d(loss)/d(final bias) = -1 + 1: exactly zero, as it should be.
    assert d_params.pop("head.bias").grad.item() == 0
    dead = [n for n, p in d_params.items() if p.grad.abs().sum() == 0]
    assert len(d_params) > 20 and not dead, dead

    d.zero_grad(set_to_none=True)
    g_losses = objective.generator_step(fake, driver, driver_landmarks)
    g_losses.total.backward()
    assert all(p.grad is None for p in d.parameters())  # the G step computes no D gradient
    assert all(p.requires_grad for p in d.parameters())  # and leaves D trainable for its next step
    g_params = dict(g.named_parameters())
    assert len(g_params) > 50
    dead = [n for n, p in g_params.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead
    assert not any(p.requires_grad for p in objective.perceptual.parameters())  # frozen


def test_hinge_losses_have_the_right_signs() -> None:
    real = torch.tensor([2.0, 0.5], requires_grad=True)
    fake = torch.tensor([-2.0, -0.5], requires_grad=True)
    loss_real, loss_fake = hinge_discriminator(real, fake)
    assert loss_real.item() == pytest.approx(0.25) and loss_fake.item() == pytest.approx(0.25)  # only the 0.5s count
    (loss_real + loss_fake).backward()
    # D lowers its loss by raising scores of reals inside the margin and lowering those of fakes
    assert real.grad.tolist() == [0.0, -0.5] and fake.grad.tolist() == [0.0, 0.5]
    confident_wrong = hinge_discriminator(torch.tensor([-1.0]), torch.tensor([1.0]))
    assert [v.item() for v in confident_wrong] == [2.0, 2.0]
    fake_g = torch.tensor([3.0, -1.0], requires_grad=True)
    loss_g = hinge_generator(fake_g)
    assert loss_g.item() == pytest.approx(-1.0)
    loss_g.backward()
    assert (fake_g.grad < 0).all()  # G lowers its loss by raising D's score of fakes, without a margin


def test_terms_are_named_and_weighted_from_config(episode, caplog) -> None:
    torch.manual_seed(0)
    c = override(model_config("tiny"), dict(mouth_disc_channels=4))
    d = Discriminator(c)
    _, _, driver_landmarks, driver = episode
    fake = driver.flip(-1)
    with caplog.at_level(logging.WARNING):
        weighted = random_objective(d, adversarial_weight=0.5, feature_matching_weight=2.0, perceptual_weight=3.0,
                                    face_perceptual_weight=4.0, pixel_weight=5.0, region_weight=6.0,
                                    mouth_adversarial_weight=7.0, openness_weight=8.0, distill_weight=9.0)
    assert "perceptual_weights=random" in caplog.text and "face_weights=random" in caplog.text
    torch.manual_seed(1)
    with torch.no_grad():
        d.eval()  # fix the spectral-norm power iteration so both steps see the same D
        teacher = driver.roll(8, -1)  # a frozen generator's image of the episode
        losses = weighted.generator_step(fake, driver, driver_landmarks, landmarks=face_points(2), teacher=teacher)
    terms = losses.as_dict()
    assert set(terms) == {"G/total", "G/adversarial", "G/feature_matching", "G/perceptual", "G/face_perceptual",
                          "G/pixel", "G/painted", "G/region", "G/mouth_adversarial", "G/openness", "G/distill"}
    assert losses.pixel.item() == pytest.approx((fake - driver).abs().mean().item(), rel=1e-6)
    assert losses.distill.item() > (fake - teacher).abs().mean().item() > 0  # pixel L1 + perceptual
    assert terms["G/painted"] == 0  # no painted image: the warp-guided blend's term
    assert all(v > 0 for k, v in terms.items()
               if k not in ("G/adversarial", "G/mouth_adversarial", "G/total", "G/painted"))
    expected = (0.5 * losses.adversarial + 2 * losses.feature_matching + 3 * losses.perceptual
                + 4 * losses.face_perceptual + 5 * losses.pixel + 6 * losses.region + 7 * losses.mouth_adversarial
                + 8 * losses.openness + 9 * losses.distill)
    assert losses.total.item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        same = weighted.generator_step(driver, driver, driver_landmarks, landmarks=face_points(2), teacher=driver)
    assert same.feature_matching == 0 and same.perceptual == 0 and same.face_perceptual == 0 and same.pixel == 0
    assert same.region == 0 and same.openness == 0 and same.distill == 0
    with pytest.raises(ValueError, match="_weight > 0 needs the driver's landmarks"):
        weighted.generator_step(fake, driver, driver_landmarks, teacher=teacher)
    with pytest.raises(ValueError, match="distill_weight > 0 needs the teacher's image"):
        weighted.generator_step(fake, driver, driver_landmarks, landmarks=face_points(2))
    d_terms = weighted.discriminator_step(driver, fake, driver_landmarks, face_points(2)).as_dict()
    assert set(d_terms) == {"D/total", "D/real", "D/fake", "D/mouth_real", "D/mouth_fake"}
    assert d_terms["D/total"] == pytest.approx(0.5 * (d_terms["D/real"] + d_terms["D/fake"])
                                               + 7 * (d_terms["D/mouth_real"] + d_terms["D/mouth_fake"]), rel=1e-5)
    with pytest.raises(ValueError, match="mouth_adversarial_weight > 0 needs the driver's landmarks"):
        weighted.discriminator_step(driver, fake, driver_landmarks)


def test_face_term_off_is_logged_and_zero(episode, caplog) -> None:
    d = Discriminator(model_config("tiny"))
    _, _, driver_landmarks, driver = episode
    with caplog.at_level(logging.WARNING):
        objective = build_objective(override(LossConfig(), ["perceptual_weights=random"]), d)
    assert "face_weights=none" in caplog.text and objective.face_perceptual is None
    with torch.no_grad():
        assert objective.generator_step(driver.flip(-1), driver, driver_landmarks).face_perceptual == 0


def test_feature_distance_is_mean_l1_over_layers() -> None:
    a = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
    b = [torch.ones(1, 2, 4, 4), torch.full((1, 3, 2, 2), 3.0)]
    assert feature_distance(a, b).item() == pytest.approx(2.0)


def test_region_crops_are_the_mouth_and_the_eyes() -> None:
    image = -torch.ones(1, 3, SIZE, SIZE)
    image[:, 0, 40:49, 24:41] = 1  # a red mouth
    image[:, 1, 21:28, 17:26] = 1  # a green left eye (iBUG 36..41)
    crops = region_crops(image, face_points(1))  # (3, 3, REGION_SIZE, REGION_SIZE)
    assert crops.shape == (len(REGIONS), 3, REGION_SIZE, REGION_SIZE)
    centre = crops[:, :, REGION_SIZE // 2, REGION_SIZE // 2]  # (3 regions, 3 colours)
    assert centre.tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, -1]]
    row = crops[0, 0, REGION_SIZE // 2]  # the mouth spans 1 / REGION_SCALE of the crop's side, with margins
    assert (row > 0).float().mean().item() == pytest.approx(1 / REGION_SCALE, abs=0.08) and row[0] == row[-1] == -1


def test_an_objective_without_discriminator_terms_never_runs_it(episode) -> None:
    d = Discriminator(model_config("tiny"))
    calls = []
    d.register_forward_hook(lambda *_: calls.append(1))
    objective = random_objective(d, adversarial_weight=0, feature_matching_weight=0, pixel_weight=1.0)
    _, _, driver_landmarks, driver = episode
    losses = objective.generator_step(driver.flip(-1), driver, driver_landmarks)
    assert not objective.uses_discriminator and calls == []
    assert losses.adversarial == 0 and losses.feature_matching == 0 and losses.pixel > 0


def test_the_mouth_discriminator_scores_the_mouth_alone_and_learns_teeth_from_a_dark_slot() -> None:
    """The mouth's patch D (ours): without whole-image terms only it runs; G's term reaches the
    output inside the mouth's crop and nowhere else; trained a few dozen steps it tells a mouth
    with teeth from the same mouth as a dark slot (what the warp draws), which the whole-image D
    never learned on CPU."""
    torch.manual_seed(0)
    d = Discriminator(override(model_config("tiny"), dict(mouth_disc_channels=8)))
    whole = []
    d.stem.register_forward_hook(lambda *_: whole.append(1))
    objective = random_objective(d, adversarial_weight=0, feature_matching_weight=0, mouth_adversarial_weight=1.0)
    points = face_points(4)
    background = torch.rand(4, 3, SIZE, SIZE) * 0.4 - 0.2
    teeth = background.clone()
    teeth[:, :, 41:48, 25:40] = torch.tensor([0.9, 0.9, 0.8]).view(3, 1, 1)  # a white row of teeth ...
    teeth[:, :, 44, 25:40] = -0.6  # ... parted by the dark line between the jaws
    slot = background.clone()
    slot[:, :, 41:48, 25:40] = -0.9  # the warp's dark mouth
    landmark_image = torch.zeros(4, 3, SIZE, SIZE)

    fake = slot.clone().requires_grad_(True)
    losses = objective.generator_step(fake, teeth, landmark_image, landmarks=points)
    (grad,) = torch.autograd.grad(losses.mouth_adversarial, fake)
    assert whole == [] and losses.mouth_adversarial.requires_grad
    assert grad[:, :, 40:49, 24:41].abs().sum() > 0 and grad[:, :, :20].abs().sum() == 0  # eyes, brow: untouched

    optimizer = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(60):
        optimizer.zero_grad()
        d_losses = objective.discriminator_step(teeth, slot, landmark_image, points)
        d_losses.total.backward()
        optimizer.step()
    assert whole == [] and d_losses.real_score is None
    scores = objective.discriminator_step(teeth, slot, landmark_image, points)
    assert (scores.mouth_real_score.mean(1) > 0).all() and (scores.mouth_fake_score.mean(1) < 0).all()
