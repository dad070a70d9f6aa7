"""The shipped generator (src/marionette/assets/generator.safetensors, written by
tools/train_more.sh): it loads without pickle, its weights are finite, and on a fixed real input
(Grace Hopper's portrait, her mouth opened by moving the lower lip) it reproduces the stored output
within a grey level. When a sitting replaces the weights, or the warp it corrects changes, `python tests/test_shipped_generator.py`
stores the new output (and the model card says what changed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marionette.inference.export import load_generator
from marionette.inference.neural import NeuralRenderer
from marionette.resources import asset
from marionette.warp import WarpRenderer

SHIPPED = asset("generator.safetensors")
STORED = Path(__file__).with_name("shipped_generator_output.json")
LOWER_LIP = (14, 87, 178, 88, 95, 317, 402, 318, 324, 15, 86, 179, 89, 96, 316, 403, 319, 325)  # inner and outer


def render(image: np.ndarray, mesh: np.ndarray, lip_move: float = 1 / 40) -> tuple[np.ndarray, np.ndarray]:
    """(warp, generator) crops (S, S, 3) uint8 of the shipped generator's size, the lower lip moved
    down by `lip_move` of the crop's side."""
    from marionette.landmarks.crop import crop_image, head_box

    exported = load_generator(SHIPPED)
    size = exported.model.image_size
    box = head_box(mesh, 1.8, -0.1)
    crops, meshes = crop_image(image, box, size)[None], box.to_crop(mesh, size)[None]  # (1, S, S, 3), (1, 478, 3)
    opened = meshes[0].copy()
    opened[list(LOWER_LIP), 1] += size * lip_move
    warp, neural = WarpRenderer(size), NeuralRenderer(exported.generator, crop_size=size)
    warp.prepare(crops, meshes)
    neural.prepare(crops, meshes)
    return warp.render(opened), neural.render(opened)


def digest(warp: np.ndarray, output: np.ndarray) -> dict[str, object]:
    """The output's 16 x 16 block means (grey levels) and its mean distance from the warp."""
    s = output.shape[0] // 16
    blocks = output.astype(np.float64).reshape(16, s, 16, s, 3).mean(axis=(1, 3))  # (16, 16, 3)
    return {"blocks": np.round(blocks, 2).tolist(), "change": float(np.abs(output.astype(int) - warp).mean())}


def test_shipped_generator_loads_is_finite_and_reproduces_its_stored_output(hopper) -> None:
    exported = load_generator(SHIPPED)  # safetensors + JSON header: nothing is unpickled
    assert exported.model.warp_guided and SHIPPED.stat().st_size <= 25 * 2**20
    assert all(torch.isfinite(p).all() for p in exported.generator.parameters())
    image, face = hopper
    warp, output = render(image, face.mesh)
    found, stored = digest(warp, output), json.loads(STORED.read_text())
    assert np.abs(np.array(found["blocks"]) - np.array(stored["blocks"])).max() <= 1.0
    assert found["change"] == pytest.approx(stored["change"], abs=0.2)
    assert found["change"] > 0  # the trained weights change the warp (an untrained export leaves it exactly)


def test_a_still_driver_gets_the_target_photo_a_moving_one_the_correction(hopper) -> None:
    """Driven by the target's own mesh (a frozen driver, or relative motion at the driver's
    neutral) the output is the warp, which is the target's photo; from a lip move of 1% of the eye
    span on, the generator corrects it."""
    image, face = hopper
    warp, output = render(image, face.mesh, lip_move=0)
    assert np.array_equal(output, warp)
    warp, output = render(image, face.mesh, lip_move=1 / 160)  # ~1.6 px at 256: 0.02 eye spans
    assert np.abs(output.astype(int) - warp).mean() > 0.05


if __name__ == "__main__":
    from marionette.landmarks.mesh import detect_face
    from marionette.media import load_image

    path = Path(__file__).resolve().parents[1] / "assets" / "faces" / "02_grace_hopper.jpg"  # the hopper fixture's
    picture = load_image(path)
    STORED.write_text(json.dumps(digest(*render(picture, detect_face(picture, path).mesh))) + "\n")
    print(f"stored {STORED}")
