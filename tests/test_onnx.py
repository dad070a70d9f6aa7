"""The ONNX export (`export-onnx`) and the `onnx` renderer: the same generator run by onnxruntime
gives torch's output, at any K from one exported file; bad folders are one line."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import refused, require, snapshot

from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.inference.export import export_generator, load_generator
from marionette.inference.onnx_export import OnnxExportConfig, export_onnx
from marionette.inference.onnx_runtime import FILES, MANIFEST_FILE, OnnxGenerator, flatten_cache, unflatten_cache
from marionette.inference.pipeline import ReenactConfig, ReenactPipeline, TrackedDriver
from marionette.landmarks.crop import crop_image, head_box
from marionette.model.config import model_config
from marionette.model.generator import Generator

require("onnxruntime", "the onnx renderer needs onnxruntime: pip install 'marionette[onnx]'")
require("onnx", "export-onnx needs onnx: pip install 'marionette[onnx]'")

MODELS = {"faithful": [], "warp-guided": ["warp_guided=true"]}


def _generator(changes: list[str]) -> Generator:
    """A tiny generator; the warp-guided one with a non-zero correction, so that its output is not
    just its input warp."""
    torch.manual_seed(0)
    generator = Generator(model_config("tiny", changes))
    if generator.config.warp_guided:
        with torch.no_grad():
            generator.decoder.correction.head.weight.normal_(0, 0.05)
    return generator


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the generator export, its ONNX export folder) of each tiny model, made once."""
    folder = tmp_path_factory.mktemp(request.param)
    generator = _generator(MODELS[request.param])
    source = folder / "generator.safetensors"
    export_generator(source, generator, generator.config, PreprocessConfig(crop_scale=1.7), step=3)
    export_onnx(source, folder / "onnx", OnnxExportConfig(check=False))
    return source, folder / "onnx"


def test_flattened_cache_round_trips() -> None:
    generator = _generator([])
    with torch.no_grad():
        cache = generator.encode_targets(torch.rand(1, 2, 3, 64, 64), torch.rand(1, 2, 3, 64, 64))
    flat = flatten_cache(cache)
    assert all(isinstance(t, torch.Tensor) for t in flat.values()) and len(set(flat)) == len(flat)
    again = unflatten_cache(flat)
    for name, tensor in flatten_cache(again).items():
        assert tensor is flat[name]
    assert list(flatten_cache(again)) == list(flat)


def test_dynamic_axes_are_the_dimensions_that_grow_with_k() -> None:
    from marionette.inference.onnx_export import _k_axes

    at = {2: {"z": torch.zeros(1, 2, 32, 2, 2), "keys": torch.zeros(1, 24, 32), "mean": torch.zeros(1, 16)},
          3: {"z": torch.zeros(1, 3, 32, 2, 2), "keys": torch.zeros(1, 36, 32), "mean": torch.zeros(1, 16)}}
    assert _k_axes(at[2], at[3], (2, 3)) == {"z": {1: "K"}, "keys": {1: "12K"}}


@pytest.mark.parametrize("k,batch", [(1, 1), (3, 2)])
def test_onnx_export_matches_torch_at_any_k_and_batch(exported: tuple[Path, Path], k: int, batch: int) -> None:
    source, folder = exported
    generator = load_generator(source).generator
    onnx_generator, preprocess = OnnxGenerator.load(folder)
    assert preprocess.crop_scale == 1.7 and onnx_generator.config == generator.config
    torch.manual_seed(k)
    images, landmarks = torch.rand(2, 1, k, 3, 64, 64) * 2 - 1  # (1, K, 3, s, s) each
    driver = torch.rand(batch, 3, 64, 64) * 2 - 1  # a file driver's frames are drawn `batch` per call
    warp = torch.rand(batch, 3, 64, 64) * 2 - 1 if generator.config.warp_guided else None
    with torch.no_grad():
        want_cache = generator.encode_targets(images, landmarks)
        want = generator.generate(driver, want_cache.repeat(batch), warp).image
    got_cache = onnx_generator.encode_targets(images, landmarks)
    for name, tensor in flatten_cache(want_cache).items():
        assert (flatten_cache(got_cache)[name] - tensor).abs().max() < 1e-3, name
    got = onnx_generator.generate(driver, got_cache.repeat(batch), warp).image
    assert got.shape == want.shape == (batch, 3, 64, 64) and want.std() > 0.01  # the output is not a constant
    assert (got - want).abs().max() < 1e-3


