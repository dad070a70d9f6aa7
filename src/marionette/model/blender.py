"""Blender B: a stack of image attention blocks (paper §Proposed method, "Image attention block").
Queries come from the driver's z_x, keys and values from every position of every target's z_y at
once, so one softmax over K·h·w blends the targets where each is relevant and the result does not
depend on their order."""

from __future__ import annotations

import math

import torch
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import conv, positional_encoding


class ImageAttentionBlock(nn.Module):
    """Multi-head attention from driver to targets, residual + instance norm, then a 3x3 conv
    feed-forward, residual + instance norm (paper; ours: heads, ReLU between the two convs)."""

    def __init__(self, channels: int, target_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(target_channels, channels)
        self.value = nn.Linear(target_channels, channels)
        self.out = nn.Linear(channels, channels)
        self.norm_attention = nn.InstanceNorm2d(channels, affine=True)
        self.feed_forward = nn.Sequential(conv(channels, channels, 3), nn.ReLU(), conv(channels, channels, 3))
        self.norm_feed_forward = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, Hx, Wx), targets (B, K, Cy, Hy, Wy) -> x (B, C, Hx, Wx) and the attention
        weights (B, heads, Hx·Wx, K·Hy·Wy), each row summing to one over all K·Hy·Wy keys."""
        b, c, hx, wx = x.shape
        _, k, cy, hy, wy = targets.shape
        d = c // self.heads
        pe_x = positional_encoding(hx, wx, c, hx, x.device, x.dtype)  # (C, Hx, Wx)
        pe_y = positional_encoding(hy, wy, cy, hx, x.device, x.dtype)  # (Cy, Hy, Wy), same coordinate range
        queries = (x + pe_x).flatten(2).transpose(1, 2)  # (B, Hx·Wx, C)
        keys = (targets + pe_y).permute(0, 1, 3, 4, 2).reshape(b, k * hy * wy, cy)  # (B, K·Hy·Wy, Cy)
        values = targets.permute(0, 1, 3, 4, 2).reshape(b, k * hy * wy, cy)  # (B, K·Hy·Wy, Cy)
        q_h = self.query(queries).view(b, hx * wx, self.heads, d).transpose(1, 2)  # (B, heads, Hx·Wx, d)
        k_h = self.key(keys).view(b, k * hy * wy, self.heads, d).transpose(1, 2)  # (B, heads, K·Hy·Wy, d)
        v_h = self.value(values).view(b, k * hy * wy, self.heads, d).transpose(1, 2)  # (B, heads, K·Hy·Wy, d)
        # one softmax over every target and every position (paper)
        weights = torch.softmax(q_h @ k_h.transpose(-1, -2) / math.sqrt(d), dim=-1)  # (B, heads, Hx·Wx, K·Hy·Wy)
        attended = (weights @ v_h).transpose(1, 2).reshape(b, hx * wx, c)  # (B, Hx·Wx, C)
        attended = self.out(attended).transpose(1, 2).reshape(b, c, hx, wx)  # (B, C, Hx, Wx)
        x = self.norm_attention(x + attended)
        x = self.norm_feed_forward(x + self.feed_forward(x))
        return x, weights


class Blender(nn.Module):
    """z_x (B, C, H/16, W/16) and z_y (B, K, Cy, H/32, W/32) -> z_xy (B, C, H/16, W/16)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.channels, self.target_channels = config.width(LEVELS - 1), config.width(LEVELS)
        self.blocks = nn.ModuleList(ImageAttentionBlock(self.channels, self.target_channels, config.attention_heads)
                                    for _ in range(config.attention_blocks))

    def forward(self, z_x: torch.Tensor, z_y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        b, _, hx, wx = z_x.shape
        assert z_x.shape == (b, self.channels, hx, wx), z_x.shape
        assert z_y.ndim == 5 and z_y.shape[0] == b and z_y.shape[2] == self.target_channels, z_y.shape
        weights = []
        for block in self.blocks:
            z_x, w = block(z_x, z_y)
            weights.append(w)
        return z_x, tuple(weights)
