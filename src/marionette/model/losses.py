"""The objective (paper §Proposed method, "Loss functions"), kept outside the networks: hinge
adversarial loss, discriminator feature matching, VGG19 perceptual and face (VGG-Face)
perceptual losses, with an explicit discriminator step and generator step. Every weight comes
from LossConfig; every term is returned by name for logging.

The training loop calls `discriminator_step`, backpropagates `.total` into D only (zeroing D's
gradients first), then `generator_step` and backpropagates its `.total` into G (D's weights are
frozen in that pass).
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

    def generator_step(self, fake: torch.Tensor, real: torch.Tensor, landmark_image: torch.Tensor) -> GeneratorLosses:
        """fake (B, 3, H, W) from G, real (B, 3, H, W) the driver frame (ground truth), landmark_image its r_x."""
        c = self.config
        self.critic.requires_grad_(False)  # the graph records D's weights as constants
        try:
            fake_d = self.critic(fake, landmark_image)
        finally:
            self.critic.requires_grad_(True)
        with torch.no_grad():
            real_d = self.critic(real, landmark_image)
            real_vgg = self.perceptual(real)
        adversarial = hinge_generator(fake_d.score)
        feature_matching = feature_distance(fake_d.features, real_d.features)
        perceptual = feature_distance(self.perceptual(fake), real_vgg)
        if self.face_perceptual is None:
            face_perceptual = fake.new_zeros(())
        else:
            with torch.no_grad():
                real_face = self.face_perceptual(real)
            face_perceptual = feature_distance(self.face_perceptual(fake), real_face)
        pixel = F.l1_loss(fake, real)
        total = (c.adversarial_weight * adversarial + c.feature_matching_weight * feature_matching
                 + c.perceptual_weight * perceptual + c.face_perceptual_weight * face_perceptual
                 + c.pixel_weight * pixel)
        return GeneratorLosses(total=total, adversarial=adversarial, feature_matching=feature_matching,
                               perceptual=perceptual, face_perceptual=face_perceptual, pixel=pixel)


def build_objective(config: LossConfig, discriminator: Discriminator) -> Objective:
    """The objective with its perceptual networks loaded as LossConfig says."""
    return Objective(config, discriminator, load_vgg19(config.perceptual_weights), load_vgg_face(config.face_weights))