def test_manifest_names_the_source_and_the_graphs(exported: tuple[Path, Path]) -> None:
    source, folder = exported
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["source"]["step"] == 3 and manifest["model"]["warp_guided"] == ("warp" in folder.parent.name)
    assert manifest["target_encoder"]["inputs"] == ["images", "landmark_images"]
    assert manifest["frame_generator"]["outputs"] == ["image"]
    driver, *cache = manifest["frame_generator"]["inputs"]
    warp_guided = manifest["model"]["warp_guided"]
    assert driver == "driver_landmark_image" and cache[:warp_guided] == ["warp_image"][:warp_guided]
    assert set(cache[warp_guided:]) < set(manifest["target_encoder"]["outputs"])  # the flows are not read per frame


def _first_frames(hopper, size: int, renderers: tuple[tuple[str, Path], ...]) -> dict[str, np.ndarray]:
    """Each (renderer, checkpoint)'s output, as int, for Grace Hopper's crop (size px) and its mirror
    image as the targets, driven by her mesh moved 4 px down."""
    image, face = hopper
    box = head_box(face.mesh, 1.7, -0.1)
    crop, mesh = crop_image(image, box, size), box.to_crop(face.mesh, size)
    mirrored = mesh.copy()
    mirrored[:, 0] = size - 1 - mirrored[:, 0]
    crops, meshes = np.stack([crop, np.ascontiguousarray(crop[:, ::-1])]), np.stack([mesh, mirrored])  # K = 2
    moved = meshes[0].copy()
    moved[:, 1] += 4
    frames = {}
    for renderer, checkpoint in renderers:
        pipeline = ReenactPipeline(ReenactConfig(renderer=renderer, size=size, transform=False, mode="absolute",
                                                 paste_back=False, precision="fp32"),  # onnx runs in fp32
                                   checkpoint=checkpoint)
        assert pipeline.renderer_name == ("neural" if renderer == "neural" else "onnx")
        pipeline.set_target_crops(crops, meshes)
        frames[renderer] = next(pipeline.render_frames(TrackedDriver(moved[None], [0]))).output.astype(int)
    return frames


def test_onnx_renderer_draws_what_the_neural_renderer_draws(exported: tuple[Path, Path], hopper) -> None:
    source, folder = exported
    frames = _first_frames(hopper, 96, (("neural", source), ("onnx", folder), ("auto", folder)))
    difference = np.abs(frames["onnx"] - frames["neural"])
    # a 64 px pixel rounded the other way moves a few 96 px pixels by up to 4 (cubic resize, then the colour
    # matching's gain on an untrained generator's flat output); the generator's own parity is 1e-3 (above)
    assert difference.max() <= 4 and difference.mean() < 0.01
    assert np.array_equal(frames["onnx"], frames["auto"])
    assert ReenactPipeline(ReenactConfig(renderer="onnx"), checkpoint=folder).crop.scale == 1.7  # the export's crops


def test_the_shipped_generator_exports_and_draws_as_torch_does(tmp_path: Path, hopper) -> None:
    """The shipped (trained, warp-guided) generator passes the export's check at its default tolerance
    (its flow once failed a check on white noise by 0.12; the weights shipped 2026-12-05 differ by
    0.007-0.011 there, at 0.001% of the pixels), and on a real portrait the onnx renderer draws what
    the neural one does to a grey level."""
    from marionette.resources import SHIPPED_GENERATOR, asset

    error = export_onnx(asset(SHIPPED_GENERATOR), tmp_path / "onnx")
    assert error is not None and 0 < error <= OnnxExportConfig().tolerance
    frames = _first_frames(hopper, 256, (("neural", asset(SHIPPED_GENERATOR)), ("onnx", tmp_path / "onnx")))
    assert np.abs(frames["onnx"] - frames["neural"]).max() <= 1


