"""Paths of dlib's reference model files (68-point predictor, face-identity ResNet, detectors).

They ship in the `face_recognition_models` package (a dev/evaluation extra). We locate its folder
without importing it: its __init__ needs pkg_resources, which recent setuptools no longer provide.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from marionette.errors import InputError

PACKAGE = "face_recognition_models"


def dlib_model_path(name: str) -> Path:
    """Path of dlib model file `name` (e.g. "shape_predictor_68_face_landmarks.dat") inside the
    face_recognition_models package; InputError if the package or the file is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{name}: the {PACKAGE} package is not installed "
                         f"(pip install 'marionette[dev]' or pip install face-recognition-models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise InputError(f"{path}: no such dlib model file in the {PACKAGE} package")
    return path
