"""The neural renderer: the generator behind the renderer protocol, targets encoded once."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from helpers import hopper_targets, inside_ring

from marionette.errors import InputError
from marionette.inference.neural import STILL_FROM, STILL_TO, NeuralRenderer, carried_correction, face_mask, match_colours, still_gate
from marionette.inference.renderers import make_renderer
from marionette.landmarks.crop import CropConfig
from marionette.landmarks.layout import MESH_INNER_LIPS
from marionette.landmarks.openings import opened_lids
from marionette.model.config import model_config
from marionette.model.generator import Generator
from marionette.warp import eye_span, motion_map


def test_renders_crops_and_ignores_target_order(hopper) -> None:
    torch.manual_seed(0)
    renderer = NeuralRenderer(Generator(model_config("tiny")), crop_size=96)
    crops, meshes = hopper_targets(hopper, 96)
    renderer.prepare(crops, meshes)
    out = renderer.render(meshes[0])
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    renderer.prepare(crops[::-1].copy(), meshes[::-1].copy())
    assert np.abs(renderer.render(meshes[0]).astype(int) - out).max() <= 1  # order of targets: irrelevant


def test_generator_sees_the_driven_landmarks(hopper) -> None:
    torch.manual_seed(0)
    renderer = NeuralRenderer(Generator(model_config("tiny")), crop_size=96)
    crops, meshes = hopper_targets(hopper, 96)
    renderer.prepare(crops[:1], meshes[:1])
    moved = meshes[0].copy()
    moved[:, 1] += 10
    assert not np.array_equal(renderer.render(meshes[0]), renderer.render(moved))


def test_every_renderer_answers_the_renderer_interface(hopper) -> None:
    """What the pipeline asks of a renderer instead of testing its type."""
    crops, meshes = hopper_targets(hopper, 96)
    driven = meshes[[0, 0, 1]].copy()  # three consecutive driven meshes
    driven[:, :, 1] += np.array([0.0, 4.0, 8.0])[:, None]
    torch.manual_seed(0)
    renderers = {name: make_renderer(name, 96) for name in ("warp", "copy")}
    renderers["neural"] = NeuralRenderer(Generator(model_config("tiny")), crop_size=96, crop=CropConfig(scale=1.7))
    for name, renderer in renderers.items():
        assert renderer.name == name and renderer.crop_size == 96, name
        assert renderer.batched == (name == "neural") and (renderer.placement is None) == (name != "neural"), name
        renderer.prepare(crops, meshes)
        frames = renderer.render_batch(driven)
        assert frames.shape == (3, 96, 96, 3) and frames.dtype == np.uint8, name
    assert renderers["neural"].crop == CropConfig(1.7, -0.1) and renderers["warp"].crop == renderers["copy"].crop == CropConfig()
    for name in ("warp", "copy"):  # a batch draws what renders in a row draw (the warp's blend weights carry over)
        batched, one_by_one = make_renderer(name, 96), make_renderer(name, 96)
        batched.prepare(crops, meshes)
        one_by_one.prepare(crops, meshes)
        assert np.array_equal(batched.render_batch(driven), np.stack([one_by_one.render(m) for m in driven])), name


def test_match_colours_moves_face_statistics_to_the_targets() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (64, 64, 3)).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    lab_mean, lab_std = np.array([160.0, 140.0, 135.0], np.float32), np.array([12.0, 4.0, 5.0], np.float32)
    out = cv2.cvtColor(match_colours(image, mask, lab_mean, lab_std), cv2.COLOR_RGB2LAB)[mask].astype(np.float32)
    np.testing.assert_allclose(out.mean(0), lab_mean, atol=2.0)
    np.testing.assert_allclose(out.std(0), lab_std, atol=2.0)


def test_face_mask_covers_the_mesh(hopper) -> None:
    crops, meshes = hopper_targets(hopper, 96)
    mask = face_mask(meshes[0], 96)
    inside = np.round(meshes[0][:, :2]).astype(int)
    assert mask[inside[:, 1], inside[:, 0]].mean() > 0.95 and 0.1 < mask.mean() < 0.6


def test_reenact_with_an_exported_generator(tmp_path) -> None:
    from pathlib import Path

    from marionette.data.config import PreprocessConfig
    from marionette.inference.export import export_generator
    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
    from marionette.provenance import verify

    torch.manual_seed(0)
    config = model_config("tiny")
    export = tmp_path / "g.safetensors"
    export_generator(export, Generator(config), config, PreprocessConfig(crop_scale=1.7), step=0)
    assets = Path(__file__).resolve().parents[1] / "assets"
    target, driver = str(assets / "faces" / "02_grace_hopper.jpg"), str(assets / "videos" / "grid_lbax4n.mp4")
    pipeline = ReenactPipeline(ReenactConfig(size=96), checkpoint=export)  # pasted into the 512x600 photo
    assert pipeline.renderer_name == "neural" and pipeline.crop.scale == 1.7  # crops as in training
    stats = pipeline.run([target], driver, tmp_path / "out.mp4", progress=False)
    assert stats.frames == 75 and verify(tmp_path / "out.mp4").watermark.present
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not weights")
    with pytest.raises(InputError, match="broken.safetensors: cannot load generator export"):
        ReenactPipeline(ReenactConfig(), checkpoint=broken)


def three_frames(meshes: np.ndarray) -> np.ndarray:
    """(3, 478, 3) driven meshes from hopper_targets' two: the first, it moved 6 px down, the second."""
    moved = meshes[0].copy()
    moved[:, 1] += 6
    return np.stack([meshes[0], moved, meshes[1]])


