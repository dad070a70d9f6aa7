"""Renderers compared by `evaluate`: every one gets the same targets and the same driven mesh.

  copy    the target frame whose head pose is nearest the driven pose, unchanged (the baseline
          that a result must beat: it has the target's identity and texture, but not the motion)
  warp    the training-free piecewise-affine warp that `marionette reenact` uses (inference/warp.py)
  neural  the MarioNETte generator of a trained checkpoint (an inference export)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marionette.errors import InputError
from marionette.inference.neural import NeuralRenderer, Renderer
from marionette.inference.warp import WarpRenderer
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.pose import head_pose


class CopyRenderer:
    name = "copy"

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        self.crops = crops
        self.poses = head_pose(mesh_to_ibug68(meshes))  # (K, 3)

    def render(self, driven_mesh: np.ndarray) -> np.ndarray:
        pose = head_pose(mesh_to_ibug68(driven_mesh))  # (3,)
        return self.crops[int(np.abs(self.poses - pose).sum(-1).argmin())]


RENDERERS = ("copy", "warp", "neural")


def make_renderer(name: str, size: int, checkpoint: str | Path | None) -> Renderer:
    if name == "copy":
        return CopyRenderer()
    if name == "warp":
        return WarpRenderer(size)
    if name == "neural":
        if checkpoint is None:
            raise InputError("renderer neural: no trained checkpoint given (--checkpoint)")
        from marionette.training.checkpoint import load_generator

        return NeuralRenderer(load_generator(checkpoint).generator, size, source=str(checkpoint))
    raise InputError(f"renderer {name!r}: expected one of {', '.join(RENDERERS)}")
