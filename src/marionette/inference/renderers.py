"""Renderers: what draws the face crop for a driven mesh. `reenact` and `evaluate` call every
renderer the same way, through ReenactPipeline, which asks the Renderer interface what it needs
(how to cut crops, whether to group frames per call) and tests no renderer's type. Their names,
and what callers know of each before it is built, are inference/config.py's RENDERERS (free of
torch, for the settings); BUILDERS builds each by that name:

  warp    the training-free piecewise-affine warp of the target photo (marionette/warp.py)
  neural  the MarioNETte generator of an inference export (inference/neural.py); without one, the
          generator shipped in the package (assets/generator.safetensors, its card generator.md)
  onnx    the neural renderer with the generator's ONNX export (`export-onnx`) run by onnxruntime
          (inference/onnx_runtime.py)
  copy    evaluation's baseline: the target frame whose head pose is nearest the driven pose,
          unchanged (a result must beat it: it has the target's identity and texture, not the motion)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from marionette.errors import InputError
from marionette.inference.config import RENDERERS
from marionette.landmarks.crop import CropConfig
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.pose import head_pose

if TYPE_CHECKING:
    from marionette.devices import Placement
    from marionette.warp import DriverMouth


class Renderer(Protocol):
    """What draws a frame."""

    name: str  # the `renderer` setting it answers to
    crop_size: int  # S: the side of the crops it takes and draws, pixels
    crop: CropConfig  # how crops are cut for it (a generator's: as its training crops were)
    batched: bool  # render_batch draws B frames for less than B render calls: worth grouping a file driver's frames
    placement: Placement | None  # the device and precision its torch model runs at; None: numpy on the CPU

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """(K, S, S, 3) uint8 target crops and their (K, 478, 3) meshes in crop pixels (once per set)."""
        ...

    def render(self, driven_mesh: np.ndarray, mouth: DriverMouth | None = None) -> np.ndarray:
        """(478, 3) driven mesh in crop pixels -> (S, S, 3) uint8; `mouth`: the driver frame's own
        (warp.DriverMouth), for a renderer that shows it in an open mouth (the warp's; None: none)."""
        ...

    def render_batch(self, driven_meshes: np.ndarray, mouths: Sequence[DriverMouth | None] | None = None
                     ) -> np.ndarray:
        """(B, 478, 3) consecutive driven meshes (and B mouths, or None) -> (B, S, S, 3) uint8: what B
        render calls in a row draw."""
        ...


class CopyRenderer:
    """A Renderer that draws no new pixel: the nearest-pose target crop, as it is."""

    name = "copy"
    crop = CropConfig()
    batched = False
    placement = None

    def __init__(self, crop_size: int):
        self.crop_size = crop_size

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        self.crops = crops
        self.poses = head_pose(mesh_to_ibug68(meshes))  # (K, 3)

    def render(self, driven_mesh: np.ndarray, mouth: DriverMouth | None = None) -> np.ndarray:
        pose = head_pose(mesh_to_ibug68(driven_mesh))  # (3,)
        return self.crops[int(np.abs(self.poses - pose).sum(-1).argmin())]

    def render_batch(self, driven_meshes: np.ndarray, mouths: Sequence[DriverMouth | None] | None = None
                     ) -> np.ndarray:
        return np.stack([self.render(mesh) for mesh in driven_meshes])


def generator_renderer(checkpoint: str | Path) -> str:
    """The renderer that runs `checkpoint`: onnx for an ONNX export folder, else neural."""
    return "onnx" if Path(checkpoint).is_dir() else "neural"


def _copy(size: int, checkpoint: str | Path | None, device: str, precision: str, threads: int,
          every: int) -> Renderer:
    return CopyRenderer(size)


def _warp(size: int, checkpoint: str | Path | None, device: str, precision: str, threads: int,
          every: int) -> Renderer:
    from marionette.warp import WarpRenderer

    return WarpRenderer(size)


def _neural(size: int, checkpoint: str | Path | None, device: str, precision: str, threads: int,
            every: int) -> Renderer:
    from marionette.devices import placement
    from marionette.inference.export import load_generator
    from marionette.inference.neural import NeuralRenderer
    from marionette.resources import SHIPPED_GENERATOR, asset

    checkpoint = checkpoint or asset(SHIPPED_GENERATOR)
    export = load_generator(checkpoint)
    where = placement(device, precision)
    return NeuralRenderer(export.generator, size, device=where.device, source=str(checkpoint),
                          crop=export.preprocess.crop, precision=where.precision,
                          threads=threads if where.device.type == "cpu" else 1,  # a GPU: the batch in one call
                          every=every if where.device.type == "cpu" else 1)  # and every frame


def _onnx(size: int, checkpoint: str | Path | None, device: str, precision: str, threads: int,
          every: int) -> Renderer:
    if checkpoint is None:
        raise InputError("renderer onnx needs an ONNX export folder (--checkpoint DIR, from `marionette export-onnx`)")
    from marionette.inference.neural import NeuralRenderer
    from marionette.inference.onnx_runtime import OnnxGenerator

    backend, preprocess = OnnxGenerator.load(checkpoint)
    return NeuralRenderer(backend, size, source=str(checkpoint), crop=preprocess.crop, name="onnx", threads=threads,
                          every=every)


BUILDERS: dict[str, Callable[[int, str | Path | None, str, str, int, int], Renderer]] = {
    "copy": _copy, "warp": _warp, "neural": _neural, "onnx": _onnx}  # (size, checkpoint, device, precision, threads, every)
assert BUILDERS.keys() == RENDERERS.keys()


def make_renderer(name: str, size: int, checkpoint: str | Path | None = None, device: str = "auto",
                  precision: str = "auto", threads: int = 1, every: int = 1) -> Renderer:
    """The renderer `name` (RENDERERS) drawing `size`-pixel crops; `neural` runs the export at
    `checkpoint` (default: the shipped one) on `device` in `precision` (settings of
    marionette.devices). `onnx` runs the ONNX export folder at `checkpoint` with onnxruntime on the
    CPU, as do warp and copy; a generator's batch is split into `threads` calls run at once on the
    CPU, and a warp-guided one draws at least every `every`-th frame there, and the frames that moved (the others
    carry its correction)."""
    if name not in BUILDERS:
        raise InputError(f"renderer {name!r}: expected one of {', '.join(RENDERERS)}")
    return BUILDERS[name](size, checkpoint, device, precision, threads, every)