def test_a_batch_of_frames_renders_as_the_frames_one_by_one(hopper) -> None:
    torch.manual_seed(0)
    crops, meshes = hopper_targets(hopper, 96)
    driven = three_frames(meshes)
    for config in (model_config("tiny"), model_config("tiny", ["warp_guided=true"])):
        renderer = NeuralRenderer(Generator(config), crop_size=96)
        renderer.prepare(crops, meshes)
        batch = renderer.render_batch(driven)
        renderer.prepare(crops, meshes)  # the warp's blend of targets follows the frames: start it afresh
        one_by_one = np.stack([renderer.render(m) for m in driven])
        differ = np.abs(batch.astype(int) - one_by_one)  # float round-off of batched convolutions only, but a
        # random generator's flat output gets a large colour-matching gain, which can make 1 level 3 or 4
        assert batch.shape == (3, 96, 96, 3) and differ.max() <= 4 and (differ > 1).mean() < 1e-3
        assert not np.array_equal(batch[0], batch[1])  # each frame its own driven mesh


def test_still_gate_closes_for_a_targets_own_mesh_and_opens_with_motion() -> None:
    rng = np.random.default_rng(0)
    targets = rng.uniform(20, 80, (2, 478, 3)).astype(np.float32)  # (K, 478, 3)
    span = eye_span(targets[1])
    driven = np.repeat(targets[1:], 4, axis=0)  # (4, 478, 3): target 1 with one landmark moved by
    for b, move in enumerate((0.0, STILL_FROM, (STILL_FROM + STILL_TO) / 2, 2 * STILL_TO)):
        driven[b, 13, 1] += move * span  # 0, STILL_FROM, half-way, twice STILL_TO eye spans
    np.testing.assert_allclose(still_gate(driven, targets), [0, 0, 0.5, 1], atol=1e-4)


def test_a_batch_split_over_threads_draws_what_one_call_draws(hopper, monkeypatch: pytest.MonkeyPatch) -> None:
    """`threads=2`: a batch of three frames is drawn by two generator calls (two frames, then one) run in
    two threads, each in the renderer's autocast, and gives the frames one call gives."""
    torch.manual_seed(0)
    crops, meshes = hopper_targets(hopper, 96)
    driven = three_frames(meshes)
    generator = Generator(model_config("tiny", ["warp_guided=true"]))
    one_call, split = NeuralRenderer(generator, crop_size=96), NeuralRenderer(generator, crop_size=96, threads=2)
    calls: list[tuple[str, int]] = []
    generate = generator.generate

    def recording(landmarks, cache, warps=None):
        calls.append((threading.current_thread().name, len(landmarks)))
        return generate(landmarks, cache, warps)

    monkeypatch.setattr(generator, "generate", recording)
    for renderer in (one_call, split):
        renderer.prepare(crops, meshes)
    expected = one_call.render_batch(driven)
    assert calls == [(threading.current_thread().name, 3)]
    calls.clear()
    frames = split.render_batch(driven)
    assert sorted(size for _, size in calls) == [1, 2] and len({name for name, _ in calls}) == 2
    assert all(name.startswith("marionette-generator") for name, _ in calls)
    differ = np.abs(frames.astype(int) - expected)  # float round-off of batched convolutions only
    assert differ.max() <= 4 and (differ > 1).mean() < 1e-3


