"""Target encoder E_y with target pose normalization (paper §Proposed method, "Target encoder"
and "Target pose normalization"): a U-Net on concat(y, r_y) whose deepest features are z_y and
whose up path ends in a flow f_y that warps the down-path features S_j into normalized maps Ŝ_j."""

from __future__ import annotations

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import FlowHead, ResidualDown, ResidualUp, conv, warp


class TargetEncoder(nn.Module):
    """Five residual down blocks (widths double, 64..512 at 256 px) and four residual up blocks
    with skips (widths halve); the up path ends at 1/2 resolution in the 2-channel flow f_y."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = conv(6, config.width(0), 3)
        # down[j-1] takes level j-1 to level j; its outputs at levels 1..4 are S_1..S_4, at level 5 z_y.
        self.down = nn.ModuleList(ResidualDown(config.width(level - 1), config.width(level), norm=True, spectral=False)
                                  for level in range(1, LEVELS + 1))
        # up[0] takes z_y (level 5) to level 4; up[i>0] takes concat(u, S_{5-i}) to level 4-i.
        self.up = nn.ModuleList(
            ResidualUp(config.width(level + 1) * (1 if level == LEVELS - 1 else 2), config.width(level))
            for level in range(LEVELS - 1, 0, -1))
        self.flow = FlowHead(2 * config.width(1), 3, config.flow_max)

    def forward(self, images: torch.Tensor, landmark_images: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """images, landmark_images (N, 3, H, W), N = B·K. Returns z_y (N, C_5, H/32, W/32), the
        normalized maps Ŝ_1..Ŝ_4 (N, C_j, H/2^j, W/2^j), and the flow f_y (N, 2, H/2, W/2)."""
        n, size = images.shape[0], self.config.image_size
        assert images.shape == landmark_images.shape == (n, 3, size, size), (images.shape, landmark_images.shape)
        x = self.stem(torch.cat((images, landmark_images), dim=1))  # (N, C_0, H, W)
        features = []
        for block in self.down:
            x = block(x)  # (N, C_j, H/2^j, W/2^j)
            features.append(x)
        *skips, z = features
        u = self.up[0](z)  # (N, C_4, H/16, W/16)
        for block, skip in zip(self.up[1:], reversed(skips[1:])):
            u = block(torch.cat((u, skip), dim=1))  # (N, 2·C_j, H/2^j, W/2^j) -> (N, C_{j-1}, ...)
        flow = self.flow(torch.cat((u, skips[0]), dim=1))  # (N, 2, H/2, W/2)
        # paper: the flow, resized to each scale, warps S_j into Ŝ_j (warp average-pools it).
        normalized = tuple(warp(skip, flow) for skip in skips)  # Ŝ_j (N, C_j, H/2^j, W/2^j)
        assert z.shape == (n, self.config.width(LEVELS), size >> LEVELS, size >> LEVELS), z.shape
        assert flow.shape == (n, 2, size // 2, size // 2), flow.shape
        return z, normalized, flow
