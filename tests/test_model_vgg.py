"""Perceptual network weights: the shipped default, loaded offline; torchvision layout round trip,
clear errors, explicit random weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from marionette.errors import InputError
from marionette.model import vgg
from marionette.model.vgg import VGG16_LAYOUT, VGG19_LAYOUT, VGGFeatures, load_vgg19, load_vgg_face


def torchvision_style_state(layout: tuple, seed: int) -> dict[str, torch.Tensor]:
    """A full VGG state dict in torchvision's layout: every conv of `features`, plus a classifier."""
    gen = torch.Generator().manual_seed(seed)
    state, index, in_channels = {}, 0, 3
    for item in layout:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, in_channels, 3, 3, generator=gen)
        state[f"features.{index}.bias"] = torch.randn(item, generator=gen)
        in_channels, index = item, index + 2
    state["classifier.0.weight"] = torch.randn(8, 4, generator=gen)
    return state


def test_vgg19_taps_are_relu_x_1() -> None:
    net = VGGFeatures(VGG19_LAYOUT, vgg.IMAGENET_MEAN, vgg.IMAGENET_STD)
    assert net.taps == [1, 6, 11, 20, 29]  # torchvision indices of relu1_1 .. relu5_1
    outputs = net(torch.zeros(1, 3, 32, 32))
    assert [o.shape[1:] for o in outputs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    assert VGGFeatures(VGG16_LAYOUT, vgg.VGG_FACE_MEAN, vgg.VGG_FACE_STD).taps == [1, 6, 11, 18, 25]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg19_round_trip_from_path(tmp_path: Path, suffix: str) -> None:
    state = torchvision_style_state(VGG19_LAYOUT, seed=0)
    path = tmp_path / f"vgg19{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    net = load_vgg19(str(path))
    loaded = net.state_dict()
    assert set(loaded) == {f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
                           for p in ("weight", "bias")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert not any(p.requires_grad for p in net.parameters())


def test_default_objective_uses_the_shipped_vgg19_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """LossConfig's default perceptual network is the package's asset, loaded with no network
    access: any socket or hub download fails the test."""
    import socket

    from marionette.model.config import LossConfig, model_config
    from marionette.model.discriminator import Discriminator
    from marionette.model.losses import build_objective
    from marionette.model.vgg import load_vgg19_normalised

    def offline(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket, "socket", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert LossConfig().perceptual_weights == "shipped"
    objective = build_objective(LossConfig(), Discriminator(model_config("tiny")))
    asset = load_vgg19_normalised()
    assert objective.perceptual.state_dict().keys() == asset.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(objective.perceptual.state_dict().values(),
                                                  asset.state_dict().values()))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    features = objective.perceptual(image)
    assert [f.shape[1] for f in features] == [64, 128, 256]  # relu1_1, relu2_1, relu3_1
    assert all(torch.equal(a, b) for a, b in zip(features, asset(image)))
    assert features[0].abs().sum() > 0


def test_missing_or_wrong_weights_file_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(InputError, match="not found: .*nowhere/vgg19.pth$"):
        load_vgg19(str(missing))
    wrong = tmp_path / "vgg16.pth"
    torch.save(torchvision_style_state(VGG16_LAYOUT, seed=0), wrong)
    with pytest.raises(InputError, match="vgg16.pth"):
        load_vgg19(str(wrong))  # VGG16 lacks features.28


def test_random_weights_are_an_explicit_choice_that_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="marionette.model.vgg"):
        net = load_vgg19("random")
    assert isinstance(net, VGGFeatures) and "random weights" in caplog.text


def test_vgg_face_from_path(tmp_path: Path) -> None:
    state = torchvision_style_state(VGG16_LAYOUT, seed=2)
    torch.save(state, tmp_path / "vgg_face.pth")
    net = load_vgg_face(str(tmp_path / "vgg_face.pth"))
    assert torch.equal(net.state_dict()["features.24.weight"], state["features.24.weight"])


def test_shipped_normalised_vgg19_equals_its_style_transfer_layout() -> None:
    """load_vgg19_normalised (colour conv folded into conv1_1, reflection padding, ceil-mode pools)
    gives the features of the file's own network, written out as its SOURCES.md describes."""
    import importlib.resources

    from safetensors.torch import load_file
    from torch import nn

    from marionette.model.vgg import VGG19_NORMALISED_ASSET, load_vgg19_normalised

    with importlib.resources.as_file(importlib.resources.files("marionette") / "assets" / VGG19_NORMALISED_ASSET) as p:
        state = load_file(str(p))

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU()]

    reference = nn.Sequential(nn.Conv2d(3, 3, 1), *conv(3, 64), *conv(64, 64), nn.MaxPool2d(2, 2, ceil_mode=True),
                              *conv(64, 128), *conv(128, 128), nn.MaxPool2d(2, 2, ceil_mode=True), *conv(128, 256))
    reference.load_state_dict(state)
    image = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(0))  # odd sizes: ceil-mode pools
    expected, x = [], image
    for index, layer in enumerate(reference):
        x = layer(x)
        if index in (3, 10, 17):  # relu1_1, relu2_1, relu3_1
            expected.append(x)
    ours = load_vgg19_normalised()(image * 2 - 1)
    assert len(ours) == 3
    for a, b in zip(ours, expected):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
