"""Perceptual networks for the objective (paper §Proposed method, "Loss functions": VGG19 and
VGG-Face perceptual losses): a VGG conv stack in plain torch with torchvision's state-dict layout
(`features.0.weight`, ...), cut after relu5_1, and its weight loaders.

The objective's VGG19 is, by default, the one shipped with the package (below); a full ImageNet
VGG19 (to relu5_1) is read from a file the user has (torch.load(weights_only=True) or safetensors,
torchvision's layout). Nothing is downloaded. Running without pretrained weights is an explicit
choice ("random") that logs a warning.

Shipped with the package: the "normalised" ImageNet VGG19 of Gatys et al. 2015 up to relu3_1
(assets/vgg19_normalised_to_relu3_1.safetensors, see assets/README.md for its source and
licence), in its style-transfer layout: a fixed 1x1 colour conv (RGB in [0, 1] -> Caffe BGR
x 255 minus the mean), reflection padding, ceil-mode pools. `load_vgg19_normalised` folds the
colour conv into conv1_1 (exact: reflection padding copies pixels, so it commutes with a per-pixel
affine map) and returns it as a `VGGFeatures` with reflection padding.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

import torch
from torch import nn

from marionette.errors import InputError, check_finite

log = logging.getLogger(__name__)

# Conv widths, "M" = 2x2 max pool (torchvision's configurations "E" and "D").
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# VGG-Face (Parkhi et al. 2015) takes RGB in 0..255 minus its mean image: in [0, 1] units, std 1/255.
VGG_FACE_MEAN, VGG_FACE_STD = (129.186 / 255, 104.762 / 255, 93.594 / 255), (1 / 255, 1 / 255, 1 / 255)
VGG19_NORMALISED_ASSET = "vgg19_normalised_to_relu3_1.safetensors"
# its convs' keys (indices in its nn.Sequential) -> ours (torchvision's `features` indices)
VGG19_NORMALISED_KEYS = {"2": "0", "5": "2", "9": "5", "12": "7", "16": "10"}


class VGGFeatures(nn.Module):
    """Frozen VGG conv stack up to relu<depth>_1; returns relu1_1, relu2_1, ... (`depth` of them)."""

    def __init__(self, layout: tuple[int | str, ...], mean: tuple[float, ...], std: tuple[float, ...],
                 depth: int = 5, padding_mode: str = "zeros", ceil_mode: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.taps: list[int] = []  # indices in `features` of the ReLU after each block's first conv
        in_channels, block_start = 3, True
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
                block_start = True
                continue
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1, padding_mode=padding_mode), nn.ReLU()]
            in_channels = int(item)
            if block_start:
                self.taps.append(len(layers) - 1)
                block_start = False
                if len(self.taps) == depth:
                    break
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W) in [-1, 1]
        x = ((image + 1) / 2 - self.mean) / self.std  # (B, 3, H, W) in the network's input units
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)  # (B, C_j, H/2^(j-1), W/2^(j-1))
        return outputs


def load_weights(network: VGGFeatures, path: Path) -> VGGFeatures:
    """Load the `features.*` tensors the network has from a torchvision-layout state dict at `path`
    (extra keys such as deeper convs or `classifier.*` are ignored)."""
    if not path.is_file():
        raise InputError(f"perceptual network weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    check_finite(state, path)
    wanted = network.state_dict()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise InputError(f"{path} is not a VGG state dict in torchvision's layout: it lacks {missing[0]}")
    wrong = [key for key in wanted if state[key].shape != wanted[key].shape]
    if wrong:
        raise InputError(f"{path}: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                         f"expected {tuple(wanted[wrong[0]].shape)}")
    network.load_state_dict({key: state[key] for key in wanted})
    return network


def load_vgg19(source: str) -> VGGFeatures:
    """The objective's VGG19: "shipped" (the package's normalised VGG19, relu1_1..relu3_1), a path
    to a full ImageNet VGG19 in torchvision's layout (relu1_1..relu5_1), or "random" (warns)."""
    if source == "shipped":
        return load_vgg19_normalised()
    network = VGGFeatures(VGG19_LAYOUT, IMAGENET_MEAN, IMAGENET_STD)
    if source == "random":
        log.warning("perceptual_weights=random: the VGG19 perceptual loss uses random weights, not ImageNet ones")
        return network
    return load_weights(network, Path(source))


def load_vgg19_normalised(path: Path | None = None) -> VGGFeatures:
    """The shipped normalised VGG19 (or one in its layout at `path`): relu1_1, relu2_1, relu3_1 of
    (B, 3, H, W) images in [-1, 1]."""
    from safetensors.torch import load_file

    if path is None:
        asset = importlib.resources.files("marionette") / "assets" / VGG19_NORMALISED_ASSET
        with importlib.resources.as_file(asset) as p:
            state = load_file(str(p))
    elif not Path(path).is_file():
        raise InputError(f"perceptual network weights not found: {path}")
    else:
        state = load_file(str(path))
    colour, offset = state["0.weight"][:, :, 0, 0], state["0.bias"]  # (3, 3), (3,): [0, 1] RGB -> network input
    first = state["2.weight"]  # (64, 3, 3, 3)
    renamed = {f"features.{ours}.{kind}": state[f"{theirs}.{kind}"]
               for theirs, ours in VGG19_NORMALISED_KEYS.items() for kind in ("weight", "bias")}
    renamed["features.0.weight"] = torch.einsum("ocyx,ci->oiyx", first, colour)
    renamed["features.0.bias"] = state["2.bias"] + torch.einsum("ocyx,c->o", first, offset)
    network = VGGFeatures(VGG19_LAYOUT, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), depth=3, padding_mode="reflect",
                          ceil_mode=True)
    network.load_state_dict(renamed)
    return network


def load_vgg_face(source: str) -> VGGFeatures | None:
    """VGG-Face (a VGG16 state dict in torchvision's layout) from a path, "random" (warns), or
    None for "none" (the face perceptual term is off; warns)."""
    if source == "none":
        log.warning("face_weights=none: the face perceptual loss is off (give a VGG-Face state dict to enable it)")
        return None
    network = VGGFeatures(VGG16_LAYOUT, VGG_FACE_MEAN, VGG_FACE_STD)
    if source == "random":
        log.warning("face_weights=random: the face perceptual loss uses random weights, not VGG-Face ones")
        return network
    return load_weights(network, Path(source))
