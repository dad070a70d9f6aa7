"""The objective (paper §Proposed method, "Loss functions"), kept outside the networks: hinge
adversarial loss, discriminator feature matching, VGG19 perceptual and face (VGG-Face)
perceptual losses, with an explicit discriminator step and generator step. Every weight comes
from LossConfig; every term is returned by name for logging.

The training loop calls `discriminator_step`, backpropagates `.total` into D only (zeroing D's
gradients first), then `generator_step` and backpropagates its `.total` into G (D's weights are
frozen in that pass).

Ours, for the warp-guided model's blend correction: its painted image g gets the output's
reconstruction terms (pixel, perceptual, face perceptual, with their weights) against the truth,
scaled by `painted_weight`, so that the parts upstream of it learn from the first step whatever
the blend mask does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from marionette.model.config import LossConfig
from marionette.model.discriminator import Discriminator
from marionette.model.vgg import VGGFeatures, load_vgg19, load_vgg_face


@dataclass(frozen=True)
class DiscriminatorLosses:
    total: torch.Tensor  # real + fake, scaled by adversarial_weight
    real: torch.Tensor  # mean relu(1 - D(real))
    fake: torch.Tensor  # mean relu(1 + D(fake))
    real_score: torch.Tensor  # (B,) D(real), detached: for the training's diagnostics, not a loss
    fake_score: torch.Tensor  # (B,) D(fake), detached

    def as_dict(self) -> dict[str, float]:
        """The losses by name (not the scores)."""
        return {f"D/{name}": float(getattr(self, name).detach()) for name in ("total", "real", "fake")}


@dataclass(frozen=True)
class GeneratorLosses:
    total: torch.Tensor  # weighted sum of the terms below
    adversarial: torch.Tensor  # -mean D(fake), unweighted
    feature_matching: torch.Tensor  # mean over D blocks of L1(D features of fake, of real), unweighted
    perceptual: torch.Tensor  # mean over the VGG19's taps (relu1_1..relu3_1 shipped, ..relu5_1 full) of L1, unweighted
    face_perceptual: torch.Tensor  # the same with VGG-Face; zero when the face network is off
    pixel: torch.Tensor  # mean absolute pixel difference, unweighted (ours; weight 0 by default)
    painted: torch.Tensor  # ours: the reconstruction terms (weighted) on the blend's painted image; zero without one

    def as_dict(self) -> dict[str, float]:
        return {f"G/{f.name}": float(getattr(self, f.name).detach()) for f in dataclasses.fields(self)}


def hinge_discriminator(real_score: torch.Tensor, fake_score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge loss of D: mean relu(1 - real) and mean relu(1 + fake) (scores (B,))."""
    return F.relu(1 - real_score).mean(), F.relu(1 + fake_score).mean()


def hinge_generator(fake_score: torch.Tensor) -> torch.Tensor:
    """Hinge loss of G: -mean D(fake)."""
    return -fake_score.mean()


def feature_distance(fake: list[torch.Tensor] | tuple[torch.Tensor, ...],
                     real: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean over layers of the mean absolute difference (ours: L1, equal layer weights)."""
    return torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fake, real, strict=True)]).mean()


class Objective:
    def __init__(self, config: LossConfig, discriminator: Discriminator, perceptual: VGGFeatures,
                 face_perceptual: VGGFeatures | None) -> None:
        self.config = config
        self.discriminator = discriminator  # trained in the D step (a DDP wrapper under torchrun)
        # ours: the G step scores through the raw D with its weights frozen, so no D gradient is
        # computed (or all-reduced under DDP) only to be discarded by the next D step
        self.critic: Discriminator = getattr(discriminator, "module", discriminator)
        self.perceptual = perceptual
        self.face_perceptual = face_perceptual

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, landmark_image: torch.Tensor
                           ) -> DiscriminatorLosses:
        """real, fake (B, 3, H, W) images, landmark_image (B, 3, H, W) the driver's; fake is detached."""
        real_score = self.discriminator(real, landmark_image).score  # (B,)
        fake_score = self.discriminator(fake.detach(), landmark_image).score  # (B,)
        loss_real, loss_fake = hinge_discriminator(real_score, fake_score)
        return DiscriminatorLosses(total=self.config.adversarial_weight * (loss_real + loss_fake),
                                   real=loss_real, fake=loss_fake, real_score=real_score.detach(),
                                   fake_score=fake_score.detach())

    def generator_step(self, fake: torch.Tensor, real: torch.Tensor, landmark_image: torch.Tensor,
                       painted: torch.Tensor | None = None) -> GeneratorLosses:
        """fake (B, 3, H, W) from G, real (B, 3, H, W) the driver frame (ground truth), landmark_image
        its r_x; painted (B, 3, H, W) the blend correction's painted image (GeneratorOutput.painted)."""
        c = self.config
        self.critic.requires_grad_(False)  # the graph records D's weights as constants
        try:
            fake_d = self.critic(fake, landmark_image)
        finally:
            self.critic.requires_grad_(True)
        with torch.no_grad():
            real_d = self.critic(real, landmark_image)
            real_vgg = self.perceptual(real)
            real_face = None if self.face_perceptual is None else self.face_perceptual(real)
        adversarial = hinge_generator(fake_d.score)
        feature_matching = feature_distance(fake_d.features, real_d.features)
        pixel, perceptual, face_perceptual = self._reconstruction(fake, real, real_vgg, real_face)
        painted_terms = fake.new_zeros(())
        if painted is not None and c.painted_weight > 0:
            painted_pixel, painted_perceptual, painted_face = self._reconstruction(painted, real, real_vgg, real_face)
            painted_terms = (c.pixel_weight * painted_pixel + c.perceptual_weight * painted_perceptual
                             + c.face_perceptual_weight * painted_face)
        total = (c.adversarial_weight * adversarial + c.feature_matching_weight * feature_matching
                 + c.perceptual_weight * perceptual + c.face_perceptual_weight * face_perceptual
                 + c.pixel_weight * pixel + c.painted_weight * painted_terms)
        return GeneratorLosses(total=total, adversarial=adversarial, feature_matching=feature_matching,
                               perceptual=perceptual, face_perceptual=face_perceptual, pixel=pixel,
                               painted=painted_terms)

    def _reconstruction(self, image: torch.Tensor, real: torch.Tensor, real_vgg: list[torch.Tensor],
                        real_face: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted pixel L1, perceptual and face perceptual (zero when off) terms of an image
        (B, 3, H, W) against the truth, given the truth's VGG features."""
        perceptual = feature_distance(self.perceptual(image), real_vgg)
        face = image.new_zeros(()) if real_face is None else feature_distance(self.face_perceptual(image), real_face)
        return F.l1_loss(image, real), perceptual, face


def build_objective(config: LossConfig, discriminator: Discriminator) -> Objective:
    """The objective with its perceptual networks loaded as LossConfig says."""
    return Objective(config, discriminator, load_vgg19(config.perceptual_weights), load_vgg_face(config.face_weights))
