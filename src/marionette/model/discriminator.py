"""Discriminator D (paper §Proposed method, "Discriminator"; ours where the paper's details were
not recovered): a spectral-norm residual network on concat(image, landmark image) scored with the
hinge loss; its intermediate features feed the feature matching loss.

Ours: with model.mouth_disc_channels > 0, D also holds a patch discriminator of the driver's mouth
crop (losses.region_crops, 48 px) beside the same crop of its landmark image, scoring each patch:
the whole-image D, a few logits for the face, never learned to tell the warp's dark mouth from
teeth on CPU (docs/training.md); the crop makes the mouth the whole picture."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import ResidualDown, conv


@dataclass(frozen=True)
class DiscriminatorOutput:
    score: torch.Tensor  # (B,) realism score (hinge: > 1 confidently real, < -1 confidently fake); the mouth's (B, P), per patch
    features: tuple[torch.Tensor, ...]  # block outputs (B, C_j, H/2^j, W/2^j), j = 1..5, for feature matching


class Discriminator(nn.Module):
    """Spectral-norm conv3x3 stem, five residual down blocks to H/32, ReLU, sum over positions and
    a spectral-norm linear layer to one score (ours, after BigGAN's residual discriminator)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.stem = conv(6, config.disc_width(0), 3, spectral=True)
        self.blocks = nn.ModuleList(ResidualDown(config.disc_width(level - 1), config.disc_width(level), norm=False,
                                                 spectral=True) for level in range(1, LEVELS + 1))
        self.head = nn.utils.parametrizations.spectral_norm(nn.Linear(config.disc_width(LEVELS), 1))

        self.mouth = MouthDiscriminator(config.mouth_disc_channels) if config.mouth_disc_channels else None

    def forward(self, image: torch.Tensor, landmark_image: torch.Tensor, part: str = "image") -> DiscriminatorOutput:
        """part "image": the whole frame (B, 3, S, S); "mouth": mouth crops (B, 3, 48, 48) and their
        landmark crops, scored by the mouth's patch discriminator (one forward for both, so that a DDP
        wrapper sees every call)."""
        if part == "mouth":
            assert self.mouth is not None, "model.mouth_disc_channels is 0"
            return self.mouth(image, landmark_image)
        assert part == "image", part
        b = image.shape[0]
        assert image.shape == landmark_image.shape == (b, 3, self.image_size, self.image_size), image.shape
        x = self.stem(torch.cat((image, landmark_image), dim=1))  # (B, C_0, H, W)
        features = []
        for block in self.blocks:
            x = block(x)  # (B, C_j, H/2^j, W/2^j)
            features.append(x)
        score = self.head(torch.relu(x).sum(dim=(2, 3))).squeeze(1)  # (B, C_5) -> (B,)
        return DiscriminatorOutput(score=score, features=tuple(features))


class MouthDiscriminator(nn.Module):
    """Ours: spectral-norm conv3x3 stem and three residual down blocks (48 -> 6 px), then a 1x1 conv
    to one score per 8x8-px cell of the crop (a PatchGAN's local verdicts, for teeth and lips)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        widths = (channels, 2 * channels, 4 * channels, 4 * channels)
        self.stem = conv(6, widths[0], 3, spectral=True)
        self.blocks = nn.Sequential(*(ResidualDown(a, b, norm=False, spectral=True) for a, b in zip(widths, widths[1:])))
        self.head = conv(widths[-1], 1, 1, spectral=True)

    def forward(self, crop: torch.Tensor, landmark_crop: torch.Tensor) -> DiscriminatorOutput:
        assert crop.shape == landmark_crop.shape and crop.shape[1] == 3, crop.shape
        x = self.blocks(self.stem(torch.cat((crop, landmark_crop), dim=1)))  # (B, 4C, h/8, w/8)
        return DiscriminatorOutput(score=self.head(torch.relu(x)).flatten(1), features=(x,))  # score (B, h/8 · w/8)
