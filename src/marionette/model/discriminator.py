"""Discriminator D (paper §Proposed method, "Discriminator"; ours where the paper's details were
not recovered): a spectral-norm residual network on concat(image, landmark image) scored with the
hinge loss; its intermediate features feed the feature matching loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import ResidualDown, conv


@dataclass(frozen=True)
class DiscriminatorOutput:
    score: torch.Tensor  # (B,) realism score (hinge: > 1 confidently real, < -1 confidently fake)
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

    def forward(self, image: torch.Tensor, landmark_image: torch.Tensor) -> DiscriminatorOutput:
        b = image.shape[0]
        assert image.shape == landmark_image.shape == (b, 3, self.image_size, self.image_size), image.shape
        x = self.stem(torch.cat((image, landmark_image), dim=1))  # (B, C_0, H, W)
        features = []
        for block in self.blocks:
            x = block(x)  # (B, C_j, H/2^j, W/2^j)
            features.append(x)
        score = self.head(torch.relu(x).sum(dim=(2, 3))).squeeze(1)  # (B, C_5) -> (B,)
        return DiscriminatorOutput(score=score, features=tuple(features))
