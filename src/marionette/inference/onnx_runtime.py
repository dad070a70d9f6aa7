"""The generator as ONNX (ours): `export-onnx` writes an inference export as two graphs and a
manifest, and the `onnx` renderer runs them with ONNX Runtime instead of torch.

  target_encoder.onnx   images, landmark_images (1, K, 3, s, s) -> the TargetCache's tensors (K dynamic)
  frame_generator.onnx  driver_landmark_image (B, 3, s, s) [, warp_image (B, 3, s, s)] and the
                        cache tensors it reads, repeated B times -> image (B, 3, s, s) in [-1, 1]
                        (B dynamic: a file driver's frames are drawn several per call)
  model.json            format tag, model and preprocess configs, the graphs' input and output
                        names in order, the source export's SHA-256

The cache crosses the graph boundary flattened: one tensor per TargetCache field, a tuple field as
`field.0`, `field.1`, ... (read from the dataclass, so new cache fields export unchanged). A cache
tensor the frame graph does not read (the target flows) is dropped from its inputs by the exporter.
OnnxGenerator stands in for the Generator inside NeuralRenderer, so the landmark images, resizing,
colour matching and warp-guided correction are the neural renderer's own.

Export uses torch's TorchScript exporter (`dynamo=False`), which needs the `onnx` package; running
needs onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marionette.config import MAX_SHOTS, Settings, between, from_dict, to_dict
from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.inference.neural import NeuralRenderer
from marionette.model.config import ModelConfig
from marionette.model.generator import Generator, TargetCache

ONNX_FORMAT = "marionette.onnx/1"
ENCODER_FILE, FRAME_FILE, MANIFEST_FILE = "target_encoder.onnx", "frame_generator.onnx", "model.json"
FILES = (ENCODER_FILE, FRAME_FILE, MANIFEST_FILE)
INSTALL = "pip install 'marionette[onnx]'"


@dataclass(frozen=True)
class OnnxExportConfig(Settings):
    opset: int = 17  # ONNX opset of both graphs (17: InstanceNorm, GridSample and LayerNorm are native)
    check: bool = True  # run both graphs in onnxruntime at K = 1 and K = 8 and refuse an export off torch's output
    tolerance: float = 1e-3  # largest |onnxruntime - torch| pixel difference the check accepts (images in [-1, 1])

    RULES = dict(opset=between(17, 23), tolerance=between(0, 1))


def flatten_cache(cache: TargetCache) -> dict[str, torch.Tensor]:
    """A TargetCache as named tensors in field order: `field` for a tensor, `field.i` for the
    i-th tensor of a tuple field."""
    flat: dict[str, torch.Tensor] = {}
    for field in dataclasses.fields(cache):
        value = getattr(cache, field.name)
        if isinstance(value, torch.Tensor):
            flat[field.name] = value
        else:
            flat.update({f"{field.name}.{i}": t for i, t in enumerate(value)})
    return flat


def unflatten_cache(flat: Mapping[str, torch.Tensor]) -> TargetCache:
    """The inverse of flatten_cache (a tuple field with no `field.i` entries is empty)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(TargetCache):
        if field.name in flat:
            values[field.name] = flat[field.name]
        else:
            count = sum(name.startswith(field.name + ".") for name in flat)
            values[field.name] = tuple(flat[f"{field.name}.{i}"] for i in range(count))
    return TargetCache(**values)


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


