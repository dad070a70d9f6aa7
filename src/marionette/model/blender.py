"""Blender B: a stack of image attention blocks (paper §Proposed method, "Image attention block").
Queries come from the driver's z_x, keys and values from every position of every target's z_y at
once, so one softmax over K·h·w blends the targets where each is relevant and the result does not
depend on their order.

Ours (speed, not the method): keys and values depend only on the targets, so the target cache
holds them (`Blender.keys_values`, run once per target set) and a frame computes only the queries
and the attention product; the positional encodings are buffers made once."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from marionette.model.config import LEVELS, ModelConfig
from marionette.model.layers import InstanceNorm, conv, positional_encoding


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
        self.norm_attention = InstanceNorm(channels)
        self.feed_forward = nn.Sequential(conv(channels, channels, 3), nn.ReLU(), conv(channels, channels, 3))
        self.norm_feed_forward = InstanceNorm(channels)

    def keys_values(self, targets: torch.Tensor, pe_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """targets (B, K, Cy, Hy, Wy), their positional encoding pe_y (Cy, Hy, Wy) -> keys and
        values (B, heads, K·Hy·Wy, C/heads) over every position of every target."""
        b, cy, d = targets.shape[0], targets.shape[2], self.key.out_features // self.heads
        # -1 for K·Hy·Wy: an exporter's trace then keeps K dynamic (ONNX: one file for any K)
        keys = (targets + pe_y.to(targets.dtype)).permute(0, 1, 3, 4, 2).reshape(b, -1, cy)  # (B, K·Hy·Wy, Cy)
        values = targets.permute(0, 1, 3, 4, 2).reshape(b, -1, cy)  # (B, K·Hy·Wy, Cy)
        k_h = self.key(keys).view(b, -1, self.heads, d).transpose(1, 2)  # (B, heads, K·Hy·Wy, d)
        v_h = self.value(values).view(b, -1, self.heads, d).transpose(1, 2)  # (B, heads, K·Hy·Wy, d)
        return k_h, v_h

    def forward(self, x: torch.Tensor, pe_x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                return_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, C, Hx, Wx), its positional encoding pe_x (C, Hx, Wx), keys and values (B, heads,
        N, C/heads) with N = K·Hy·Wy -> x (B, C, Hx, Wx) and, if asked, the attention weights
        (B, heads, Hx·Wx, N), each row summing to one over all N keys (else None)."""
        b, c, hx, wx = x.shape
        queries = (x + pe_x.to(x.dtype)).flatten(2).transpose(1, 2)  # (B, Hx·Wx, C)
        q_h = self.query(queries).view(b, hx * wx, self.heads, -1).transpose(1, 2)  # (B, heads, Hx·Wx, d)
        keys, values = keys.to(q_h.dtype), values.to(q_h.dtype)  # a cache made outside autocast
        # one softmax over every target and every position (paper)
        weights = None
        if return_weights:
            weights = torch.softmax(q_h @ keys.transpose(-1, -2) / math.sqrt(q_h.shape[-1]), dim=-1)  # (B, heads, Hx·Wx, N)
            attended = weights @ values  # (B, heads, Hx·Wx, d)
        else:  # the same product without materialising the weights
            attended = F.scaled_dot_product_attention(q_h, keys, values)  # (B, heads, Hx·Wx, d)
        attended = self.out(attended.transpose(1, 2).reshape(b, hx * wx, c))  # (B, Hx·Wx, C)
        x = self.norm_attention(x + attended.transpose(1, 2).reshape(b, c, hx, wx))
        x = self.norm_feed_forward(x + self.feed_forward(x))
        return x, weights


class Blender(nn.Module):
    """z_x (B, C, H/16, W/16) and the targets' keys and values (from z_y (B, K, Cy, H/32, W/32))
    -> z_xy (B, C, H/16, W/16)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.channels, self.target_channels = config.width(LEVELS - 1), config.width(LEVELS)
        self.blocks = nn.ModuleList(ImageAttentionBlock(self.channels, self.target_channels, config.attention_heads)
                                    for _ in range(config.attention_blocks))
        side_x, side_y = config.image_size >> (LEVELS - 1), config.image_size >> LEVELS
        # the targets' grid shares the driver's coordinate range (positional_encoding); not saved in state dicts
        self.register_buffer("pe_x", positional_encoding(side_x, side_x, self.channels, side_x, torch.device("cpu"),
                                                         torch.float32), persistent=False)  # (C, H/16, W/16)
        self.register_buffer("pe_y", positional_encoding(side_y, side_y, self.target_channels, side_x,
                                                         torch.device("cpu"), torch.float32),
                             persistent=False)  # (Cy, H/32, W/32)

    def keys_values(self, z_y: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """z_y (B, K, Cy, H/32, W/32) -> per block, keys and values (B, heads, K·H/32·W/32, C/heads)."""
        assert z_y.ndim == 5 and z_y.shape[2:] == (self.target_channels, *self.pe_y.shape[1:]), z_y.shape
        pairs = [block.keys_values(z_y, self.pe_y) for block in self.blocks]
        return tuple(k for k, _ in pairs), tuple(v for _, v in pairs)

    def forward(self, z_x: torch.Tensor, keys: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...],
                return_weights: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """z_x (B, C, H/16, W/16) and `keys_values`' output -> z_xy (B, C, H/16, W/16) and, if
        asked, each block's attention weights (B, heads, H/16·W/16, K·H/32·W/32) (else None)."""
        b = z_x.shape[0]
        assert z_x.shape == (b, self.channels, *self.pe_x.shape[1:]), z_x.shape
        assert len(keys) == len(values) == len(self.blocks) and keys[0].shape[0] == b, (len(keys), keys[0].shape)
        weights = []
        for block, k, v in zip(self.blocks, keys, values):
            z_x, w = block(z_x, self.pe_x, k, v, return_weights)
            weights.append(w)
        return z_x, tuple(weights) if return_weights else None
