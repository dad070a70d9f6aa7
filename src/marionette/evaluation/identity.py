"""dlib's 128-d face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`, Davis King,
shipped by the face_recognition_models package) rebuilt in torch: batched and differentiable, so it
can judge identity (CSIM) and serve as an identity loss.

Three parts, each reproducing dlib exactly:
- `read_dlib_network`: dlib's binary serialization, parsed in plain Python/numpy from the file (no
  dlib, no pickle). The format: integers as a control byte (low nibble: byte count, bit 7: sign)
  followed by little-endian bytes; floats as two such integers (mantissa, base-2 exponent);
  strings as a length then the bytes; booleans as the characters '0'/'1'; tensors as version 2,
  (num_samples, k, nr, nc) then little-endian float32 values. A network is written outermost
  wrapper first: every wrapper's version number, then the input layer, then each computational
  layer in forward order (its name, its parameters, then its wrapper's bookkeeping: three booleans
  and three empty tensors). Tag and skip wrappers carry no data, so the graph (which layer adds to
  which) is the published network definition, checked here against the sequence of layer names.
- `face_chip_transform` + `extract_chips`: dlib's `get_face_chip_details(shape, 150, 0.25)` (a
  least-squares similarity from its 5-point face template to the 5 landmarks of dlib's
  `shape_predictor_5_face_landmarks`) and `extract_image_chip` (bilinear sampling; a chip pixel
  whose 2x2 source neighbourhood leaves the image is black; dlib truncates to uint8). Not
  reproduced: the image pyramid dlib uses when the face is over ~2x the chip size (300 px).
- `DlibFaceNet`: the network (dlib's `dnn_face_recognition_ex.cpp` definition): 7x7/2 conv (32),
  affine, ReLU, 3x3/2 max pool; 14 residual blocks (two 3x3 convs with affine layers; a stride-2
  block's shortcut is a 2x2/2 average pool, and dlib's add zero-pads the smaller operand in
  channels and space); global average pool; 128-d linear layer without bias. Input: RGB in 0..255
  minus dlib's mean colour, / 256. Strided convs and pools have no padding (dlib's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionette.errors import InputError
from marionette.landmarks.layout import mesh_to_ibug68

CHIP_SIZE = 150  # dlib's face chip, pixels
CHIP_PADDING = 0.25  # dlib's default chip padding for this network
# dlib's 5-point face template (x, y in units of the unpadded chip), in the order of the landmarks of
# shape_predictor_5_face_landmarks: subject's left eye outer and inner corner, right eye outer and
# inner corner, bottom of the nose.
FIVE_POINT_TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                                [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                                [0.4901123135679, 0.6277975110374]])
MESH_FIVE_POINTS = (45, 42, 36, 39, 33)  # the same 5 points in the 68-point layout
# (width, downsample) of the residual blocks, input to output
BLOCKS = ((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 + ((128, True),) + ((128, False),) * 2 \
    + ((256, True),) + ((256, False),) * 2 + ((256, True),)
INPUT_LAYER = "input_rgb_image_sized"


# ---- dlib's serialization -------------------------------------------------------------------------

@dataclass
class DlibLayer:
    name: str  # dlib's layer tag, e.g. "con_4"
    params: np.ndarray | None = None  # (P,) float32: all the layer's parameters, flat
    fields: dict = field(default_factory=dict)  # its other serialized settings


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InputError(f"{self.path}: truncated dlib network file")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        value = int.from_bytes(self._take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise InputError(f"{self.path}: not a dlib network file (bad boolean at byte {self.pos - 1})")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        if (version := self.int()) != 2:
            raise InputError(f"{self.path}: unsupported dlib tensor version {version}")
        shape = tuple(self.int() for _ in range(4))  # (num_samples, k, nr, nc)
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), "<f4").reshape(shape).astype(np.float32)  # a writable copy

    def alias(self) -> tuple[int, ...]:
        """An alias tensor (a view into the layer's parameters): version 1, then its shape."""
        if (version := self.int()) != 1:
            raise InputError(f"{self.path}: unsupported dlib alias tensor version {version}")
        return tuple(self.int() for _ in range(4))

    def skip(self, read, count: int) -> None:
        """Read and drop `count` values with `read` (e.g. self.float)."""
        for _ in range(count):
            read()

    def peek_string(self, text: str) -> bool:
        encoded = bytes([1, len(text)]) + text.encode()
        return self.data.startswith(encoded, self.pos)


def _layer(reader: _Reader, name: str) -> DlibLayer:
    if name.startswith("con_"):
        params = reader.tensor()
        keys = ("filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        fields = {k: reader.int() for k in keys}
        fields["filter_shape"], fields["bias_shape"] = reader.alias(), reader.alias()
        reader.skip(reader.float, 4)  # learning-rate and weight-decay multipliers
        return DlibLayer(name, params.reshape(-1), fields)
    if name == "affine_":
        params = reader.tensor()
        gamma, _beta, mode = reader.alias(), reader.alias(), reader.int()
        return DlibLayer(name, params.reshape(-1), {"channels": int(np.prod(gamma)), "mode": mode})
    if name in ("relu_", "add_prev_"):
        return DlibLayer(name)
    if name in ("max_pool_2", "avg_pool_2"):
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(name, None, {k: reader.int() for k in keys})
    if name == "fc_2":
        outputs, inputs = reader.int(), reader.int()
        params = reader.tensor()
        reader.skip(reader.alias, 2)  # weights, biases
        bias_mode = reader.int()
        reader.skip(reader.float, 4)
        return DlibLayer(name, params.reshape(-1), {"outputs": outputs, "inputs": inputs, "bias_mode": bias_mode})
    raise InputError(f"{reader.path}: unsupported dlib layer {name!r}")


def read_dlib_network(path: str | Path) -> tuple[np.ndarray, list[DlibLayer]]:
    """-> ((3,) dlib's mean RGB, the computational layers in forward order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such dlib network file")
    reader = _Reader(path.read_bytes(), path)
    reader.int()  # the loss wrapper's version
    if (loss := reader.string()) != "loss_metric_2":
        raise InputError(f"{path}: not dlib's face-recognition network (loss {loss!r})")
    reader.skip(reader.float, 2)  # margin, distance threshold
    for _ in range(10_000):  # the wrappers' version numbers, outermost first
        if reader.peek_string(INPUT_LAYER):
            break
        reader.int()
    else:
        raise InputError(f"{path}: no {INPUT_LAYER} layer found")
    reader.string()
    mean = np.array([reader.float() for _ in range(3)], np.float32)  # dlib's avg_red, avg_green, avg_blue
    reader.skip(reader.int, 2)  # rows, columns (150, 150)
    layers = []
    while reader.pos < len(reader.data):
        layers.append(_layer(reader, reader.string()))
        reader.skip(reader.bool, 3)  # the wrapper's bookkeeping: three flags and three empty tensors
        reader.skip(reader.tensor, 3)
        if len(layers) == 1:
            reader.int()  # the first wrapper above the input also stores its sample expansion factor
    return mean, layers


# ---- the network ----------------------------------------------------------------------------------

def _expected_names() -> list[str]:
    names = ["con_4", "affine_", "relu_", "max_pool_2"]
    for _, down in BLOCKS:
        names += ["con_4", "affine_", "relu_", "con_4", "affine_"] + ["avg_pool_2"] * down + ["add_prev_", "relu_"]
    return names + ["avg_pool_2", "fc_2"]


class Affine(nn.Module):
    """dlib's affine layer (a frozen batch norm): y = gamma * x + beta per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("gamma", torch.ones(1, channels, 1, 1))
        self.register_buffer("beta", torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=0 if stride > 1 else kernel // 2)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger (C, H, W), the smaller operand zero-padded at the end."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))

    return pad(a) + pad(b)


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1, self.affine1 = _conv(cin, cout, 3, 2 if down else 1), Affine(cout)
        self.conv2, self.affine2 = _conv(cout, cout, 3, 1), Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W)
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))  # (B, Cout, H', W')
        shortcut = F.avg_pool2d(x, 2) if self.down else x
        return F.relu(_add_padded(y, shortcut))


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet v1: (B, 3, 150, 150) RGB face chips in 0..255 -> (B, 128)
    descriptors (not normalised; dlib calls two faces the same person below distance 0.6)."""

    def __init__(self, mean: np.ndarray = np.array([122.782, 117.001, 104.298], np.float32)):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, 3, 1, 1))
        self.conv, self.affine = _conv(3, 32, 7, 2), Affine(32)
        widths = [32] + [w for w, _ in BLOCKS]
        self.blocks = nn.ModuleList(Residual(cin, cout, down) for cin, (cout, down) in zip(widths, BLOCKS))
        self.fc = nn.Linear(256, 128, bias=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, chips: torch.Tensor) -> torch.Tensor:  # (B, 3, 150, 150)
        x = (chips - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)  # (B, 32, 35, 35)
        for block in self.blocks:
            x = block(x)  # ... (B, 256, 2, 2)
        return self.fc(x.mean(dim=(2, 3)))  # (B, 128)

    @classmethod
    def load(cls, path: str | Path) -> DlibFaceNet:
        mean, layers = read_dlib_network(path)
        if [layer.name for layer in layers] != _expected_names():
            raise InputError(f"{path}: not dlib's face-recognition ResNet v1 (unexpected layer sequence)")
        net = cls(mean)
        convs = [net.conv] + [c for b in net.blocks for c in (b.conv1, b.conv2)]
        affines = [net.affine] + [a for b in net.blocks for a in (b.affine1, b.affine2)]
        for conv, layer in zip(convs, [la for la in layers if la.name == "con_4"]):
            weight = conv.weight
            if layer.fields["filter_shape"] != tuple(weight.shape) or layer.fields["stride_y"] != conv.stride[0]:
                raise InputError(f"{path}: convolution of shape {layer.fields['filter_shape']} where "
                                 f"{tuple(weight.shape)} was expected")
            n = weight.numel()
            weight.copy_(torch.from_numpy(layer.params[:n].reshape(weight.shape)))
            conv.bias.copy_(torch.from_numpy(layer.params[n:]))
        for affine, layer in zip(affines, [la for la in layers if la.name == "affine_"]):
            c = layer.fields["channels"]
            affine.gamma.copy_(torch.from_numpy(layer.params[:c]).view(1, c, 1, 1))
            affine.beta.copy_(torch.from_numpy(layer.params[c:]).view(1, c, 1, 1))
        fc = layers[-1]
        net.fc.weight.copy_(torch.from_numpy(fc.params.reshape(fc.fields["inputs"], fc.fields["outputs"])).T)
        return net


# ---- dlib's face chips ----------------------------------------------------------------------------

def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) mapping (N, 2) `source` onto `target`: (2, 2), (2,)."""
    ms, mt = source.mean(0), target.mean(0)
    s, t = source - ms, target - mt
    u, sigma, vt = np.linalg.svd(t.T @ s / len(s))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    scale = np.trace(np.diag(sigma) @ d) / ((s**2).sum() / len(s))
    matrix = scale * u @ d @ vt
    return matrix, mt - matrix @ ms


