"""Ours: the warp refiner, the warp-guided decoder's `correction=refine` (ModelConfig).

A small U-Net of its own reads the warp renderer's image w and the driver's landmark image r_x at
full resolution (with skips at H, H/2, H/4, H/8), and at each of those scales takes in Q's features
u, through which the targets' features (image attention, target feature alignment) flow. Its head
both moves the warp's pixels (a flow, bounded to ±FLOW_MAX grid units) and paints (an additive
colour residual, zero wherever it has nothing to add):

    output = sample(w, identity + flow) + residual

The head's filters and bias start at zero, so at initialisation the output is exactly w; the head
learns from the first step (its gradient is the features times the output's), and everything
upstream from the second. Why a network over the warp rather than one conv beside it: a 0.45 M
residual U-Net over the warp image learned on two CPU cores in half an hour, where one conv on Q's
features found no correction that held across episodes (docs/training.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from marionette.model.config import ModelConfig
from marionette.model.layers import conv, warp

FLOW_MAX = 0.25  # ours: bound of the refiner's flow, grid units (2 = image side): an eighth of the side
SCALES = 4  # the refiner's resolutions: H, H/2, H/4, H/8


def _block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 (stride 1 or 2), LeakyReLU, conv3x3, LeakyReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2),
                         conv(out_channels, out_channels, 3), nn.LeakyReLU(0.2))


class WarpRefiner(nn.Module):
    """features (Q's u at H/8, H/4, H/2, H; their widths `feature_widths`), the driver's landmark
    image r_x and the warp image w (B, 3, H, W) -> (output (B, 3, H, W), departure (B, 1, H, W)),
    the departure being the mean |output - w| over colours: where the output leaves the warp."""

    def __init__(self, config: ModelConfig, feature_widths: tuple[int, ...]) -> None:
        super().__init__()
        assert len(feature_widths) == SCALES, feature_widths
        widths = [config.refine_channels * 2**j for j in range(SCALES)]  # at H, H/2, H/4, H/8
        self.widths, self.feature_widths = widths, feature_widths
        self.down = nn.ModuleList(_block(6 if j == 0 else widths[j - 1], widths[j], 1 if j == 0 else 2)
                                  for j in range(SCALES))
        # up[j] makes the width-j features at scale j from [the coarser scale's, upsampled (or, at
        # H/8, the skip itself), the skip at j, Q's u at j]
        self.up = nn.ModuleList(_block((widths[j + 1] if j < SCALES - 1 else 0) + widths[j] + feature_widths[SCALES - 1 - j],
                                       widths[j]) for j in range(SCALES))
        self.head = conv(widths[0], 5, 3)  # 2 flow channels, 3 residual channels
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def _convs(self) -> list[tuple[nn.Conv2d, list[int]]]:
        """Every conv with the widths of the parts its input concatenates, in order."""
        w, f = self.widths, self.feature_widths
        convs = [(block[0], [6 if j == 0 else w[j - 1]]) for j, block in enumerate(self.down)]
        convs += [(block[0], w[j + 1:j + 2] + [w[j], f[SCALES - 1 - j]]) for j, block in enumerate(self.up)]
        convs += [(block[2], [w[j]]) for blocks in (self.down, self.up) for j, block in enumerate(blocks)]
        return [*convs, (self.head, [w[0]])]

    @torch.no_grad()
    def grow_from(self, narrow: WarpRefiner) -> None:
        """Ours: start from a narrower refiner's weights and compute exactly its function. Each conv
        keeps the narrow one's filters, each input part (a concatenation's parts move apart as they
        widen) where it was; the new channels keep their fresh incoming filters and every weight that
        reads one is zero, so they change nothing until trained (their outgoing weights learn first)."""
        for (wide, wide_parts), (old, old_parts) in zip(self._convs(), narrow._convs(), strict=True):
            if any(n < o for n, o in zip(wide_parts, old_parts, strict=True)) or wide.out_channels < old.out_channels:
                raise ValueError(f"a refiner of widths {self.widths} cannot grow from one of widths {narrow.widths}")
            out, at_wide, at_old = old.out_channels, 0, 0
            wide.weight[:out].zero_()
            for n, o in zip(wide_parts, old_parts, strict=True):
                wide.weight[:out, at_wide:at_wide + o] = old.weight[:, at_old:at_old + o]
                at_wide, at_old = at_wide + n, at_old + o
            wide.bias[:out] = old.bias

    @torch.no_grad()
    def shrink_from(self, wide: WarpRefiner) -> None:
        """Ours: start from a wider refiner's weights, keeping of each of its maps the channels its
        readers weigh most (the L2 norm of the filters that read each channel). A refiner grown from a
        narrower one (`grow_from`) shrinks back to it exactly: the channels it added are read by zeros."""
        if any(n > w for n, w in zip(self.widths, wide.widths, strict=True)):
            raise ValueError(f"a refiner of widths {self.widths} cannot shrink from one of widths {wide.widths}")
        # the maps: each block's middle (read by its second conv) and its output (a skip read by the next
        # block down and by the up block at its scale; an up block's read by the next up block or the head)
        readers = {}  # (part, j) -> [(conv, first input channel of the map in that conv)]
        for j in range(SCALES):
            readers[("down mid", j)] = [(wide.down[j][2], 0)]
            readers[("up mid", j)] = [(wide.up[j][2], 0)]
            coarser = wide.widths[j + 1] if j < SCALES - 1 else 0
            readers[("down", j)] = [(wide.up[j][0], coarser)] + ([(wide.down[j + 1][0], 0)] if j < SCALES - 1 else [])
            readers[("up", j)] = [(wide.up[j - 1][0], 0)] if j > 0 else [(wide.head, 0)]
        kept = {}
        for (part, j), convs in readers.items():
            width = wide.widths[j]
            weight = sum(conv.weight[:, at:at + width].square().sum(dim=(0, 2, 3)) for conv, at in convs)  # (width,)
            kept[part, j] = weight.topk(self.widths[j]).indices.sort().values

        def copy(new: nn.Conv2d, old: nn.Conv2d, outputs: torch.Tensor | None, inputs: list[torch.Tensor]) -> None:
            rows = old.weight if outputs is None else old.weight[outputs]
            new.weight.copy_(torch.cat([rows[:, index] for index in inputs], dim=1))
            new.bias.copy_(old.bias if outputs is None else old.bias[outputs])

        for j in range(SCALES):
            first = [torch.arange(6)] if j == 0 else [kept["down", j - 1]]  # the images (landmarks, warp): whole
            copy(self.down[j][0], wide.down[j][0], kept["down mid", j], first)
            copy(self.down[j][2], wide.down[j][2], kept["down", j], [kept["down mid", j]])
            coarser = [kept["up", j + 1]] if j < SCALES - 1 else []
            skip_at = wide.widths[j + 1] if j < SCALES - 1 else 0
            u = skip_at + wide.widths[j] + torch.arange(self.feature_widths[SCALES - 1 - j])  # Q's features: whole
            copy(self.up[j][0], wide.up[j][0], kept["up mid", j], [*coarser, skip_at + kept["down", j], u])
            copy(self.up[j][2], wide.up[j][2], kept["up", j], [kept["up mid", j]])
        copy(self.head, wide.head, None, [kept["up", 0]])

    def forward(self, features: tuple[torch.Tensor, ...], landmark_image: torch.Tensor, warp_image: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x, skips = torch.cat((landmark_image, warp_image), dim=1), []  # (B, 6, H, W)
        for block in self.down:
            x = block(x)  # (B, c·2^j, H/2^j, W/2^j)
            skips.append(x)
        x = None
        for j in reversed(range(SCALES)):
            u = features[SCALES - 1 - j]  # Q's features at H/2^j
            parts = [skips[j], u] if x is None else [F.interpolate(x, scale_factor=2.0, mode="bilinear"), skips[j], u]
            x = self.up[j](torch.cat(parts, dim=1))  # (B, c·2^j, H/2^j, W/2^j)
        # in the warp image's dtype and contiguous: on slices of a channels-last bf16 map (autocast) torch's CPU
        # tanh and add take 4-14x longer
        out = self.head(x).to(warp_image.dtype).contiguous()  # (B, 5, H, W)
        flow, residual = FLOW_MAX * torch.tanh(out[:, :2]), out[:, 2:]  # (B, 2, H, W), (B, 3, H, W)
        image = warp(warp_image, flow) + residual  # (B, 3, H, W)
        return image, (image - warp_image).abs().mean(dim=1, keepdim=True)
