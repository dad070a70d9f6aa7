"""Decoder Q: warp-alignment blocks (paper §Proposed method, "Decoder" and "Driver pose
adaptation"). At each scale the current features u predict the driver flow f_u, which warps the
targets' normalized maps Ŝ_j; their average over K joins u in a residual up block.

Ours, the warp-guided model (`ModelConfig.warp_guided`): the last layer corrects the training-free
warp renderer's image w of the driver, and is exactly w at initialisation. `ModelConfig.correction`
says how:

- `residual` (WarpCorrection): instead of drawing the image, one conv adds a gated colour residual
  to w. Its residual starts at zero, and so does every gradient upstream of it: nothing but that
  conv can learn until it has moved, and alone it finds little that holds across episodes.
- `blend` (WarpBlend): Q keeps the paper's image head, which paints an image g as the faithful
  model does (its own training term: LossConfig.painted_weight), and a zero-initialised mask head
  says where the output moves from w towards g. The output's gradient reaches the mask through
  g - w from the first step, and g's own term trains everything upstream from the first step.
- `refine` (refiner.py's WarpRefiner): a U-Net of its own over w and r_x, fed Q's features at
  every scale, moves the warp's pixels (a flow) and paints on them (a residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import FlowHead, InstanceNorm, ResidualUp, conv, like, warp
from marionette.model.refiner import WarpRefiner


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
        aligned = like(warp(mean_skip, flow), u)  # (B, C_j, h, w)
        return self.up(torch.cat((u, aligned), dim=1)), flow  # (B, C_out, 2h, 2w)


class WarpCorrection(nn.Module):
    """Ours: u (B, C, H, W) and the warp image w (B, 3, H, W) -> w + m ⊙ r (B, 3, H, W) and m.

    One conv3x3 on [ReLU(norm(u)), w] gives a colour residual r = 2·tanh(.) (any pixel in [-1, 1]
    can reach any other) and a blend mask m = sigmoid(.) (B, 1, H, W) saying where to correct. The
    residual's filters and bias start at zero, so at initialisation the output is exactly w and
    training only has to learn what the warp gets wrong (mouth interior, eyes, disocclusions)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(InstanceNorm(channels), nn.ReLU())
        self.head = conv(channels + 3, 4, 3)  # 3 residual channels, 1 mask logit
        with torch.no_grad():
            self.head.weight[:3].zero_()
            self.head.bias[:3].zero_()

    def forward(self, u: torch.Tensor, warp_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(torch.cat((self.features(u), warp_image), dim=1))  # (B, 4, H, W)
        residual, mask = 2 * torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])  # (B, 3, H, W), (B, 1, H, W)
        return warp_image + mask * residual, mask