def face_chip_transform(points: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """(5, 2) landmarks of dlib's 5-point predictor, image pixels -> (2, 3) affine map from chip
    pixel (column, row, 1) to image (x, y), as dlib's get_face_chip_details + extract_image_chip."""
    template = (padding + FIVE_POINT_TEMPLATE) / (2 * padding + 1) * size  # (5, 2) chip pixels
    matrix, offset = _similarity(template, np.asarray(points, np.float64))
    angle = np.arctan2(matrix[1, 0], matrix[0, 0])
    scale = np.hypot(matrix[0, 0], matrix[1, 0])
    centre = matrix @ np.array([size / 2, size / 2]) + offset
    # dlib's chip rectangle is size * scale wide counting both end pixels; chip pixels 0 and
    # size - 1 land on its edges
    step = (size * scale - 1) / (size - 1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = step * rotation
    return np.concatenate([linear, (centre - linear @ np.full(2, (size - 1) / 2))[:, None]], axis=1)


def extract_chips(images: torch.Tensor, transforms: torch.Tensor, size: int = CHIP_SIZE) -> torch.Tensor:
    """Bilinear face chips as dlib samples them (differentiable in the images).
    images (B, 3, H, W) float; transforms (B, 2, 3) chip (column, row, 1) -> image (x, y)
    -> (B, 3, size, size); pixels whose 2x2 source neighbourhood leaves the image are 0."""
    b, c, h, w = images.shape
    grid = torch.arange(size, dtype=transforms.dtype, device=transforms.device)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    chip = torch.stack([cols, rows, torch.ones_like(cols)], -1).reshape(-1, 3)  # (P, 3)
    xy = chip @ transforms.transpose(1, 2)  # (B, P, 2)
    left, top = xy[..., 0].floor(), xy[..., 1].floor()  # (B, P)
    fx, fy = (xy[..., 0] - left).to(images.dtype), (xy[..., 1] - top).to(images.dtype)
    inside = ((left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)).to(images.dtype)
    left, top = left.long().clamp(0, w - 2), top.long().clamp(0, h - 2)
    flat = images.reshape(b, c, h * w)

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (y * w + x)[:, None].expand(b, c, -1))  # (B, C, P)

    fx, fy, inside = fx[:, None], fy[:, None], inside[:, None]
    value = (1 - fy) * ((1 - fx) * at(top, left) + fx * at(top, left + 1)) \
        + fy * ((1 - fx) * at(top + 1, left) + fx * at(top + 1, left + 1))
    return (value * inside).reshape(b, c, size, size)


def five_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(478, 3) face mesh -> (5, 2) points in the order of dlib's 5-point predictor (ours: lets the
    network run on images without dlib's landmarks, e.g. as a training loss; not dlib-exact)."""
    return mesh_to_ibug68(mesh)[list(MESH_FIVE_POINTS), :2]
