"""A TFLite model's op graph, run in torch: MediaPipe's face detector and attention face mesh.

`tools/convert_face_mesh.py` turned the .tflite files into safetensors: fp16 weights in torch
layout, and in the metadata the op list (JSON) this module runs, batched over the first axis, on
any device, in float32. 4-D activations are NCHW here (NHWC in TFLite); 3-D ones (landmarks,
(B, N, 2 or 3)) and matrices ((B, 4, 4)) are as in TFLite.

The three custom ops of the attention mesh follow MediaPipe's reference kernels
(mediapipe/util/tflite/operations/, version 2 of each): `Landmarks2TransformMatrix` (a rotated
box around some landmarks -> the matrix that maps a crop's pixels into the feature map),
`TransformTensorBilinear` (that crop, sampled bilinearly) and `TransformLandmarks` (the crop's
predicted points mapped back).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from marionette.errors import InputError, check_finite


class TfliteNet(nn.Module):
    """Runs the converted op graph of one model; `forward` maps its input to its named outputs."""

    def __init__(self, path: Path):
        super().__init__()
        try:
            with safe_open(str(path), framework="pt") as f:
                graph = json.loads(f.metadata()["graph"])
                weights = {key: f.get_tensor(key).float() for key in f.keys()}
            check_finite(weights, path)
            self.ops: list[dict] = graph["ops"]
            (self.input,) = graph["inputs"]
            self.outputs: dict[str, int] = graph["outputs"]
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: invalid converted face-mesh model ({reason})") from None
        self.weights = nn.ParameterDict({key.replace(".", "__"): nn.Parameter(w, requires_grad=False)
                                         for key, w in weights.items()})
        last_use = {i: k for k, op in enumerate(self.ops) for i in op["in"]}
        # per op, the activations no later op reads: freed as soon as it has run (a big batch's memory)
        self.done = [{i for i in op["in"] if last_use[i] == k} - set(self.outputs.values())
                     for k, op in enumerate(self.ops)]

    def weight(self, key: str) -> torch.Tensor:
        return self.weights[key.replace(".", "__")]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) float32 -> {output name: tensor}, 4-D outputs NCHW."""
        values: dict[int, torch.Tensor] = {self.input: x}
        for op, done in zip(self.ops, self.done):
            values[op["out"]] = self.run(op, *(values[i] for i in op["in"]))
            for i in done:
                del values[i]
        return {name: values[i] for name, i in self.outputs.items()}

    def run(self, op: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        kind = op["op"]
        if kind == "conv":
            x = F.pad(x, op["pad"]) if any(op["pad"]) else x
            return F.conv2d(x, self.weight(op["weight"]), self.weight(op["bias"]), op["stride"], groups=op["groups"])
        if kind == "add":
            return x + rest[0]
        if kind == "relu":
            return F.relu(x)
        if kind == "prelu":
            return F.prelu(x, self.weight(op["weight"]))
        if kind == "max_pool":
            return F.max_pool2d(x, op["size"])
        if kind == "pad":  # zero channels appended by the residual shortcuts
            return F.pad(x, op["pad"])
        if kind == "mul":
            return x * self.weight(op["constant"])
        if kind == "identity":
            return x
        if kind == "reshape":  # in TFLite's NHWC order, back to NCHW if the result is 4-D
            nhwc = x.permute(0, 2, 3, 1) if x.dim() == 4 else x
            y = nhwc.reshape(x.shape[0], *op["shape"])
            return y.permute(0, 3, 1, 2) if y.dim() == 4 else y
        if kind == "concat":  # 3-D tensors only (the converter checks)
            return torch.cat([x, *rest], dim=op["axis"])
        if kind == "Landmarks2TransformMatrix":
            return landmarks_to_matrix(x, **op["options"])
        if kind == "TransformTensorBilinear":
            return transform_tensor_bilinear(x, rest[0], op["options"]["output_height"], op["options"]["output_width"])
        if kind == "TransformLandmarks":
            return transform_landmarks(x, rest[0])
        raise ValueError(f"unknown op {kind}")


def landmarks_to_matrix(landmarks: torch.Tensor, subset_idxs: list[int], left_rotation_idx: int,
                        right_rotation_idx: int, target_rotation_radians: float, output_width: int,
                        output_height: int, scale_x: float, scale_y: float) -> torch.Tensor:
    """Landmarks2TransformMatrix v2. landmarks: (B, N, 3) -> (B, 4, 4), mapping the pixels of an
    output_width x output_height crop to landmark coordinates: the crop is the box of the subset's
    landmarks in a frame turned so that the left -> right landmark line is level, scaled by
    (scale_x, scale_y). The kernel's product shift(centre) @ rotation(-r) @ scale @
    shift(-output size / 2), written out."""
    xy = landmarks[..., :2]  # (B, N, 2)
    left, right = xy[:, left_rotation_idx], xy[:, right_rotation_idx]  # (B, 2)
    r = target_rotation_radians - torch.atan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0])  # (B,)
    cos, sin = torch.cos(r)[:, None], torch.sin(r)[:, None]  # (B, 1)
    points = xy[:, subset_idxs]  # (B, K, 2)
    turned = torch.stack([cos * points[..., 0] - sin * points[..., 1], sin * points[..., 0] + cos * points[..., 1]], -1)
    low, high = turned.amin(1), turned.amax(1)  # (B, 2)
    middle = (high + low) / 2
    centre = torch.stack([cos[:, 0] * middle[:, 0] + sin[:, 0] * middle[:, 1],  # turned back by -r
                          -sin[:, 0] * middle[:, 0] + cos[:, 0] * middle[:, 1]], -1)  # (B, 2)
    sx, sy = scale_x * (high - low)[:, :1] / output_width, scale_y * (high - low)[:, 1:] / output_height  # (B, 1)
    linear = torch.stack([torch.cat([cos * sx, sin * sy], -1), torch.cat([-sin * sx, cos * sy], -1)], -2)  # (B, 2, 2)
    shift = centre - linear @ linear.new_tensor([output_width / 2, output_height / 2])  # (B, 2)
    matrix = torch.eye(4, dtype=landmarks.dtype, device=landmarks.device).repeat(len(landmarks), 1, 1)
    matrix[:, :2, :2], matrix[:, :2, 3] = linear, shift
    return matrix


