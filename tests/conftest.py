"""Shared fixtures: repository paths, the shared real-data folder, a real face, a small dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from marionette.data.config import PreprocessConfig
from marionette.data.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
SHARED_DATA = REPO.parent / "shared" / "data"  # CI clones the repo with ../shared beside it

pytest_plugins = ["pytester"]  # test_extras_required.py runs pytest on generated test files

DATASET_CONFIG = PreprocessConfig(max_frames=6)  # small: four GRID clips of 75 frames -> 6 crops each


@pytest.fixture(scope="session", autouse=True)
def config_home(tmp_path_factory) -> Path:
    """A temporary XDG_CONFIG_HOME: the local C2PA certificate is generated there, never in ~."""
    folder = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(folder))
        patch.delenv("MARIONETTE_C2PA_CERT", raising=False)
        patch.delenv("MARIONETTE_C2PA_KEY", raising=False)
        patch.delenv("MARIONETTE_TRUSTED_CERTS", raising=False)  # trusted: this machine's (the test's) local root only
        patch.delenv("MARIONETTE_WATERMARK_KEY", raising=False)  # the public watermark key
        yield folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (faces/, videos/, paintings/), or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "faces").is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (clone the repo with ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hopper():
    """Grace Hopper's frontal portrait (bundled) and its face mesh."""
    from marionette.landmarks.mesh import detect_face
    from marionette.media import load_image

    path = ASSETS / "faces" / "02_grace_hopper.jpg"
    image = load_image(path)
    return image, detect_face(image, path)


@dataclass(frozen=True)
class Dataset:
    src: Path
    root: Path
    config: PreprocessConfig
    manifest: Manifest
    failures: dict[str, str]
    seconds: float  # wall time of the build


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Dataset:
    """The bundled GRID clips preprocessed once (two workers: the pool path is exercised too)."""
    from marionette.data.preprocess import preprocess

    src = ASSETS / "videos"
    root = tmp_path_factory.mktemp("dataset")
    start = time.perf_counter()
    manifest, failures = preprocess(src, root, DATASET_CONFIG, workers=2, progress=False)
    return Dataset(src, root, DATASET_CONFIG, manifest, failures, time.perf_counter() - start)


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """The GRID clips as 64 px crops for the tiny training preset: 12 frames each, one of the four
    identities held out as the val split."""
    from marionette.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("train64")
    preprocess(ASSETS / "videos", root, PreprocessConfig(size=64, max_frames=12, split="hash", val_fraction=0.25,
                                                         test_fraction=0.0), workers=1, progress=False)
    return root
