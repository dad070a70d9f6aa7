"""Driver encoder E_x (paper §Proposed method, "Architecture", Fig. 2): encodes only the driver's
landmark image r_x into z_x, the queries of the blender. Ours, in the warp-guided model
(`ModelConfig.warp_guided`): r_x and the warp renderer's image of the driver, stacked (6 channels)."""

from __future__ import annotations

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import ResidualDown, conv


class DriverEncoder(nn.Module):
    """conv3x3 to width(0), then residual down blocks to (B, width(4), H/16, W/16): at 256 px
    64-128-256-512-512, z_x (B, 512, 16, 16)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.in_channels = 6 if config.warp_guided else 3
        self.stem = conv(self.in_channels, config.width(0), 3)
        self.blocks = nn.Sequential(*(
            ResidualDown(config.width(level - 1), config.width(level), norm=True, spectral=False)
            for level in range(1, LEVELS)))
        self.out_channels = config.width(LEVELS - 1)

    def forward(self, driver: torch.Tensor) -> torch.Tensor:  # (B, 3 or 6, H, W) -> (B, C, H/16, W/16)
        batch = driver.shape[0]
        assert driver.shape == (batch, self.in_channels, self.image_size, self.image_size), driver.shape
        z = self.blocks(self.stem(driver))
        side = self.image_size // 2 ** (LEVELS - 1)
        assert z.shape == (batch, self.out_channels, side, side), z.shape
        return z