def transform_tensor_bilinear(features: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """TransformTensorBilinear v2. features: (B, C, H, W), matrix: (B, 4, 4) -> (B, C, height, width).
    Output pixel (x, y) samples the features at matrix @ (x + 0.5, y + 0.5) - 0.5 (pixel centres),
    bilinearly, neighbours outside read as 0, and is 0 where that point lies outside the map."""
    _, _, in_h, in_w = features.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=matrix.dtype, device=matrix.device) + 0.5,
                            torch.arange(width, dtype=matrix.dtype, device=matrix.device) + 0.5, indexing="ij")
    grid = torch.stack([xs, ys], -1).reshape(-1, 2)  # (P, 2)
    at = grid @ matrix[:, :2, :2].transpose(1, 2) + matrix[:, None, :2, 3] - 0.5  # (B, P, 2) in feature pixels
    inside = ((at[..., 0] >= 0) & (at[..., 0] <= in_w - 1) & (at[..., 1] >= 0) & (at[..., 1] <= in_h - 1))  # (B, P)
    normalised = at / at.new_tensor([in_w - 1, in_h - 1]) * 2 - 1
    sampled = F.grid_sample(features, normalised[:, None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return (sampled[:, :, 0] * inside[:, None]).reshape(len(features), -1, height, width)


def transform_landmarks(landmarks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """TransformLandmarks v2. landmarks: (B, N, 2), matrix: (B, 4, 4) -> (B, N, 2): the matrix's
    first two rows applied to (x, y, 0, 1)."""
    return landmarks @ matrix[:, :2, :2].transpose(1, 2) + matrix[:, None, :2, 3]
