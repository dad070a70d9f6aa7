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
the blend mask does. `region_weight` (ours) adds pixel L1 and perceptual terms on crops around the
driver's mouth and eyes (from its 68 landmarks), where the warp is most wrong and the whole-image
terms, averaged over a face, hardly see it. With adversarial_weight and feature_matching_weight both
0 the whole-image discriminator is never run. `mouth_adversarial_weight` (ours) adds the hinge term of
D's patch discriminator on the driver's mouth crop (and its landmark image's); with no D term at all
there is no D step (`uses_discriminator`). `openness_weight` (ours, openness.py) asks the output's eyes
and mouth (the eyes alone with `openness_mouth` false) to be re-detected by the face mesh network as
open as the truth's.
`perceptual_scale` < 1 (ours) runs the whole-image VGG terms on images resized by that factor: at
0.5 a quarter of their cost, the larger share of a CPU step; the region crops keep the full detail
of the mouth and eyes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from marionette.landmarks.layout import LEFT_EYE, MOUTH, RIGHT_EYE
from marionette.model.config import LossConfig
from marionette.model.discriminator import Discriminator
from marionette.model.openness import MeshOpenness
from marionette.model.vgg import VGGFeatures, load_vgg19, load_vgg_face


@dataclass(frozen=True)
class DiscriminatorLosses:
    total: torch.Tensor  # real + fake scaled by adversarial_weight, + the mouth's scaled by mouth_adversarial_weight
    real: torch.Tensor  # mean relu(1 - D(real)); 0 without the whole-image terms
    fake: torch.Tensor  # mean relu(1 + D(fake))
    real_score: torch.Tensor | None  # (B,) D(real), detached: for the training's diagnostics, not a loss; None if not run
    fake_score: torch.Tensor | None  # (B,) D(fake), detached
    mouth_real: torch.Tensor | None = None  # ours: the same on the mouth crops (per patch); None without the mouth's D
    mouth_fake: torch.Tensor | None = None
    mouth_real_score: torch.Tensor | None = None  # (B, P) detached
    mouth_fake_score: torch.Tensor | None = None

    def as_dict(self) -> dict[str, float]:
        """The losses by name (not the scores)."""
        return {f"D/{name}": float(getattr(self, name).detach())
                for name in ("total", "real", "fake", "mouth_real", "mouth_fake") if getattr(self, name) is not None}


@dataclass(frozen=True)
class GeneratorLosses:
    total: torch.Tensor  # weighted sum of the terms below
    adversarial: torch.Tensor  # -mean D(fake), unweighted
    feature_matching: torch.Tensor  # mean over D blocks of L1(D features of fake, of real), unweighted
    perceptual: torch.Tensor  # mean over the VGG19's taps (relu1_1..relu3_1 shipped, ..relu5_1 full) of L1, unweighted
    face_perceptual: torch.Tensor  # the same with VGG-Face; zero when the face network is off
    pixel: torch.Tensor  # mean absolute pixel difference, unweighted (ours; weight 0 by default)
    painted: torch.Tensor  # ours: the reconstruction terms (weighted) on the blend's painted image; zero without one
    region: torch.Tensor  # ours: pixel L1 + perceptual on the mouth and eye crops, unweighted; zero when region_weight is 0
    mouth_adversarial: torch.Tensor  # ours: -mean over the mouth crop's patches of D(fake), unweighted; zero when off
    openness: torch.Tensor  # ours: mean |eye ratios (and lip gap) of fake - of real| as the face mesh reads them; zero when off
    distill: torch.Tensor  # ours: pixel L1 + perceptual of fake against the teacher's image (and on the region crops
    # given the landmarks), unweighted; zero when off

    def as_dict(self) -> dict[str, float]:
        return {f"G/{f.name}": float(getattr(self, f.name).detach()) for f in dataclasses.fields(self)}


# ours: the regions of the region terms, iBUG-68 point groups (mouth, the subject's right eye, left
# eye), and the crop around each: a square `REGION_SCALE` x the points' larger extent, resampled to REGION_SIZE px
REGIONS = (MOUTH, RIGHT_EYE, LEFT_EYE)
REGION_SCALE, REGION_SIZE = 1.6, 48


def region_crops(images: torch.Tensor, landmarks: torch.Tensor, regions: tuple[slice, ...] = REGIONS) -> torch.Tensor:
    """images (B, 3, S, S), landmarks (B, 68, >=2) in crop pixels -> the crops of `regions` (iBUG-68
    point groups) (B·len(regions), 3, REGION_SIZE, REGION_SIZE), bilinear, region-major within each image."""
    b, size = images.shape[0], images.shape[-1]
    thetas = []
    for indices in regions:
        points = landmarks[:, indices, :2].float()  # (B, n, 2)
        low, high = points.amin(dim=1), points.amax(dim=1)  # (B, 2)
        centre = (low + high) / 2 / size * 2 - 1  # (B, 2) in grid units
        side = REGION_SCALE * (high - low).amax(dim=1).clamp(min=4.0) / size  # (B,) fraction of the image side
        theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side, side, centre
        thetas.append(theta)
    theta = torch.stack(thetas, dim=1).flatten(0, 1)  # (B·R, 2, 3)
    grid = F.affine_grid(theta, [theta.shape[0], 3, REGION_SIZE, REGION_SIZE], align_corners=False)
    repeated = images.unsqueeze(1).expand(b, len(regions), *images.shape[1:]).flatten(0, 1)  # (B·R, 3, S, S)
    return F.grid_sample(repeated, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
                 face_perceptual: VGGFeatures | None, openness: MeshOpenness | None = None) -> None:
        self.config = config
        self.discriminator = discriminator  # trained in the D step (a DDP wrapper under torchrun)
        # ours: the G step scores through the raw D with its weights frozen, so no D gradient is
        # computed (or all-reduced under DDP) only to be discarded by the next D step
        self.critic: Discriminator = getattr(discriminator, "module", discriminator)
        self.perceptual = perceptual
        self.face_perceptual = face_perceptual
        self.openness = openness  # needed when openness_weight > 0

    def to(self, device: torch.device) -> Objective:
        """Its loss networks (VGG, VGG-Face, the face mesh) moved to `device`; D is the caller's."""
        for network in (self.perceptual, self.face_perceptual, self.openness):
            if network is not None:
                network.to(device)
        return self

    @property
    def uses_image_discriminator(self) -> bool:
        """Whether a term needs the whole-image D."""
        return self.config.adversarial_weight > 0 or self.config.feature_matching_weight > 0

    @property
    def uses_mouth_discriminator(self) -> bool:
        """Whether the mouth's adversarial term is on (ours)."""
        return self.config.mouth_adversarial_weight > 0

    @property
    def uses_discriminator(self) -> bool:
        """Whether any term needs D, whole-image or the mouth's (else there is no D step)."""
        return self.uses_image_discriminator or self.uses_mouth_discriminator

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, landmark_image: torch.Tensor,
                           landmarks: torch.Tensor | None = None) -> DiscriminatorLosses:
        """real, fake (B, 3, H, W) images, landmark_image (B, 3, H, W) the driver's; fake is detached;
        landmarks (B, 68, 3) the driver's in crop pixels (needed when mouth_adversarial_weight > 0)."""
        c = self.config
        total = loss_real = loss_fake = real.new_zeros(())
        real_score = fake_score = None
        if self.uses_image_discriminator:
            real_score = self.discriminator(real, landmark_image).score  # (B,)
            fake_score = self.discriminator(fake.detach(), landmark_image).score  # (B,)
            loss_real, loss_fake = hinge_discriminator(real_score, fake_score)
            total = c.adversarial_weight * (loss_real + loss_fake)
            real_score, fake_score = real_score.detach(), fake_score.detach()
        mouth: dict[str, torch.Tensor] = {}
        if self.uses_mouth_discriminator:
            real_crop, fake_crop, landmark_crop = self._mouth_crops((real, fake.detach(), landmark_image), landmarks)
            mouth_real_score = self.discriminator(real_crop, landmark_crop, part="mouth").score  # (B, P)
            mouth_fake_score = self.discriminator(fake_crop, landmark_crop, part="mouth").score  # (B, P)
            mouth_real, mouth_fake = hinge_discriminator(mouth_real_score, mouth_fake_score)
            total = total + c.mouth_adversarial_weight * (mouth_real + mouth_fake)
            mouth = dict(mouth_real=mouth_real, mouth_fake=mouth_fake, mouth_real_score=mouth_real_score.detach(),
                         mouth_fake_score=mouth_fake_score.detach())
        return DiscriminatorLosses(total=total, real=loss_real, fake=loss_fake, real_score=real_score,
                                   fake_score=fake_score, **mouth)

    @staticmethod
    def _mouth_crops(images: tuple[torch.Tensor, ...], landmarks: torch.Tensor | None) -> list[torch.Tensor]:
        """Each (B, 3, S, S) of `images` cropped to the driver's mouth: (B, 3, REGION_SIZE, REGION_SIZE)."""
        if landmarks is None:
            raise ValueError("loss.mouth_adversarial_weight > 0 needs the driver's landmarks")
        return [region_crops(image, landmarks, (MOUTH,)) for image in images]

    def generator_step(self, fake: torch.Tensor, real: torch.Tensor, landmark_image: torch.Tensor,
                       painted: torch.Tensor | None = None, landmarks: torch.Tensor | None = None,
                       teacher: torch.Tensor | None = None) -> GeneratorLosses:
        """fake (B, 3, H, W) from G, real (B, 3, H, W) the driver frame (ground truth), landmark_image
        its r_x; painted (B, 3, H, W) the blend correction's painted image (GeneratorOutput.painted);
        landmarks (B, 68, 3) the driver's, in crop pixels (needed when region_weight, mouth_adversarial_weight or
        openness_weight > 0); teacher (B, 3, H, W) a frozen generator's image of the same episode (needed
        when distill_weight > 0)."""
        c = self.config
        adversarial = feature_matching = mouth_adversarial = fake.new_zeros(())
        if self.uses_discriminator:
            self.critic.requires_grad_(False)  # the graph records D's weights as constants
            try:
                if self.uses_image_discriminator:
                    fake_d = self.critic(fake, landmark_image)
                if self.uses_mouth_discriminator:
                    fake_crop, landmark_crop = self._mouth_crops((fake, landmark_image), landmarks)
                    mouth_adversarial = hinge_generator(self.critic(fake_crop, landmark_crop, part="mouth").score)
            finally:
                self.critic.requires_grad_(True)
        if self.uses_image_discriminator:
            with torch.no_grad():
                real_d = self.critic(real, landmark_image)
            adversarial = hinge_generator(fake_d.score)
            feature_matching = feature_distance(fake_d.features, real_d.features)
        with torch.no_grad():
            real_vgg = self.perceptual(self._scaled(real))
            real_face = None if self.face_perceptual is None else self.face_perceptual(self._scaled(real))
        if c.region_weight > 0 and landmarks is None:
            raise ValueError("loss.region_weight > 0 needs the driver's landmarks")
        fake_vgg = self.perceptual(self._scaled(fake))  # once: the truth's and the teacher's terms read them
        regions = None  # the mouth and eye crops and their VGG features, once for the region and distill terms
        if landmarks is not None and (c.region_weight > 0 or c.distill_weight > 0):
            crops = region_crops(fake, landmarks)
            regions = (crops, self.perceptual(crops))
        region = fake.new_zeros(()) if c.region_weight == 0 else self._region_distance(regions, real, landmarks)
        openness = fake.new_zeros(())
        if c.openness_weight > 0:
            if landmarks is None or self.openness is None:
                raise ValueError("loss.openness_weight > 0 needs the driver's landmarks and the face mesh")
            with torch.no_grad():
                real_openness = self.openness(real, landmarks)  # (B, 3)
            measured = slice(None) if c.openness_mouth else slice(0, 2)  # (eyes, eyes, lip gap) or the eyes alone
            openness = F.l1_loss(self.openness(fake, landmarks)[:, measured], real_openness[:, measured])
        pixel, perceptual, face_perceptual = self._reconstruction(fake, real, real_vgg, real_face, fake_vgg)
        distill = fake.new_zeros(())
        if c.distill_weight > 0:
            if teacher is None:
                raise ValueError("loss.distill_weight > 0 needs the teacher's image")
            with torch.no_grad():
                teacher_vgg = self.perceptual(self._scaled(teacher))
            distill = F.l1_loss(fake, teacher) + feature_distance(fake_vgg, teacher_vgg)
            if regions is not None:  # and on the mouth and eye crops, which the whole image's average hardly sees
                distill = distill + self._region_distance(regions, teacher, landmarks)
        painted_terms = fake.new_zeros(())
        if painted is not None and c.painted_weight > 0:
            painted_pixel, painted_perceptual, painted_face = self._reconstruction(painted, real, real_vgg, real_face)
            painted_terms = (c.pixel_weight * painted_pixel + c.perceptual_weight * painted_perceptual
                             + c.face_perceptual_weight * painted_face)
        total = (c.adversarial_weight * adversarial + c.feature_matching_weight * feature_matching
                 + c.perceptual_weight * perceptual + c.face_perceptual_weight * face_perceptual
                 + c.pixel_weight * pixel + c.painted_weight * painted_terms + c.region_weight * region
                 + c.mouth_adversarial_weight * mouth_adversarial + c.openness_weight * openness
                 + c.distill_weight * distill)
        return GeneratorLosses(total=total, adversarial=adversarial, feature_matching=feature_matching,
                               perceptual=perceptual, face_perceptual=face_perceptual, pixel=pixel,
                               painted=painted_terms, region=region, mouth_adversarial=mouth_adversarial,
                               openness=openness, distill=distill)

    def _region_distance(self, regions: tuple[torch.Tensor, list[torch.Tensor]], truth: torch.Tensor,
                         landmarks: torch.Tensor) -> torch.Tensor:
        """Unweighted pixel L1 + perceptual distance of an image's mouth and eye crops and their VGG
        features (`regions`; `region_crops` at the (B, 68, 3) landmarks) to the crops of `truth` (B, 3, H, W)."""
        crops, features = regions
        truth_crops = region_crops(truth, landmarks)
        with torch.no_grad():
            truth_vgg = self.perceptual(truth_crops)
        return F.l1_loss(crops, truth_crops) + feature_distance(features, truth_vgg)

    def _scaled(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) resized by perceptual_scale (area-averaged), as the whole-image VGG terms see it."""
        if self.config.perceptual_scale == 1:
            return image
        return F.interpolate(image, scale_factor=self.config.perceptual_scale, mode="area")

    def _reconstruction(self, image: torch.Tensor, real: torch.Tensor, real_vgg: list[torch.Tensor],
                        real_face: list[torch.Tensor] | None, image_vgg: list[torch.Tensor] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted pixel L1, perceptual and face perceptual (zero when off) terms of an image
        (B, 3, H, W) against the truth, given the truth's VGG features (and the image's, when computed already)."""
        scaled = self._scaled(image)
        perceptual = feature_distance(self.perceptual(scaled) if image_vgg is None else image_vgg, real_vgg)
        face = image.new_zeros(()) if real_face is None else feature_distance(self.face_perceptual(scaled), real_face)
        return F.l1_loss(image, real), perceptual, face


def build_objective(config: LossConfig, discriminator: Discriminator) -> Objective:
    """The objective with its perceptual networks loaded as LossConfig says (and the face mesh when
    the openness term is on)."""
    return Objective(config, discriminator, load_vgg19(config.perceptual_weights), load_vgg_face(config.face_weights),
                     MeshOpenness() if config.openness_weight > 0 else None)
