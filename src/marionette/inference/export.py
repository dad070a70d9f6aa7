"""The inference export: one safetensors file holding the EMA generator's weights, with the model
config, the dataset's preprocessing (crop) config and the training step as JSON in its header
metadata. Training writes it (`export_generator`); `reenact`, `evaluate` and the app load it
(`load_generator`) with no pickle, refusing a damaged file in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from marionette.config import from_dict, to_dict
from marionette.data.config import PreprocessConfig
from marionette.errors import InputError, check_finite
from marionette.media import atomic_path
from marionette.model.config import ModelConfig
from marionette.model.generator import Generator

EXPORT_FORMAT = "marionette.generator/1"


@dataclass(frozen=True)
class ExportedGenerator:
    """An inference export, loaded: the EMA generator (eval mode) and what it was trained with."""

    generator: Generator
    model: ModelConfig
    preprocess: PreprocessConfig  # crops at inference must be made with these settings
    step: int


def export_generator(path: Path, ema: torch.nn.Module, model: ModelConfig, preprocess: PreprocessConfig,
                     step: int) -> None:
    """Write the EMA generator's weights with configs in the header metadata, atomically."""
    metadata = {"format": EXPORT_FORMAT, "model": json.dumps(to_dict(model)),
                "preprocess": json.dumps(to_dict(preprocess)), "step": str(step)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except OSError as e:
        raise InputError(f"{path}: cannot write the generator export ({e})") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> ExportedGenerator:
    """Load an inference export (no pickle); a wrong or corrupt file is a one-line InputError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not a generator export (format {metadata.get('format')!r}, want {EXPORT_FORMAT!r})")
        model = from_dict(ModelConfig, json.loads(metadata["model"]))
        preprocess = from_dict(PreprocessConfig, json.loads(metadata["preprocess"]))
        generator = Generator(model)
        state = load_file(str(path))
        check_finite(state, path)
        generator.load_state_dict(state)
    except InputError:
        raise
    except Exception as e:  # missing file, bad header, wrong keys or shapes
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"{path}: cannot load generator export ({type(e).__name__}: {first[:200]})") from None
    return ExportedGenerator(generator=generator.to(device).eval(), model=model, preprocess=preprocess,
                             step=int(metadata["step"]))