def test_export_onnx_command_never_overwrites_what_it_did_not_write(exported: tuple[Path, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from marionette.cli import main

    source, folder = exported
    out = tmp_path / "onnx"
    shutil.copytree(folder, out)
    before = snapshot(out)
    refused(["export-onnx", source, "--out", out], capsys, str(out), "--overwrite")
    (out / "notes.txt").write_text("mine")
    refused(["export-onnx", source, "--out", out, "--overwrite"], capsys, str(out), "did not write")
    (out / "notes.txt").unlink()
    assert snapshot(out) == before
    refused(["export-onnx", tmp_path / "notes.txt", "--out", tmp_path / "new"], capsys, "notes.txt")
    (tmp_path / "notes.txt").write_text("not weights")
    refused(["export-onnx", tmp_path / "notes.txt", "--out", tmp_path / "new"], capsys, "notes.txt", "cannot load generator export")
    refused(["export-onnx", source, "--out", source], capsys, "is an input")
    refused(["export-onnx", source, "--out", tmp_path / "new", "--set", "opset=9"], capsys, "opset=9")
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "onnx"]
    (out / MANIFEST_FILE).write_text("{}")  # the earlier export is replaced whole, with --overwrite only
    assert main(["export-onnx", str(source), "--out", str(out), "--overwrite"]) == 0
    assert f"{out}: target_encoder.onnx" in capsys.readouterr().out and json.loads((out / MANIFEST_FILE).read_text())["format"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "onnx"]  # no temporary left beside it


def _damage(folder: Path, case: str) -> Path:
    """A copy of the ONNX export in `folder` damaged as `case` says; the path to give."""
    if case == "missing folder":
        return folder / "nowhere"
    if case == "a generator export":
        return folder / "generator.safetensors"
    bad = folder / case.replace(" ", "_")
    shutil.copytree(folder / "onnx", bad)
    if case == "no manifest":
        (bad / MANIFEST_FILE).unlink()
    elif case == "wrong format":
        manifest = json.loads((bad / MANIFEST_FILE).read_text())
        (bad / MANIFEST_FILE).write_text(json.dumps({**manifest, "format": "other/9"}))
    elif case == "truncated graph":
        data = (bad / "frame_generator.onnx").read_bytes()
        (bad / "frame_generator.onnx").write_bytes(data[: len(data) // 2])
    elif case == "graphs swapped":
        (bad / "frame_generator.onnx").write_bytes((bad / "target_encoder.onnx").read_bytes())
    return bad


@pytest.mark.parametrize("case, says", [("missing folder", "no model.json"), ("a generator export", "is a file"),
                                        ("no manifest", "no model.json"), ("wrong format", "other/9"),
                                        ("truncated graph", "cannot load ONNX graph"),
                                        ("graphs swapped", "not those model.json lists")])
def test_bad_onnx_folders_are_one_line(exported: tuple[Path, Path], case: str, says: str) -> None:
    from marionette.inference.renderers import make_renderer

    checkpoint = _damage(exported[1].parent, case)
    with pytest.raises(InputError, match=says) as error:
        make_renderer("onnx", 96, checkpoint)
    assert str(checkpoint) in str(error.value) and "\n" not in str(error.value)


def test_missing_runtime_or_exporter_says_what_to_install(exported: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from marionette.inference.renderers import make_renderer

    source, folder = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it fails
    with pytest.raises(InputError, match=r"needs onnxruntime: pip install 'marionette\[onnx\]'$"):
        make_renderer("onnx", 96, folder)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(InputError, match=r"needs the onnx package: pip install 'marionette\[onnx\]'$"):
        export_onnx(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
