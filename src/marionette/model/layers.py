"""Layers shared by the generator and the discriminator: residual down and up blocks, flow heads,
warping by a flow, and 2D sinusoidal positional encodings (paper §Proposed method; block designs
are ours where the paper is silent).

Dims: B batch, K targets, C channels, H, W height and width. A flow is a (B, 2, H, W) offset (x, y)
in grid units (the image spans [-1, 1]) added to the identity sampling grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, spectral: bool = False) -> nn.Module:
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
    return spectral_norm(layer) if spectral else layer


class InstanceNorm(nn.InstanceNorm2d):
    """Affine instance norm (B, C, H, W) -> (B, C, H, W), computed as a group norm with one channel
    per group: the same statistics and parameters, but torch's CPU kernel for it is 3-4x faster
    than instance_norm's (measured on the generator's shapes, fp32, 2-core AMD EPYC).

    A channels-last input on the CPU of under 16 channels or of at most 16x16 pixels is normalised
    in the contiguous layout and handed back channels-last: torch's channels-last kernel takes 4-15x
    longer there (128 channels at 16x16: 0.93 ms against 0.06 with the two layout copies; 8 at
    256x256: 1.9 against 0.5; bf16, 1 thread), and the copies cost more than they save elsewhere."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
                and (x.shape[1] < 16 or x.shape[2] * x.shape[3] <= 256)):
            y = F.group_norm(x.contiguous(), self.num_features, self.weight, self.bias, self.eps)
            return y.contiguous(memory_format=torch.channels_last)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _norm(channels: int, enabled: bool) -> nn.Module:
    return InstanceNorm(channels) if enabled else nn.Identity()


class AvgPool2(nn.Module):
    """2x2 average pooling, stride 2 (B, C, H, W) -> (B, C, H/2, W/2), H and W even: the same as
    nn.AvgPool2d(2) as the mean of four strided views, 1.3-1.9x faster on CPU (measured on the generator's
    shapes, fp32, 1 thread); a channels-last input takes torch's pooling, there 1.5-6x faster than the
    views (fp32 and bf16, 1 thread)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return F.avg_pool2d(x, 2)
        return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


class ResidualDown(nn.Module):
    """Pre-activation residual block that halves H and W (ours: the strided conv and the 1x1 skip
    keep every 3x3 conv at the output resolution)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool, spectral: bool) -> None:
        super().__init__()
        self.main = nn.Sequential(
            _norm(in_channels, norm), nn.ReLU(), conv(in_channels, out_channels, 3, stride=2, spectral=spectral),
            _norm(out_channels, norm), nn.ReLU(), conv(out_channels, out_channels, 3, spectral=spectral),
        )
        self.skip = nn.Sequential(AvgPool2(), conv(in_channels, out_channels, 1, spectral=spectral)
                                  if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        return self.main(x) + self.skip(x)


class ResidualUp(nn.Module):
    """Pre-activation residual block with instance norm that doubles H and W (ours: the first conv
    runs before the nearest-neighbour upsampling, at the input resolution)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            InstanceNorm(in_channels), nn.ReLU(), conv(in_channels, out_channels, 3),
            nn.Upsample(scale_factor=2, mode="nearest"),
            InstanceNorm(out_channels), nn.ReLU(), conv(out_channels, out_channels, 3),
        )
        self.skip = nn.Sequential(conv(in_channels, out_channels, 1), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        norm_in, relu_in, conv_in, up, norm_out, relu_out, conv_out = self.main
        # main's order, but norm and ReLU before upsampling, at a quarter of the pixels: a nearest
        # upsampling repeats each pixel 4 times, which changes no channel's mean or variance (the
        # same result; ~3% of a paper-preset frame with AvgPool2, measured interleaved, fp32)
        h = relu_out(norm_out(conv_in(relu_in(norm_in(x)))))  # (B, C_out, H, W)
        return conv_out(up(h)) + self.skip(x)


class FlowHead(nn.Module):
    """Predicts a flow: conv to 2 channels, tanh-bounded to +-flow_max (ours), so the offsets stay
    inside a known range and a zero output is the identity warp. ours: the conv starts at 1/100 of
    PyTorch's default init, so warps start near the identity (not exactly: gradients must reach the
    layers before it)."""

    def __init__(self, in_channels: int, kernel_size: int, flow_max: float) -> None:
        super().__init__()
        self.conv = conv(in_channels, 2, kernel_size)
        with torch.no_grad():
            self.conv.weight.mul_(0.01)
            self.conv.bias.zero_()
        self.flow_max = flow_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 2, H, W)
        return self.flow_max * torch.tanh(self.conv(x))


def identity_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel-centre sampling grid (1, H, W, 2) in grid_sample's (x, y) order for align_corners=False.
    For power-of-two sizes every coordinate is exact in binary floating point, so grid_sample with
    this grid returns its input unchanged."""
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # (W,)
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # (H,)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)  # (1, H, W, 2)


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear warp of `features` (B, C, H, W) by `flow` (B, 2, H*s, W*s), s >= 1 a power of two.
    A finer flow is average-pooled to H x W (offsets are in grid units, so they need no rescaling)."""
    batch, _, height, width = features.shape
    factor = flow.shape[-1] // width
    assert flow.shape == (batch, 2, height * factor, width * factor), (flow.shape, features.shape)
    if factor > 1:
        flow = F.avg_pool2d(flow, factor)  # (B, 2, H, W)
    grid = identity_grid(height, width, features.device, features.dtype) + flow.permute(0, 2, 3, 1)  # (B, H, W, 2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


def like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """x in `reference`'s dtype and memory layout (channels-last or contiguous), for joining the two:
    a concatenation of mixed dtypes or layouts is computed in fp32 and contiguous, and every conv
    after it then copies it back (under bf16 autocast with channels-last, 4.5 of 63 ms a frame of the
    shipped generator, 1 thread)."""
    channels_last = reference.is_contiguous(memory_format=torch.channels_last) and not reference.is_contiguous()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(reference.dtype).contiguous(memory_format=layout)


def positional_encoding(height: int, width: int, channels: int, query_side: int,
                        device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """2D sinusoidal encoding (C, H, W): C/4 frequencies each of sin and cos of y, then of x.
    Coordinates are pixel centres scaled to (0, 1), so grids of any size (the driver's 16x16, the
    targets' 8x8) share one range; frequencies are geometric from pi to pi * query_side (ours)."""
    assert channels % 4 == 0, channels
    n = channels // 4
    freqs = math.pi * torch.tensor(float(query_side), device=device).pow(
        torch.arange(n, device=device) / max(n - 1, 1))  # (C/4,)
    ys = (torch.arange(height, device=device) + 0.5) / height  # (H,)
    xs = (torch.arange(width, device=device) + 0.5) / width  # (W,)
    angle_y = ys[:, None] * freqs  # (H, C/4)
    angle_x = xs[:, None] * freqs  # (W, C/4)
    enc_y = torch.cat((angle_y.sin(), angle_y.cos()), dim=1).T[:, :, None].expand(-1, height, width)  # (C/2, H, W)
    enc_x = torch.cat((angle_x.sin(), angle_x.cos()), dim=1).T[:, None, :].expand(-1, height, width)  # (C/2, H, W)
    return torch.cat((enc_y, enc_x), dim=0).to(dtype)  # (C, H, W)