class WarpBlend(nn.Module):
    """Ours (correction=blend): features f = ReLU(norm(u)) (B, C, H, W), the warp image w and the
    painted image g (B, 3, H, W) -> w + m ⊙ (g - w) (B, 3, H, W) and m (B, 1, H, W).

    m = clamp(conv3x3([f, w, g]), -1, 1): the mask head's filters and bias start at zero, so at
    initialisation m = 0 and the output is exactly w, and d(output)/dm = g - w is not zero, so the
    mask learns from the first step. m = 0 (keep the warp) is inside the clamp's range, not at its
    bound: while g is still worse than w everywhere, every step pushes m back towards 0 from both
    sides, and a clamp at 0 would stop each pixel that overshoots for good (no gradient below the
    bound); within ten steps on a fixed batch none is left, and the mask never opens where g later
    beats w. m < 0 moves the output away from g; the loss keeps it near 0 wherever g is no help."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.head = conv(channels + 6, 1, 3)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, features: torch.Tensor, warp_image: torch.Tensor, painted: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.head(torch.cat((features, warp_image, painted), dim=1)).clamp(-1, 1)  # (B, 1, H, W)
        return warp_image + mask * (painted - warp_image), mask  # (B, 3, H, W)


@dataclass(frozen=True)
class Correction:
    """What the warp-guided decoder (ours) did to its warp image."""

    mask: torch.Tensor  # (B, 1, H, W): where the output departs from the warp: the residual's mask in [0, 1],
    # the blend's in [-1, 1], the refiner's mean |output - warp|
    painted: torch.Tensor | None  # blend: the image head's painting g (B, 3, H, W) in [-1, 1]; residual: None


class Decoder(nn.Module):
    """Four warp-alignment blocks at H/16, H/8, H/4, H/2 (16..128 at 256 px), then norm, ReLU,
    conv3x3 and tanh to the RGB image (B, 3, H, W) in [-1, 1] (paper: `to_rgb`); in the warp-guided
    model (ours) a WarpCorrection of the warp image instead (correction=residual), a WarpBlend of
    the warp image with that RGB image (correction=blend), or a WarpRefiner of the warp image fed the
    blocks' features at H/8..H (correction=refine)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            WarpAlignmentBlock(config.width(level) if level == LEVELS - 1 else config.decoder_width(level),
                               config.width(level), config.decoder_width(level - 1), config.flow_max)
            for level in range(LEVELS - 1, 0, -1))
        if config.warp_guided and config.correction == "residual":
            self.correction = WarpCorrection(config.decoder_width(0))
        elif config.warp_guided and config.correction == "refine":
            self.correction = WarpRefiner(config, tuple(config.decoder_width(j) for j in range(LEVELS - 2, -1, -1)))
        else:
            self.to_rgb = nn.Sequential(InstanceNorm(config.decoder_width(0)), nn.ReLU(),
                                        conv(config.decoder_width(0), 3, 3), nn.Tanh())
            if config.warp_guided:
                self.correction = WarpBlend(config.decoder_width(0))

    def forward(self, z_xy: torch.Tensor, mean_skips: tuple[torch.Tensor, ...], warp_image: torch.Tensor | None = None,
                landmark_image: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], Correction | None]:
        """z_xy (B, C_4, H/16, W/16), mean_skips = mean_k Ŝ_1..Ŝ_4, each (B, C_j, H/2^j, W/2^j),
        warp_image (B, 3, H, W) in the warp-guided model (else None), landmark_image r_x (B, 3, H, W)
        (read by the refiner only). Returns the image (B, 3, H, W),
        the driver flows f_u at H/16..H/2, and the Correction (warp-guided; else None)."""
        b, size = z_xy.shape[0], self.config.image_size
        assert len(mean_skips) == LEVELS - 1
        u, flows, features = z_xy, [], []
        for block, skip in zip(self.blocks, reversed(mean_skips)):
            assert skip.shape[0] == b and skip.shape[-2:] == u.shape[-2:], (skip.shape, u.shape)
            u, flow = block(u, skip)  # (B, C, 2h, 2w)
            flows.append(flow)
            features.append(u)
        assert (warp_image is not None) == self.config.warp_guided, "a warp image iff the model is warp-guided"
        correction = None
        if warp_image is None:
            image = self.to_rgb(u)  # (B, 3, H, W)
        elif self.config.correction == "residual":
            image, mask = self.correction(u, warp_image)  # (B, 3, H, W), (B, 1, H, W)
            correction = Correction(mask=mask, painted=None)
        elif self.config.correction == "refine":
            assert landmark_image is not None, "the refiner reads the driver's landmark image"
            image, departure = self.correction(tuple(features), landmark_image, warp_image)  # (B, 3, H, W), (B, 1, H, W)
            correction = Correction(mask=departure, painted=None)
        else:
            features = self.to_rgb[:2](u)  # ReLU(norm(u)) (B, C, H, W): read by both heads
            painted = self.to_rgb[2:](features)  # (B, 3, H, W): the paper's image
            image, mask = self.correction(features, warp_image, painted)  # (B, 3, H, W), (B, 1, H, W)
            correction = Correction(mask=mask, painted=painted)
        assert image.shape == (b, 3, size, size), image.shape
        return image, tuple(flows), correction
