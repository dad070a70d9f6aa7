"""Images between numpy and torch: uint8 RGB arrays (..., H, W, 3), as media and the face mesh see
them, and float tensors (..., 3, H, W) in [-1, 1], as the networks see them."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    channels_first = torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3).contiguous()  # uint8: cheap
    return channels_first.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) tensor in [-1, 1] -> (..., H, W, 3) uint8 RGB (rounded, out-of-range values clipped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1).cpu().numpy()
