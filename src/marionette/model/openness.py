"""ours: how open a generated face's eyes and mouth are, as the face mesh network reads them,
differentiable in the image: a training term (`LossConfig.openness_weight`) that asks the output
to be re-detected as open as the truth.

The region and pixel terms compare colours; a drawn lid that a viewer reads as shut can still be
read open by the face mesh, which is what the evaluation and the hard cases re-detect with. This
runs that network (MediaPipe's attention mesh, `landmarks.torch_mesh`) on a square around the
driver's face, cut by `grid_sample` so that gradients reach the image, and measures the eye aspect
ratios and the inner-lip gap (`landmarks.measures`) on its refined points.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from marionette.landmarks.measures import EYES, LIP_GAP
from marionette.landmarks.tflite_net import TfliteNet
from marionette.landmarks.torch_mesh import MESH_SIZE, refined_mesh, refined_regions
from marionette.resources import asset

ROI_SCALE = 1.7  # ours: the square's side over the 68 points' larger extent (MediaPipe's 1.5 is of a box reaching the forehead)
ROI_RAISE = 0.1  # ours: its centre moved this share of that extent towards the forehead (the mesh's box reaches it)
EYE_CORNERS = (36, 45)  # iBUG-68 outer eye corners: the square is turned so that they are level


class MeshOpenness(nn.Module):
    """Images (B, 3, S, S) in [-1, 1] and their faces' 68 landmarks (B, 68, >=2) in crop pixels ->
    (B, 3): the eye aspect ratio of the subject's right and left eye and the inner-lip gap, as the
    face mesh network re-detects them. Its weights are frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.mesh = TfliteNet(asset("face_landmarks.safetensors")).eval()
        for k, region in enumerate(refined_regions(self.mesh)):  # moved with the module
            self.register_buffer(f"region{k}", region, persistent=False)

    def crops(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S), (B, 68, >=2) -> (B, 3, 192, 192): a square of ROI_SCALE x the points' larger
        extent around their box's centre raised by ROI_RAISE of it, turned so the outer eye corners are
        level, bilinear."""
        size = images.shape[-1]
        points = landmarks[..., :2].float()  # (B, 68, 2)
        low, high = points.amin(1), points.amax(1)  # (B, 2)
        extent = (high - low).amax(1)  # (B,)
        side = ROI_SCALE * extent
        eyes = points[:, EYE_CORNERS[1]] - points[:, EYE_CORNERS[0]]  # (B, 2) across the face
        angle = torch.atan2(eyes[:, 1], eyes[:, 0])  # (B,)
        cos, sin = torch.cos(angle), torch.sin(angle)
        scale = side / size  # the square's half side (one unit of the crop's grid) in the image's grid units
        up = ROI_RAISE * extent[:, None] * torch.stack([sin, -cos], -1)  # (B, 2) towards the forehead
        centre = (low + high) / 2 + up  # (B, 2) crop pixels (pixel centres at integers)
        theta = torch.stack([torch.stack([cos * scale, -sin * scale, (2 * centre[:, 0] + 1) / size - 1], -1),
                             torch.stack([sin * scale, cos * scale, (2 * centre[:, 1] + 1) / size - 1], -1)], 1)
        grid = F.affine_grid(theta.to(images.dtype), [len(images), 3, MESH_SIZE, MESH_SIZE], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        crops = (self.crops(images, landmarks).float() + 1) / 2  # (B, 3, 192, 192) in [0, 1], the network's range
        with torch.autocast(crops.device.type, enabled=False):  # its refined points are sub-pixel: fp32
            out = self.mesh(crops)
        points = refined_mesh(out, (self.region0, self.region1, self.region2))  # (B, 468, 3) crop pixels

        def dist(a: int, b: int) -> torch.Tensor:  # (B,) in the image plane
            return (points[:, a, :2] - points[:, b, :2]).norm(dim=-1)

        ratios = [(dist(p2, p6) + dist(p3, p5)) / (2 * dist(p1, p4)).clamp(min=1e-3) for p1, p2, p3, p4, p5, p6 in EYES]
        upper, lower, left, right = LIP_GAP
        gap = dist(upper, lower) / dist(left, right).clamp(min=1e-3)
        return torch.stack([*ratios, gap], -1)
