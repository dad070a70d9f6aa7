"""The generator exported to ONNX (ours, `export-onnx`): torch's tracer writes an inference export
as the two graphs and the manifest that inference/onnx_runtime.py runs (the layout is described
there), and the export is checked against torch in onnxruntime before anything is written.

Export uses torch's TorchScript exporter (`dynamo=False`), which needs the `onnx` package.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from marionette.config import MAX_SHOTS, to_dict
from marionette.errors import InputError
from marionette.inference.config import OnnxExportConfig
from marionette.inference.onnx_runtime import (
    ENCODER_FILE,
    FRAME_FILE,
    INSTALL,
    MANIFEST_FILE,
    ONNX_FORMAT,
    OnnxGenerator,
    flatten_cache,
    open_session,
    unflatten_cache,
)
from marionette.model.config import ModelConfig
from marionette.model.generator import Generator


class _TargetEncoderGraph(nn.Module):
    """What target_encoder.onnx computes: images, landmark images (1, K, 3, s, s) -> flat cache."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, images: torch.Tensor, landmark_images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_cache(self.generator.encode_targets(images, landmark_images)).values())


class _FrameGraph(nn.Module):
    """What frame_generator.onnx computes: driver landmark images (B, 3, s, s) [, warp images], then
    the flat cache's tensors in `names` order (batch B) -> images (B, 3, s, s)."""

    def __init__(self, generator: Generator, names: list[str]) -> None:
        super().__init__()
        self.generator, self.names = generator, names

    def forward(self, driver_landmark_image: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        warp_image = rest[0] if self.generator.config.warp_guided else None
        cache = unflatten_cache(dict(zip(self.names, rest[warp_image is not None:])))
        return self.generator.generate(driver_landmark_image, cache, warp_image).image


def _k_axes(small: Mapping[str, torch.Tensor], large: Mapping[str, torch.Tensor], k: tuple[int, int]
            ) -> dict[str, dict[int, str]]:
    """Dynamic axes of named tensors computed at two K: the dimensions that differ, named `K` or
    `nK` (n positions per target, e.g. keys of all targets' positions)."""
    axes: dict[str, dict[int, str]] = {}
    for name, a in small.items():
        for dim, (m, n) in enumerate(zip(a.shape, large[name].shape)):
            if m == n:
                continue
            per, rest = divmod(m, k[0])
            multiple = not rest and per * k[1] == n  # n positions per target: named nK
            axes.setdefault(name, {})[dim] = ("K" if per == 1 else f"{per}K") if multiple else f"{name}:{dim}"
    return axes


NOISE_GRAIN = 4  # pixels per cell of the check's random images (ours): image-like, not white noise


def _random_images(rng: torch.Generator, *lead: int, size: int) -> torch.Tensor:
    """(*lead, 3, size, size) random images in [-1, 1]: uniform noise on a grid of NOISE_GRAIN-pixel
    cells, bilinearly upsampled. Image-like on purpose: on white noise, a warp-guided generator's
    flow turns a float difference of 1e-4 grid units into a 0.1 jump between neighbouring pixels
    (the shipped generator: 0.12 on white noise, at most 1 grey level on real crops)."""
    cells = max(size // NOISE_GRAIN, 1)
    coarse = torch.rand(math.prod(lead), 3, cells, cells, generator=rng) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).reshape(*lead, 3, size, size)


def _targets(config: ModelConfig, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random target images and landmark images (1, K, 3, s, s) in [-1, 1]: export and check inputs."""
    rng = torch.Generator().manual_seed(seed)
    return tuple(_random_images(rng, 2, 1, k, size=config.image_size))  # type: ignore[return-value]


def _frame_inputs(config: ModelConfig, seed: int = 1, batch: int = 1) -> dict[str, torch.Tensor]:
    """Random driver landmark images (and warp images for a warp-guided model) (B, 3, s, s)."""
    rng = torch.Generator().manual_seed(seed)
    names = ["driver_landmark_image"] + ["warp_image"] * config.warp_guided
    return {name: _random_images(rng, batch, size=config.image_size) for name in names}


def _to_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str], axes: dict[str, dict[int, str]],
             opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's notes on shape asserts and Python ints: the dynamic axes cover K
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), buffer, dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=outputs, dynamic_axes=axes)
    return buffer.getvalue()


def _graph_names(model: bytes) -> tuple[list[str], list[str]]:
    """Input and output names of an ONNX graph, in order."""
    import onnx

    graph = onnx.load_model_from_string(model).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def export_onnx(source: str | Path, out: Path, config: OnnxExportConfig = OnnxExportConfig()) -> float | None:
    """Write the ONNX export of the generator export `source` into the new folder `out`, atomically
    (`out` may only be replaced where the caller has checked it may). Returns the largest
    |onnxruntime - torch| of the check (None when config.check is off)."""
    from marionette.content_credentials import Ingredient
    from marionette.inference.export import load_generator
    from marionette.media import atomic_folder, sweep_temporaries

    try:
        import onnx  # noqa: F401  (torch's TorchScript exporter needs it)
    except ImportError:
        raise InputError(f"export-onnx needs the onnx package: {INSTALL}") from None
    exported = load_generator(source)
    generator = exported.generator.float().eval()
    with torch.no_grad():
        encoded = {k: generator.encode_targets(*_targets(exported.model, k)) for k in (2, 3)}
    caches = {k: flatten_cache(cache) for k, cache in encoded.items()}
    names = list(caches[2])
    cache_axes = _k_axes(caches[2], caches[3], (2, 3))
    frame_inputs = _frame_inputs(exported.model, batch=2)  # traced at B = 2 so that no size-1 batch is baked in
    two_frames = {name: t.contiguous() for name, t in flatten_cache(encoded[2].repeat(2)).items()}  # the cache, B = 2
    frame_axes = {name: {0: "B", **cache_axes.get(name, {})} for name in [*frame_inputs, *names]}
    encoder = _to_onnx(_TargetEncoderGraph(generator), dict(zip(("images", "landmark_images"), _targets(exported.model, 2))),
                       names, {"images": {1: "K"}, "landmark_images": {1: "K"}, **cache_axes}, config.opset)
    frame = _to_onnx(_FrameGraph(generator, names), {**frame_inputs, **two_frames}, ["image"],
                     {**frame_axes, "image": {0: "B"}}, config.opset)
    graphs = {"target_encoder": _graph_names(encoder), "frame_generator": _graph_names(frame)}
    manifest = {"format": ONNX_FORMAT, "model": to_dict(exported.model), "preprocess": to_dict(exported.preprocess),
                "source": {"name": Path(source).name, "sha256": Ingredient.of("generator", source).sha256,
                           "step": exported.step},
                "opset": config.opset, **{g: {"inputs": i, "outputs": o} for g, (i, o) in graphs.items()}}
    error = _check(generator, encoder, frame, config.tolerance, source) if config.check else None
    sweep_temporaries(out)  # what a killed export left
    with atomic_folder(out) as tmp:
        (tmp / ENCODER_FILE).write_bytes(encoder)
        (tmp / FRAME_FILE).write_bytes(frame)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return error


@torch.no_grad()
def _check(generator: Generator, encoder: bytes, frame: bytes, tolerance: float, source: str | Path) -> float:
    """Largest |onnxruntime - torch| of frames at K = 1 (one frame) and K = MAX_SHOTS (a batch of
    two frames); refused above tolerance."""
    onnx_generator = OnnxGenerator(generator.config, open_session(encoder, source), open_session(frame, source))
    error = 0.0
    for k, batch in ((1, 1), (MAX_SHOTS, 2)):
        targets, frame_inputs = _targets(generator.config, k, seed=k), _frame_inputs(generator.config, k, batch)
        args = (frame_inputs["driver_landmark_image"], frame_inputs.get("warp_image"))
        want_cache, got_cache = generator.encode_targets(*targets), onnx_generator.encode_targets(*targets)
        want = generator.generate(args[0], want_cache.repeat(batch), args[1]).image
        got = onnx_generator.generate(args[0], got_cache.repeat(batch), args[1]).image
        error = max(error, (got - want).abs().max().item())
    if not error <= tolerance:
        raise InputError(f"{source}: its ONNX graphs differ from torch by up to {error:.2g} (tolerance {tolerance:g}); "
                         "nothing written (try another opset, or raise tolerance)")
    return error
