"""The generator's faster computations give the reference's results: the blender's keys and values
held in the target cache and the fused attention product (scaled_dot_product_attention) against
keys and values projected from z_y in every frame with an explicit softmax; instance norm as a
group norm; the residual up block's norm before its upsampling; average pooling by strided views;
the channels-last paths of instance norm and pooling, and the generator in channels-last. A frame's
cost grows with K only by the attention product itself."""

from __future__ import annotations

import math

import pytest
import torch

from marionette.bench_model import count_gflops
from marionette.model.config import LEVELS, model_config
from marionette.model.generator import Generator
from marionette.model.layers import AvgPool2, InstanceNorm, ResidualUp, like, positional_encoding

SIZE = 64


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(model_config("tiny")).eval()


def batch(k: int, b: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen) * 2 - 1  # noqa: E731
    return rand(b, k, 3, SIZE, SIZE), rand(b, k, 3, SIZE, SIZE), rand(b, 3, SIZE, SIZE)


def reference(g: Generator, images: torch.Tensor, landmarks: torch.Tensor, driver: torch.Tensor
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The image and attention weights computed as the paper states them, per frame: every block
    projects z_y + its positional encoding to keys and z_y to values, then softmax(q kᵀ/√d) v."""
    b, k = images.shape[:2]
    z, normalized, _ = g.target_encoder(images.flatten(0, 1), landmarks.flatten(0, 1))
    targets = z.unflatten(0, (b, k))  # (B, K, Cy, Hy, Wy)
    x = g.driver_encoder(driver)  # (B, C, Hx, Wx)
    _, c, hx, wx = x.shape
    _, _, cy, hy, wy = targets.shape
    all_weights = []
    for block in g.blender.blocks:
        d = c // block.heads
        pe_x = positional_encoding(hx, wx, c, hx, x.device, x.dtype)
        pe_y = positional_encoding(hy, wy, cy, hx, x.device, x.dtype)
        queries = (x + pe_x).flatten(2).transpose(1, 2)  # (B, Hx·Wx, C)
        keys = (targets + pe_y).permute(0, 1, 3, 4, 2).reshape(b, k * hy * wy, cy)
        values = targets.permute(0, 1, 3, 4, 2).reshape(b, k * hy * wy, cy)
        q_h = block.query(queries).view(b, hx * wx, block.heads, d).transpose(1, 2)
        k_h = block.key(keys).view(b, k * hy * wy, block.heads, d).transpose(1, 2)
        v_h = block.value(values).view(b, k * hy * wy, block.heads, d).transpose(1, 2)
        weights = torch.softmax(q_h @ k_h.transpose(-1, -2) / math.sqrt(d), dim=-1)  # (B, heads, Hx·Wx, K·Hy·Wy)
        attended = block.out((weights @ v_h).transpose(1, 2).reshape(b, hx * wx, c)).transpose(1, 2)
        x = block.norm_attention(x + attended.reshape(b, c, hx, wx))
        x = block.norm_feed_forward(x + block.feed_forward(x))
        all_weights.append(weights)
    mean_skips = tuple(s.unflatten(0, (b, k)).mean(dim=1) for s in normalized)
    image, _, _ = g.decoder(x, mean_skips)
    return image, all_weights


@pytest.mark.parametrize("k", [1, 3])
@torch.no_grad()
def test_cached_keys_values_and_fused_attention_equal_the_reference(generator: Generator, k: int) -> None:
    images, landmarks, driver = batch(k)
    want_image, want_weights = reference(generator, images, landmarks, driver)
    cache = generator.encode_targets(images, landmarks)
    fused = generator.generate(driver, cache)  # scaled_dot_product_attention, no weights
    explicit = generator.generate(driver, cache, return_attention=True)
    assert fused.attention is None
    assert (fused.image - want_image).abs().max() <= 1e-5
    assert (explicit.image - want_image).abs().max() <= 1e-5
    for got, want in zip(explicit.attention, want_weights, strict=True):
        assert (got - want).abs().max() <= 1e-6
        assert torch.allclose(got.sum(-1), torch.ones(2, generator.config.attention_heads, 16), atol=1e-6)
    # the comparison can fail: another driver gives another image
    assert (generator.generate(driver.flip(-1), cache).image - want_image).abs().max() > 1e-3


def test_gradients_reach_the_key_and_value_projections(generator: Generator) -> None:
    images, landmarks, driver = batch(k=2)
    generator.zero_grad()
    generator(images, landmarks, driver).image.square().mean().backward()
    for block in generator.blender.blocks:
        assert block.key.weight.grad.abs().sum() > 0 and block.value.weight.grad.abs().sum() > 0
    generator.zero_grad()


@torch.no_grad()
def test_a_frame_grows_with_k_only_by_the_attention_product(generator: Generator) -> None:
    config = generator.config
    side_x, side_y = SIZE >> (LEVELS - 1), SIZE >> LEVELS
    # per extra target and block: q kᵀ and weights · v, 2 FLOPs per multiply-add, batch 2
    product = 2 * 2 * 2 * side_x**2 * side_y**2 * config.width(LEVELS - 1) * config.attention_blocks / 1e9
    frame = {}
    for k in (1, 8):
        images, landmarks, driver = batch(k)
        cache = generator.encode_targets(images, landmarks)
        frame[k], _ = count_gflops(lambda d=driver, c=cache: generator.generate(d, c))
        explicit, _ = count_gflops(lambda d=driver, c=cache: generator.generate(d, c, return_attention=True))
        assert explicit == pytest.approx(frame[k], rel=1e-9)  # the fused product is counted too
    assert (frame[8] - frame[1]) / 7 == pytest.approx(product, rel=1e-9)
    # before the cache held them, each extra target also cost the key and value projections
    c, cy = config.width(LEVELS - 1), config.width(LEVELS)
    projections = 2 * 2 * 2 * side_y**2 * cy * c * config.attention_blocks / 1e9
    assert (frame[8] - frame[1]) / 7 / frame[1] < (product + projections) / (frame[1] + projections) / 2


@torch.no_grad()
def test_layers_equal_their_reference_computations() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8, 8) * 3 + 1  # (B, C, H, W)
    norm = InstanceNorm(6)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    assert (norm(x) - torch.nn.functional.instance_norm(x, weight=norm.weight, bias=norm.bias)).abs().max() <= 1e-5
    assert (AvgPool2()(x) - torch.nn.functional.avg_pool2d(x, 2)).abs().max() <= 1e-6
    up = ResidualUp(6, 4)
    for layer in (up.main[0], up.main[4]):
        torch.nn.init.normal_(layer.weight), torch.nn.init.normal_(layer.bias)
    assert (up(x) - (up.main(x) + up.skip(x))).abs().max() <= 1e-5  # main as written: upsample, then norm


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


@pytest.mark.parametrize("shape", [(2, 32, 16, 16), (2, 8, 32, 32), (2, 32, 32, 32)])  # round trip, round trip, own
@torch.no_grad()
def test_channels_last_norm_and_pooling_equal_the_contiguous_layout(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + 1  # (B, C, H, W)
    x_last = x.contiguous(memory_format=torch.channels_last)
    norm = InstanceNorm(shape[1])
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    for layer in (norm, AvgPool2()):
        got, want = layer(x_last), layer(x)
        assert is_channels_last(got) and not is_channels_last(want)
        assert (got - want).abs().max() <= 1e-5
    assert (AvgPool2()(x_last) - torch.nn.functional.avg_pool2d(x, 2)).abs().max() <= 1e-6


def test_like_takes_the_reference_dtype_and_layout() -> None:
    x = torch.randn(1, 4, 8, 8)  # (B, C, H, W) fp32, contiguous
    reference = torch.randn(1, 2, 8, 8).bfloat16().contiguous(memory_format=torch.channels_last)
    joined = like(x, reference)
    assert joined.dtype == torch.bfloat16 and is_channels_last(joined)
    assert torch.equal(joined.float(), x.bfloat16().float())
    assert not is_channels_last(like(joined, x)) and like(joined, x).dtype == torch.float32


@torch.no_grad()
def test_the_warp_guided_generator_in_channels_last_equals_the_contiguous_layout() -> None:
    torch.manual_seed(0)
    generator = Generator(model_config("tiny", {"warp_guided": True, "correction": "refine"})).eval()
    torch.nn.init.normal_(generator.decoder.correction.head.weight, std=0.1)  # it moves and paints (starts at 0)
    images, landmarks, driver = batch(k=2)
    warp_image = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    want = generator.generate(driver, generator.encode_targets(images, landmarks), warp_image).image
    generator.to(memory_format=torch.channels_last)
    last = [x.contiguous(memory_format=torch.channels_last) for x in (driver, warp_image)]
    got = generator.generate(last[0], generator.encode_targets(images, landmarks), last[1]).image
    assert (got - want).abs().max() <= 1e-4
    assert (want - warp_image).abs().mean() > 1e-2  # the refiner changed the warp: the comparison can fail


@torch.no_grad()
def test_the_warp_guided_generator_runs_with_its_weights_cast_to_bf16() -> None:
    torch.manual_seed(0)
    generator = Generator(model_config("tiny", {"warp_guided": True, "correction": "refine"})).eval().bfloat16()
    images, landmarks, driver = (x.bfloat16() for x in batch(k=1))
    warp_image = (torch.rand(2, 3, SIZE, SIZE) * 2 - 1).bfloat16()
    image = generator.generate(driver, generator.encode_targets(images, landmarks), warp_image).image
    assert image.dtype == torch.bfloat16 and torch.isfinite(image).all()