def _targets(config: ModelConfig, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random target images and landmark images (1, K, 3, s, s) in [-1, 1]: export and check inputs."""
    rng = torch.Generator().manual_seed(seed)
    s = config.image_size
    return tuple(torch.rand(2, 1, k, 3, s, s, generator=rng) * 2 - 1)  # type: ignore[return-value]


def _frame_inputs(config: ModelConfig, seed: int = 1, batch: int = 1) -> dict[str, torch.Tensor]:
    """Random driver landmark images (and warp images for a warp-guided model) (B, 3, s, s)."""
    rng = torch.Generator().manual_seed(seed)
    s = config.image_size
    names = ["driver_landmark_image"] + ["warp_image"] * config.warp_guided
    return {name: torch.rand(batch, 3, s, s, generator=rng) * 2 - 1 for name in names}


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
    onnx_generator = OnnxGenerator(generator.config, _session(encoder, source), _session(frame, source))
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


def _session(model: str | Path | bytes, name: str | Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session of an ONNX file or its bytes; a missing runtime or a damaged file
    is a one-line InputError naming `name`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(f"{name}: the onnx renderer needs onnxruntime: {INSTALL}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for a missing, truncated or invalid graph
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{name}: cannot load ONNX graph ({first[:200]}); export it again with "
                         "`marionette export-onnx`") from None


@dataclass(frozen=True)
class OnnxOutput:
    image: torch.Tensor  # (B, 3, s, s) in [-1, 1]


class OnnxGenerator:
    """The two ONNX graphs behind the Generator's inference API (config, encode_targets,
    generate), run by onnxruntime on the CPU; tensors in and out are torch's."""

    def __init__(self, config: ModelConfig, encoder: Any, frame: Any) -> None:
        self.config, self._encoder, self._frame = config, encoder, frame
        self._cache_names = [o.name for o in encoder.get_outputs()]
        self._frame_names = [i.name for i in frame.get_inputs()]

    @staticmethod
    def load(folder: str | Path, threads: int | None = None) -> tuple[OnnxGenerator, PreprocessConfig]:
        """The ONNX export in `folder` and the crop settings of its training data; `threads`
        (default: torch's thread count, the pipeline's CPU policy) for each graph."""
        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if folder.is_file():
            raise InputError(f"{folder}: is a file, not an ONNX export folder; make one with `marionette export-onnx "
                             f"{folder} --out DIR` (or use renderer=neural for a generator export)")
        if not manifest_path.is_file():
            raise InputError(f"{folder}: not an ONNX export (no {MANIFEST_FILE}); make one with "
                             f"`marionette export-onnx EXPORT --out {folder}`")
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("format") != ONNX_FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, want {ONNX_FORMAT!r}")
            model = from_dict(ModelConfig, manifest["model"])
            preprocess = from_dict(PreprocessConfig, manifest["preprocess"])
        except (ValueError, KeyError, TypeError, AttributeError, InputError, UnicodeDecodeError) as e:
            raise InputError(f"{manifest_path}: not a marionette ONNX manifest ({e}); export it again "
                             "with `marionette export-onnx`") from None
        threads = threads or torch.get_num_threads()
        sessions = [_session(folder / name, folder / name, threads) for name in (ENCODER_FILE, FRAME_FILE)]
        for (graph, file), session in zip((("target_encoder", ENCODER_FILE), ("frame_generator", FRAME_FILE)), sessions):
            names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
            if [manifest.get(graph, {}).get(key) for key in ("inputs", "outputs")] != list(names):
                raise InputError(f"{folder / file}: its inputs and outputs are not those {MANIFEST_FILE} lists; "
                                 "export it again with `marionette export-onnx`")
        return OnnxGenerator(model, *sessions), preprocess

    def encode_targets(self, images: torch.Tensor, landmark_images: torch.Tensor) -> TargetCache:
        """images, landmark_images (1, K, 3, s, s) -> the cache of this target set."""
        outputs = self._encoder.run(None, {"images": _array(images), "landmark_images": _array(landmark_images)})
        return unflatten_cache({name: torch.from_numpy(a).to(images.device) for name, a in zip(self._cache_names, outputs)})

    def generate(self, driver_landmark_image: torch.Tensor, cache: TargetCache,
                 warp_image: torch.Tensor | None = None) -> OnnxOutput:
        """driver_landmark_image (B, 3, s, s), the cache of B target sets, warp_image (B, 3, s, s)
        for (and only for) a warp-guided model -> the image (B, 3, s, s)."""
        if (warp_image is not None) != self.config.warp_guided:
            raise ValueError("a warp-guided generator needs warp_image; any other takes none")
        given = {"driver_landmark_image": driver_landmark_image, "warp_image": warp_image, **flatten_cache(cache)}
        (image,) = self._frame.run(None, {name: _array(given[name]) for name in self._frame_names})
        return OnnxOutput(image=torch.from_numpy(image).to(driver_landmark_image.device))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().contiguous().numpy()


class OnnxRenderer(NeuralRenderer):
    """The neural renderer with the generator run by onnxruntime (`renderer=onnx`)."""

    name = "onnx"

    @classmethod
    def load(cls, folder: str | Path, crop_size: int) -> OnnxRenderer:
        generator, preprocess = OnnxGenerator.load(folder)
        return cls(generator, crop_size, source=str(folder), preprocess=preprocess)
