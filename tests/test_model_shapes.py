"""Shapes at every preset for K in {1, 2, 8}: generator outputs, cache, attention, flows, discriminator."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from marionette.model.config import model_config
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator, GeneratorOutput, TargetCache


def expected_shapes(name: str, k: int) -> dict[str, tuple[int, ...]]:
    c = model_config(name)
    s, heads = c.image_size, c.attention_heads
    return {
        "image": (1, 3, s, s),
        "keys": (1, heads, k * (s // 32) ** 2, c.width(4) // heads),
        "attention": (1, heads, (s // 16) ** 2, k * (s // 32) ** 2),
        "target_flows": (1, k, 2, s // 2, s // 2),
    }


def check(name: str, k: int, cache: TargetCache, out: GeneratorOutput) -> None:
    c, want = model_config(name), expected_shapes(name, k)
    s = c.image_size
    assert out.image.shape == want["image"]
    assert [t.shape for t in cache.keys + cache.values] == [want["keys"]] * (2 * c.attention_blocks)
    assert [m.shape for m in cache.mean_skips] == [(1, c.width(j), s >> j, s >> j) for j in range(1, 5)]
    assert [a.shape for a in out.attention] == [want["attention"]] * c.attention_blocks
    assert [f.shape for f in out.driver_flows] == [(1, 2, s >> j, s >> j) for j in (4, 3, 2, 1)]
    assert out.target_flows.shape == want["target_flows"]
    assert out.image.abs().max() <= 1


@pytest.mark.parametrize("name", ["tiny", "cpu"])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_generator_shapes(name: str, k: int) -> None:
    torch.manual_seed(0)
    c = model_config(name)
    g = Generator(c)
    s = c.image_size
    with torch.no_grad():
        cache = g.encode_targets(torch.rand(1, k, 3, s, s) * 2 - 1, torch.rand(1, k, 3, s, s) * 2 - 1)
        out = g.generate(torch.rand(1, 3, s, s) * 2 - 1, cache, return_attention=True)
    check(name, k, cache, out)
    assert g.generate(torch.rand(1, 3, s, s) * 2 - 1, cache).attention is None  # weights only when asked


def test_paper_shapes() -> None:
    """The paper preset at batch 1: one target encoded (the encoder runs per target, K-agnostic),
    then frames for K in {1, 2, 8} from caches of that target repeated (keeps the test quick)."""
    torch.manual_seed(0)
    c = model_config("paper")
    g = Generator(c)
    with torch.no_grad():
        one = g.encode_targets(torch.rand(1, 1, 3, 256, 256) * 2 - 1, torch.rand(1, 1, 3, 256, 256) * 2 - 1)
        assert g.target_encoder(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256))[0].shape == (
            1, 512, 8, 8)  # method.md: z_y (B·K, 512, 8, 8)
        assert g.driver_encoder(torch.zeros(1, 3, 256, 256)).shape == (1, 512, 16, 16)  # z_x
        for k in (1, 2, 8):
            cache = dataclasses.replace(one, keys=tuple(t.repeat(1, 1, k, 1) for t in one.keys),
                                        values=tuple(t.repeat(1, 1, k, 1) for t in one.values),
                                        flows=one.flows.expand(-1, k, -1, -1, -1))
            check("paper", k, cache, g.generate(torch.rand(1, 3, 256, 256) * 2 - 1, cache, return_attention=True))


@pytest.mark.parametrize("name", ["tiny", "cpu", "paper"])
def test_discriminator_shapes(name: str) -> None:
    c = model_config(name)
    s = c.image_size
    with torch.no_grad():
        out = Discriminator(c)(torch.zeros(2, 3, s, s), torch.zeros(2, 3, s, s))
    assert out.score.shape == (2,)
    assert [f.shape for f in out.features] == [(2, c.disc_width(j), s >> j, s >> j) for j in range(1, 6)]
