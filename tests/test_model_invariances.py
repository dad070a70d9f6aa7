"""Behaviour of the generator that the method promises: order of targets does not matter, the
cache path equals the full forward, warping, attention normalisation, duplicated targets."""

from __future__ import annotations

import pytest
import torch

from marionette.model.config import model_config
from marionette.model.generator import Generator
from marionette.model.layers import identity_grid, warp

SIZE = 64


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(model_config("tiny"))


def batch(k: int, b: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    return rand(b, k, 3, SIZE, SIZE), rand(b, k, 3, SIZE, SIZE), rand(b, 3, SIZE, SIZE)


@torch.no_grad()
def test_permuting_targets_leaves_output_unchanged(generator: Generator) -> None:
    images, landmarks, driver = batch(k=5)
    out = generator(images, landmarks, driver)
    order = torch.tensor([3, 0, 4, 2, 1])
    permuted = generator(images[:, order], landmarks[:, order], driver)
    assert (out.image - permuted.image).abs().max() < 1e-5
    # the outputs do depend on the targets (so the check above can fail)
    other = generator(images.flip(-1), landmarks, driver)
    assert (out.image - other.image).abs().max() > 1e-3


@torch.no_grad()
def test_generate_from_cache_equals_forward(generator: Generator) -> None:
    images, landmarks, driver = batch(k=3)
    cache = generator.encode_targets(images, landmarks)
    full = generator(images, landmarks, driver)
    cached = generator.generate(driver, cache)
    assert torch.equal(full.image, cached.image)
    second = generator.generate(driver.flip(-2), cache)  # another frame, same cache
    assert not torch.allclose(second.image, cached.image)


@torch.no_grad()
def test_two_copies_of_one_target_equal_one(generator: Generator) -> None:
    images, landmarks, driver = batch(k=1)
    one = generator(images, landmarks, driver)
    two = generator(images.repeat(1, 2, 1, 1, 1), landmarks.repeat(1, 2, 1, 1, 1), driver)
    assert (one.image - two.image).abs().max() < 1e-5


@torch.no_grad()
def test_attention_rows_sum_to_one_over_all_targets_and_positions(generator: Generator) -> None:
    images, landmarks, driver = batch(k=3)
    out = generator(images, landmarks, driver, return_attention=True)
    for weights in out.attention:
        assert weights.shape == (2, 2, 16, 3 * 4)  # (B, heads, 4·4 queries, K·2·2 keys)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 16), atol=1e-6)
        per_target = weights.unflatten(-1, (3, 4)).sum(-1)  # (B, heads, queries, K)
        assert (per_target > 0.01).all()  # the softmax spans the targets: no per-target normalisation


def test_zero_flow_is_exactly_the_identity_warp() -> None:
    features = torch.randn(2, 5, 16, 16)
    assert torch.equal(warp(features, torch.zeros(2, 2, 16, 16)), features)
    assert torch.equal(warp(features, torch.zeros(2, 2, 64, 64)), features)  # a finer flow is pooled


def test_flow_offsets_move_pixels() -> None:
    features = torch.randn(1, 3, 8, 8)
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 2 / 8  # one pixel in x (grid units: the image spans 2)
    shifted = warp(features, flow)
    assert torch.allclose(shifted[..., :-1], features[..., 1:], atol=1e-6)
    assert identity_grid(8, 8, torch.device("cpu"), torch.float32).shape == (1, 8, 8, 2)


def test_warp_of_mean_equals_mean_of_warps() -> None:
    """The decoder warps the K-average of Ŝ once instead of averaging K warps: same result."""
    targets = torch.randn(2, 4, 6, 16, 16)  # (B, K, C, H, W)
    flow = torch.rand(2, 2, 16, 16) - 0.5
    each = torch.stack([warp(targets[:, k], flow) for k in range(4)], dim=1).mean(1)
    assert torch.allclose(warp(targets.mean(1), flow), each, atol=1e-6)
