"""Files shipped inside the package (src/marionette/assets/, see its README.md for their sources and
licences), found through importlib.resources so that they work from any install, not only from a
checkout."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SAMPLE_TARGET = "samples/02_grace_hopper.jpg"  # the demo's portrait (public domain)
SAMPLE_DRIVER = "samples/grid_lbax4n.mp4"  # the demo's driver, a GRID corpus clip (CC BY 4.0)
SHIPPED_GENERATOR = "generator.safetensors"  # the trained warp-guided generator (model card: generator.md)


def asset(name: str) -> Path:
    """Path of a package asset, e.g. `asset("landmark_transformer.safetensors")`."""
    return Path(str(importlib.resources.files("marionette").joinpath("assets", name)))