def test_the_drivers_teeth_the_warp_draws_are_kept_from_the_generators_correction(hopper, monkeypatch) -> None:
    """A warp-guided generator whose correction lightens every pixel by 40 levels: with the driver's
    mouth given, the opened mouth keeps the warp's pixels (the driver's teeth) and the rest of the face
    is corrected; without it (self-reenactment's evaluation, a target's own mouth) the mouth is corrected
    too."""
    from marionette.warp import WarpRenderer, driver_mouth

    crops, meshes = hopper_targets(hopper, 160)
    crops, meshes = crops[:1], meshes[:1]
    opened = meshes[0].copy()
    middle = opened[MESH_INNER_LIPS, 1].max()
    opened[opened[:, 1] > middle + 0.5, 1] += 10  # the lower lip and jaw down, with the lower inner lip: the mouth opens
    opened[MESH_INNER_LIPS[11:], 1] += 10
    mouth = driver_mouth(crops[0], opened, None)  # the target's own crop as the driver frame
    generator = Generator(model_config("tiny", ["warp_guided=true"]))
    monkeypatch.setattr(generator, "generate", lambda landmarks, cache, warps=None: SimpleNamespace(image=warps + 40 / 127.5))
    renderer = NeuralRenderer(generator, crop_size=160)
    renderer.prepare(crops, meshes)
    warp = WarpRenderer(160)
    warp.prepare(crops, meshes)
    drawn = warp.render(opened, mouth).astype(int)
    given, not_given = (renderer.render(opened, m).astype(int) for m in (mouth, None))
    inside = cv2.erode(inside_ring((160, 160), opened[MESH_INNER_LIPS, :2]).astype(np.uint8), np.ones((7, 7))) > 0
    cheek = np.zeros((160, 160), bool)
    cheek[int(middle) - 40 : int(middle) - 25, 30:50] = True
    assert inside.sum() > 20  # the opening, 3 px in from its lips: the gate's blur at the model's size left out
    assert np.abs(given - drawn)[inside].mean() < 2  # the warp's mouth, kept
    assert np.abs(given - drawn)[cheek].mean() > 15 and np.abs(not_given - drawn)[inside].mean() > 15  # corrected


def test_the_motion_map_follows_the_face_and_leaves_the_rest(hopper) -> None:
    """`motion_map`: a face moved 5 px right and 3 down is fetched from 5 px left and 3 up, and so are
    the pixels just off it (hair goes with the head), those at the crop's border from where they are;
    for an unmoved face every pixel stays where it is. The mouth opened: its lips fetched from where
    they were, the pixels off the face, whose silhouette did not move, from where they are."""
    _, meshes = hopper_targets(hopper, 96)
    still_x, still_y = motion_map(meshes[0], meshes[0], 96)
    ys, xs = np.mgrid[0:96, 0:96]
    np.testing.assert_allclose(still_x, xs, atol=1e-3)
    np.testing.assert_allclose(still_y, ys, atol=1e-3)
    moved = meshes[0] + np.array([5.0, 3.0, 0.0], np.float32)
    map_x, map_y = motion_map(meshes[0], moved, 96)
    face = cv2.erode(face_mask(moved, 96), np.ones((5, 5), np.uint8)) > 0  # the triangles' hull, less its rim
    both = face_mask(np.concatenate([meshes[0], moved]), 96)
    near = (cv2.dilate(both, np.ones((7, 7), np.uint8)) > 0) & (cv2.dilate(both, np.ones((3, 3), np.uint8)) == 0)
    assert face.sum() > 500 and near.sum() > 100
    np.testing.assert_allclose(map_x[face] - xs[face], -5, atol=1e-3)
    np.testing.assert_allclose(map_y[face] - ys[face], -3, atol=1e-3)
    assert np.median(map_x[near] - xs[near]) < -3.5 and np.median(map_y[near] - ys[near]) < -2.1  # 70% of it, 2-3 px off
    np.testing.assert_allclose([map_x[0, 50], map_y[95, 20], map_x[30, 0]], [50, 95, 0], atol=1e-3)  # the border
    opened = meshes[0].copy()
    opened[MESH_INNER_LIPS[11:], 1] += 4  # the lower inner lip down
    map_x, map_y = motion_map(meshes[0], opened, 96)
    lip = opened[MESH_INNER_LIPS[15], :2].round().astype(int)  # a vertex of the lower lip: fetched from 4 px up
    assert abs(map_y[lip[1], lip[0]] - (lip[1] - 4)) < 0.6 and abs(map_x[lip[1], lip[0]] - lip[0]) < 0.6
    off = face_mask(meshes[0], 96) == 0
    np.testing.assert_allclose(map_y[off] - ys[off], 0, atol=1e-3)


def test_a_carried_correction_moves_with_the_face_and_leaves_out_a_mouth_that_opened(hopper) -> None:
    """The correction of the frame before, carried: a face moved 4 px down carries it 4 px down; where
    the mouth opened since, the warp's own drawing is kept (no correction over it) and the rest carried."""
    _, meshes = hopper_targets(hopper, 160)
    source = meshes[0]
    ys = np.mgrid[0:160, 0:160][0].astype(np.float32)
    correction = (ys[..., None] + 10) * np.array([0.2, 0.3, 0.4], np.float32)  # (160, 160, 3), growing down the image
    moved = source + np.array([0.0, 4.0, 0.0], np.float32)
    face = cv2.erode(face_mask(moved, 160), np.ones((9, 9), np.uint8)) > 0
    carried = carried_correction(correction, source, moved)
    np.testing.assert_allclose(carried[4:][face[4:]], correction[:-4][face[4:]], atol=1e-3)
    opened = source.copy()
    opened[MESH_INNER_LIPS[11:], 1] += 8  # the lower inner lip down: the mouth opens
    kept = carried_correction(correction, source, opened)
    mouth = opened[MESH_INNER_LIPS, :2].mean(0).round().astype(int)
    assert (kept[mouth[1], mouth[0]] < 0.1 * correction[mouth[1], mouth[0]]).all()  # the opened mouth: the warp's
    eye = source[33, :2].round().astype(int)  # an eye's corner, far from the mouth
    np.testing.assert_allclose(kept[eye[1], eye[0]], correction[eye[1], eye[0]], atol=1e-3)


