"""The generator's ONNX export run by ONNX Runtime (ours): the `onnx` renderer's backend. The
export (inference/onnx_export.py, `export-onnx`) writes a generator export as two graphs and a
manifest:

  target_encoder.onnx   images, landmark_images (1, K, 3, s, s) -> the TargetCache's tensors (K dynamic)
  frame_generator.onnx  driver_landmark_image (B, 3, s, s) [, warp_image (B, 3, s, s)] and the
                        cache tensors it reads, repeated B times -> image (B, 3, s, s) in [-1, 1]
                        (B dynamic: a file driver's frames are drawn several per call)
  model.json            format tag, model and preprocess configs, the graphs' input and output
                        names in order, the source export's SHA-256

The cache crosses the graph boundary flattened: one tensor per TargetCache field, a tuple field as
`field.0`, `field.1`, ... (read from the dataclass, so new cache fields export unchanged). A cache
tensor the frame graph does not read (the target flows) is dropped from its inputs by the exporter.
OnnxGenerator is a GeneratorBackend (inference/neural.py): the `onnx` renderer is the neural
renderer with it in the torch Generator's place, so the landmark images, resizing, colour matching
and warp-guided correction are the neural renderer's own. Running needs onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marionette.config import from_dict
from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.model.config import ModelConfig
from marionette.model.generator import TargetCache

ONNX_FORMAT = "marionette.onnx/1"
ENCODER_FILE, FRAME_FILE, MANIFEST_FILE = "target_encoder.onnx", "frame_generator.onnx", "model.json"
FILES = (ENCODER_FILE, FRAME_FILE, MANIFEST_FILE)
INSTALL = "pip install 'marionette[onnx]'"


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


def open_session(model: str | Path | bytes, name: str | Path, threads: int = 1) -> Any:
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
        sessions = [open_session(folder / name, folder / name, threads) for name in (ENCODER_FILE, FRAME_FILE)]
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
