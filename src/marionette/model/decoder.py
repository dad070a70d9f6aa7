"""Decoder Q: warp-alignment blocks (paper §Proposed method, "Decoder" and "Driver pose
adaptation"). At each scale the current features u predict the driver flow f_u, which warps the
targets' normalized maps Ŝ_j; their average over K joins u in a residual up block."""

from __future__ import annotations

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import FlowHead, ResidualUp, conv, warp


class WarpAlignmentBlock(nn.Module):
    """u (B, C_u, h, w), mean_k Ŝ_j (B, C_j, h, w) -> (B, C_out, 2h, 2w) and f_u (B, 2, h, w).

    paper: each target's Ŝ_j is warped by f_u and the K results are averaged. f_u is shared by the
    targets and bilinear warping is linear in its input, so mean_k warp(Ŝ_j^k) = warp(mean_k Ŝ_j^k);
    ours: the target cache holds the average, and a frame costs one warp per scale whatever K is."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, flow_max: float) -> None:
        super().__init__()
        self.flow = FlowHead(in_channels, 1, flow_max)  # paper: a 1x1 conv predicts f_u from u
        self.up = ResidualUp(in_channels + skip_channels, out_channels)

    def forward(self, u: torch.Tensor, mean_skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flow = self.flow(u)  # (B, 2, h, w)
        aligned = warp(mean_skip, flow)  # (B, C_j, h, w)
        return self.up(torch.cat((u, aligned), dim=1)), flow  # (B, C_out, 2h, 2w)


class Decoder(nn.Module):
    """Four warp-alignment blocks at H/16, H/8, H/4, H/2 (16..128 at 256 px), then norm, ReLU,
    conv3x3 and tanh to the RGB image (B, 3, H, W) in [-1, 1] (paper)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            WarpAlignmentBlock(config.width(level) if level == LEVELS - 1 else config.decoder_width(level),
                               config.width(level), config.decoder_width(level - 1), config.flow_max)
            for level in range(LEVELS - 1, 0, -1))
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(config.decoder_width(0), affine=True), nn.ReLU(),
                                    conv(config.decoder_width(0), 3, 3), nn.Tanh())

    def forward(self, z_xy: torch.Tensor, mean_skips: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """z_xy (B, C_4, H/16, W/16), mean_skips = mean_k Ŝ_1..Ŝ_4, each (B, C_j, H/2^j, W/2^j).
        Returns the image (B, 3, H, W) and the driver flows f_u at H/16..H/2."""
        b, size = z_xy.shape[0], self.config.image_size
        assert len(mean_skips) == LEVELS - 1
        u, flows = z_xy, []
        for block, skip in zip(self.blocks, reversed(mean_skips)):
            assert skip.shape[0] == b and skip.shape[-2:] == u.shape[-2:], (skip.shape, u.shape)
            u, flow = block(u, skip)  # (B, C, 2h, 2w)
            flows.append(flow)
        image = self.to_rgb(u)  # (B, 3, H, W)
        assert image.shape == (b, 3, size, size), image.shape
        return image, tuple(flows)