def test_the_generator_every_second_frame_carries_its_correction_between(hopper, monkeypatch) -> None:
    """`every=2`: of four consecutive frames the generator draws the first and third (one call each,
    split over two threads); the second and fourth are the warp plus the drawn frame's correction,
    carried; a frame far from the last drawn one (a new stream), or whose eyes shut since, is drawn whatever
    its place. `every=4`: also, from the second frame after a drawn one, a frame whose face or lips moved
    since. A whole-frame generator draws every frame."""
    from marionette.warp import WarpRenderer

    crops, meshes = hopper_targets(hopper, 96)
    crops, meshes = crops[:1], meshes[:1]
    driven = np.stack([meshes[0] + np.array([0.0, dy, 0.0], np.float32) for dy in (1, 2, 3, 4)])  # not still
    generator = Generator(model_config("tiny", ["warp_guided=true"]))
    drawn: list[int] = []
    monkeypatch.setattr(generator, "generate", lambda landmarks, cache, warps=None: (
        drawn.append(len(landmarks)), SimpleNamespace(image=warps + 20 / 127.5))[1])  # lightens every pixel by 20
    renderer = NeuralRenderer(generator, crop_size=96, threads=2, every=2)
    renderer.prepare(crops, meshes)
    frames = renderer.render_batch(driven).astype(int)
    assert sorted(drawn) == [1, 1]  # two frames drawn, one per call
    warp = WarpRenderer(96)
    warp.prepare(crops, meshes)
    warps = warp.render_batch(driven).astype(int)
    inner = cv2.erode(face_mask(driven[3], 96), np.ones((15, 15), np.uint8)) > 0
    for i in range(4):  # every frame: its own warp, lightened by the drawn or the carried correction
        assert abs(np.median((frames[i] - warps[i])[inner]) - 20) <= 1, i
    drawn.clear()
    renderer.prepare(crops, meshes)  # frames one at a time, as a webcam's: a carried one calls no generator
    singles = np.concatenate([renderer.render_batch(mesh[None]) for mesh in driven]).astype(int)
    assert drawn == [1, 1]
    np.testing.assert_array_equal(singles, frames)
    drawn.clear()
    far = driven[:1] + np.array([30.0, 0.0, 0.0], np.float32)  # frame 5 would carry, but the face jumped
    renderer.render_batch(driven[3:])  # frame 4, drawn
    renderer.render_batch(far)
    renderer.render_batch(far)  # frame 6, carried: the cadence counts from the last drawn frame
    renderer.render_batch(far)  # frame 7, drawn
    shut = opened_lids(far[0], np.array([0.02, 0.02]))[None]  # frame 8 would carry, but its eyes shut
    renderer.render_batch(shut)
    assert drawn == [1, 1, 1, 1]
    renderer = NeuralRenderer(generator, crop_size=96, every=4)  # at least every fourth frame, and those that moved
    renderer.prepare(crops, meshes)
    still = driven[0]
    moved = still + np.array([0.05 * eye_span(still), 0.0, 0.0], np.float32)  # 0.05 eye spans: over CARRY_STEP
    parted = moved.copy()
    parted[MESH_INNER_LIPS[11:], 1] += 2  # the lower inner lip down: the lips moved, the face hardly
    calls = []
    for mesh in (still, still, still, still, still, moved, moved, moved, parted):
        before = len(drawn)
        renderer.render_batch(mesh[None])
        calls.append(len(drawn) > before)
    assert calls == [True, False, False, False, True, False, True, False, True]  # moved: drawn from the second after
    whole = Generator(model_config("tiny"))
    drawn.clear()
    monkeypatch.setattr(whole, "generate", lambda landmarks, cache, warps=None: (
        drawn.append(len(landmarks)), SimpleNamespace(image=torch.zeros(len(landmarks), 3, *landmarks.shape[-2:])))[1])
    renderer = NeuralRenderer(whole, crop_size=96, every=2)
    renderer.prepare(crops, meshes)
    renderer.render_batch(driven)
    assert drawn == [4]  # a whole-frame generator has no correction to carry: it draws every frame
