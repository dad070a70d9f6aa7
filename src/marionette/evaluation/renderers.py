"""Renderers compared by `evaluate`: every one gets the same targets and the same driven mesh.

  copy    the target frame whose head pose is nearest the driven pose, unchanged (the baseline
          that a result must beat: it has the target's identity and texture, but not the motion)
  warp    the training-free piecewise-affine warp that `marionette reenact` uses (inference/warp.py)
  neural  the MarioNETte generator from a trained checkpoint (hook: not wired up yet)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from marionette.errors import InputError
from marionette.inference.warp import WarpRenderer
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.pose import head_pose


class Renderer(Protocol):
    name: str

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """(K, S, S, 3) uint8 target crops and their (K, 478, 3) meshes in crop pixels."""
        ...

    def render(self, driven_mesh: np.ndarray) -> np.ndarray:
        """(478, 3) driven mesh in crop pixels -> (S, S, 3) uint8."""
        ...


class CopyRenderer:
    name = "copy"

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        self.crops = crops
        self.poses = head_pose(mesh_to_ibug68(meshes))  # (K, 3)

    def render(self, driven_mesh: np.ndarray) -> np.ndarray:
        pose = head_pose(mesh_to_ibug68(driven_mesh))  # (3,)
        return self.crops[int(np.abs(self.poses - pose).sum(-1).argmin())]


class NeuralRenderer:
    """The generator (target encoder, driver encoder, blender, decoder) from a checkpoint. To wire
    it up: load the checkpoint in __init__, encode the K targets and their landmark images in
    `prepare`, and decode from `driver_landmark_image` in `render`."""

    name = "neural"

    def __init__(self, checkpoint: str | Path | None):
        if checkpoint is None:
            raise InputError("renderer neural: no trained checkpoint given (--checkpoint)")
        raise InputError(f"{checkpoint}: the neural renderer cannot load checkpoints yet (training code in progress)")

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        raise NotImplementedError

    def render(self, driven_mesh: np.ndarray, driver_landmark_image: np.ndarray) -> np.ndarray:
        raise NotImplementedError


RENDERERS = ("copy", "warp", "neural")


def make_renderer(name: str, size: int, checkpoint: str | Path | None) -> Renderer:
    if name == "copy":
        return CopyRenderer()
    if name == "warp":
        return WarpRenderer(size)
    if name == "neural":
        return NeuralRenderer(checkpoint)
    raise InputError(f"renderer {name!r}: expected one of {', '.join(RENDERERS)}")
