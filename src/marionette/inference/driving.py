"""Driving: the driver's face mesh -> the mesh a renderer draws on the targets. Shared by the
reenactment pipeline (streams) and the evaluator (dataset episodes), so both drive the same way.

With the landmark transformer (paper): the driver's expression and pose on the targets' face
shape, in absolute or relative mode. Without it (ours, raw landmarks, the driver's face shape
included): relative mode adds the driver's displacement since its first frame, measured in its
first-frame crop, to the first target's mesh; absolute mode takes the driver's mesh in that crop.
Mode auto (ours): relative for a moving driver, absolute for a single still image (relative to its
only frame, a still would drive no motion at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marionette.landmark_transformer.config import MODES
from marionette.landmark_transformer.model import DriverStart, LandmarkTransformer, TargetFace
from marionette.landmarks.crop import CropBox

DRIVING_MODES = ("auto",) + MODES


@dataclass(frozen=True)
class DriverReference:
    """The driver's first face, which relative mode measures motion from."""

    mesh: np.ndarray  # (478, 3) in driver pixels
    box: CropBox  # its crop
    start: DriverStart | None  # its expression and pose for the landmark transformer (None without one)
    mode: str  # relative or absolute: how this stream is driven


class Driving:
    def __init__(self, transformer: LandmarkTransformer | None, mode: str, alpha: float, size: int) -> None:
        """`transformer` None drives with raw landmarks; `size` is the side of the target crops."""
        assert mode in DRIVING_MODES, mode  # checked where it is set (ReenactConfig, EvalConfig)
        self.transformer, self.mode, self.alpha, self.size = transformer, mode, alpha, size
        self._first_target: np.ndarray | None = None  # (478, 3) the first target's mesh
        self._target_face: TargetFace | None = None  # identity shape and pose of all K targets

    def set_targets(self, meshes: np.ndarray) -> None:
        """(K, 478, 3) the targets' meshes in crop pixels, prepared once per target set."""
        self._first_target = meshes[0]
        if self.transformer is not None:
            self._target_face = self.transformer.prepare_targets(meshes)

    def reference(self, first_mesh: np.ndarray, box: CropBox, still: bool = False) -> DriverReference:
        """The driver's first face (478, 3) in driver pixels and its crop, prepared once per stream;
        `still`: the driver is a single image (mode auto then drives in absolute mode)."""
        start = self.transformer.prepare_start(first_mesh) if self.transformer is not None else None
        mode = self.mode if self.mode != "auto" else ("absolute" if still else "relative")
        return DriverReference(first_mesh, box, start, mode)

    def __call__(self, driver_mesh: np.ndarray, reference: DriverReference) -> np.ndarray:
        """(478, 3) driver mesh (driver pixels) -> (478, 3) driven mesh in the targets' crop pixels."""
        assert self._first_target is not None, "set_targets() first"
        if self.transformer is not None:
            return self.transformer.drive(driver_mesh[None], self._target_face, alpha=self.alpha,
                                          mode=reference.mode, start=reference.start).mesh[0]
        now = reference.box.to_crop(driver_mesh, self.size)
        if reference.mode == "absolute":
            return now
        return self._first_target + (now - reference.box.to_crop(reference.mesh, self.size))
