"""Landmark transformer: exact decomposition, invariances, α = 0, self-reproduction, K-order, files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from marionette.cli import main
from marionette.data.config import PreprocessConfig
from marionette.data.manifest import clip_path
from marionette.data.preprocess import preprocess
from marionette.data.store import ClipReader
from marionette.errors import InputError
from marionette.landmark_transformer.fit import decompose, load_clips
from marionette.landmark_transformer.model import DEFAULT_PATH, LandmarkTransformer, Pose
from marionette.landmarks.measures import CLOSED_MOUTH, eye_ratios, lip_gap
from marionette.landmarks.pose import euler_to_rotation
from marionette.media import load_image

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class Fitted:
    root: Path  # dataset: the four bundled GRID clips, 20 frames each
    path: Path  # FILE.safetensors written by `marionette fit-landmarks`
    lt: LandmarkTransformer
    meshes: list[np.ndarray]  # (F, 478, 3) per clip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    """A tiny transformer fitted through the CLI on every clip of a small real dataset."""
    root = tmp_path_factory.mktemp("lt_data")
    manifest, _ = preprocess(ASSETS / "videos", root, PreprocessConfig(max_frames=20), workers=2, progress=False)
    path = root / "lt.safetensors"
    assert main(["fit-landmarks", str(root), "--out", str(path), "--quiet",
                 "--set", "split=all", "--set", "epochs=20", "--set", "hidden=32", "--set", "batch_size=32"]) == 0
    meshes = [ClipReader(clip_path(root, c.info.clip_id)).mesh() for c in manifest.clips]
    return Fitted(root, path, LandmarkTransformer.load(path), meshes)


def similarity(points: np.ndarray, scale: float, angles: tuple[float, float, float],
               shift: tuple[float, float, float]) -> np.ndarray:
    """Apply one global similarity to (..., L, 3) points."""
    return Pose(euler_to_rotation(np.array(angles)), np.array(scale), np.array(shift)).apply(points)


def test_decomposition_reconstructs_exactly(fitted: Fitted) -> None:
    clips = load_clips(fitted.root, "all", flip=True)
    shapes, _ = fitted.lt.normalize(clips.points)
    parts = decompose(shapes, clips.clip)
    np.testing.assert_allclose(parts.mean + parts.identity[clips.clip] + parts.expression, shapes, atol=1e-12)
    for c in range(clips.clip.max() + 1):
        np.testing.assert_allclose(parts.expression[clips.clip == c].mean(0), 0, atol=1e-12)
    assert fitted.lt.components >= 1 and fitted.lt.stats["identities"] == 4


def test_procrustes_is_invariant_to_global_similarity(fitted: Fitted) -> None:
    points = fitted.meshes[0][:5].astype(np.float64)  # (5, 478, 3)
    shapes, pose = fitted.lt.normalize(points)
    np.testing.assert_allclose(pose.apply(shapes), points, atol=1e-9)  # the pose is kept apart, losslessly
    moved = similarity(points, 0.37, (20.0, -10.0, 35.0), (40.0, -7.0, 3.0))
    moved_shapes, _ = fitted.lt.normalize(moved)
    np.testing.assert_allclose(moved_shapes, shapes, atol=1e-9)


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_output_invariant_to_driver_scale_and_translation(fitted: Fitted, mode: str) -> None:
    driver, targets = fitted.meshes[0][:6], fitted.meshes[1][:3]
    out = fitted.lt(driver, targets, alpha=1.0, mode=mode).mesh
    moved = driver.astype(np.float64) * 2.5 + np.array([30.0, -12.0, 5.0])
    np.testing.assert_allclose(fitted.lt(moved, targets, alpha=1.0, mode=mode).mesh, out, atol=1e-3)


def test_alpha_zero_gives_target_shape_in_driver_pose(fitted: Fitted) -> None:
    lt = fitted.lt
    driver, targets = fitted.meshes[0][:4], fitted.meshes[2][:3]
    target = lt.prepare_targets(targets)
    _, driver_pose = lt.normalize(driver)
    out = lt.drive(driver, target, alpha=0.0, mode="absolute")
    expected = Pose(driver_pose.rotation, np.full(4, target.pose.scale), np.tile(target.pose.translation, (4, 1)))
    np.testing.assert_allclose(out.mesh, expected.apply(lt.mean_shape + target.identity), atol=1e-3)
    # relative, the target's expression: the targets' own (mean) shape, moved only by the driver's pose change
    relative = lt.drive(driver, target, alpha=0.0, mode="relative", expression="target")
    np.testing.assert_allclose(relative.shapes, np.broadcast_to(lt.normalize(targets)[0].mean(0), (4, 478, 3)),
                               atol=1e-5)
    # relative, the driver's expression: the target's identity with the driver's reference expression (its lips
    # no further apart than the driver's at its reference: below; its lids no wider apart than the wider of the
    # target's own and the driver's at its reference, and those its photos show open no closer than the closer)
    start = lt.prepare_start(driver[0])
    relative = lt.drive(driver, target, alpha=0.0, mode="relative", start=start)
    expected = lt.mean_shape + target.identity + lt.project(start.coefficients)
    kept = np.abs(relative.shapes[0] - expected).max(-1) < 1e-6  # (478,) all but what lies under the lips, the lids
    assert kept.sum() > 380
    np.testing.assert_allclose(relative.shapes[:, kept], np.broadcast_to(expected[kept], (4, kept.sum(), 3)), atol=1e-5)
    assert lip_gap(relative.shapes[0]) <= max(lip_gap(expected), lip_gap(start.shape)) + 1e-6
    eyes, rest = eye_ratios(relative.shapes[0]), eye_ratios(start.shape)  # (2,) each
    assert np.all(eyes <= np.maximum(target.eyes, rest) + 1e-4)
    assert np.all((eyes >= np.minimum(target.eyes, rest) - 1e-4) | ~target.open_eyes)


def test_a_target_photographed_mid_word_is_shut_at_the_drivers_rest(fitted: Fitted) -> None:
    """Relative mode, the driver's expression: a target whose mouth is open in its photo (part of which
    the transformer reads as its identity) shows the driver's closed mouth while the driver rests; with
    the target's own expression it keeps its open mouth."""
    lt = fitted.lt
    closed = int(np.argmin(lip_gap(fitted.meshes[0])))
    driver = fitted.meshes[0][closed : closed + 1]  # its most closed mouth, the reference, drawn as it is: no change
    targets = fitted.meshes[2][:3].copy()
    for mesh in targets:  # the jaw dropped: everything under the inner lips, across the mouth, moved down
        meet = (mesh[13, 1] + mesh[14, 1]) / 2
        width = abs(mesh[308, 0] - mesh[78, 0])
        below = (mesh[:, 1] > meet) & (np.abs(mesh[:, 0] - mesh[14, 0]) < 0.8 * width)
        mesh[below, 1] += 0.25 * width
    start = lt.prepare_start(driver[0])
    assert lip_gap(start.shape) < 0.05 and lip_gap(lt.normalize(targets)[0]).min() > 0.2  # the case is what it says
    target = lt.prepare_targets(targets)
    shut = lt.drive(driver, target, alpha=1.0, mode="relative", start=start).shapes[0]
    kept = lt.drive(driver, target, alpha=1.0, mode="relative", start=start, expression="target").shapes[0]
    assert lip_gap(shut) < CLOSED_MOUTH + 0.01 and lip_gap(kept) > 0.2, (lip_gap(shut), lip_gap(kept))


@pytest.mark.parametrize("expression", ["driver", "target"])
def test_relative_mode_carries_the_drivers_change_unshrunk(fitted: Fitted, expression: str) -> None:
    """The output's shape moves exactly as the driver's normalised shape does since its reference
    (a single frame's λ̂ would regress to the mean: half a wide mouth, no blinks)."""
    lt = fitted.lt
    driver, target = fitted.meshes[0][:8], lt.prepare_targets(fitted.meshes[2][:2])
    shapes, _ = lt.normalize(driver)
    out = lt.drive(driver, target, alpha=0.5, mode="relative", expression=expression).shapes
    np.testing.assert_allclose(out - out[0], 0.5 * (shapes - shapes[0]), atol=1e-5)
    assert np.abs(shapes - shapes[0]).max() > 0.01  # the clip does move


def test_reference_from_many_frames(fitted: Fitted) -> None:
    """A reference from several frames: the mean of their expressions and shapes, their mean pose."""
    lt, clip = fitted.lt, fitted.meshes[1][:6]
    one = lt.prepare_start(clip[2])
    same = lt.prepare_reference(clip[2:3], clip[2:3])
    np.testing.assert_allclose(same.shape, one.shape, atol=1e-12)
    np.testing.assert_allclose(same.pose.rotation, one.pose.rotation, atol=1e-9)
    many = lt.prepare_reference(clip[:4], clip[4:6])
    np.testing.assert_allclose(many.shape, lt.normalize(clip[:4])[0].mean(0), atol=1e-9)
    np.testing.assert_allclose(many.coefficients, lt.expression(lt.normalize(clip[:4])[0]).mean(0), atol=1e-9)
    np.testing.assert_allclose(many.pose.scale, lt.normalize(clip[4:6])[1].scale.mean(), atol=1e-9)
    assert np.allclose(many.pose.rotation @ many.pose.rotation.T, np.eye(3), atol=1e-9)


def test_unknown_expression_is_an_input_error(fitted: Fitted) -> None:
    target = fitted.lt.prepare_targets(fitted.meshes[2][:1])
    with pytest.raises(InputError, match="expression 'smile'"):
        fitted.lt.drive(fitted.meshes[0][:2], target, alpha=1.0, mode="relative", expression="smile")


def test_streamed_frames_with_a_prepared_start_equal_the_whole_clip(fitted: Fitted) -> None:
    lt, driver = fitted.lt, fitted.meshes[0][:5]
    target = lt.prepare_targets(fitted.meshes[1][:3])
    whole = lt.drive(driver, target, alpha=1.0, mode="relative").mesh  # motion from driver[0]
    start = lt.prepare_start(driver[0])  # a stream prepares its first frame once
    streamed = np.concatenate([lt.drive(f[None], target, alpha=1.0, mode="relative", start=start).mesh for f in driver])
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    moved = lt.drive(driver[2:3], target, alpha=1.0, mode="relative").mesh  # its own first frame: no motion
    assert np.abs(moved - streamed[2:3]).max() > 0.1


def test_target_equal_to_driver_reproduces_driver(fitted: Fitted) -> None:
    lt, clip = fitted.lt, fitted.meshes[3]
    for i in (0, 7):  # the driver frame itself as the only target: exact in both modes
        for mode in ("absolute", "relative"):
            np.testing.assert_allclose(lt(clip[i : i + 1], clip[i : i + 1], alpha=1.0, mode=mode).mesh, clip[i : i + 1], atol=1e-3)
    shapes, _ = lt.normalize(clip)
    out = lt(clip, clip[::4], alpha=1.0, mode="absolute").shapes  # K = 5 frames of the driver's own clip
    error = np.linalg.norm(out - shapes, axis=-1).mean()
    expression = np.linalg.norm(shapes - shapes.mean(0), axis=-1).mean()  # how far expressions move points
    assert error < expression, (error, expression)


def test_target_order_does_not_matter(fitted: Fitted) -> None:
    driver, targets = fitted.meshes[1][:5], fitted.meshes[0][[0, 5, 11, 17]]
    for mode in ("absolute", "relative"):
        out = fitted.lt(driver, targets, alpha=1.0, mode=mode).mesh
        np.testing.assert_allclose(fitted.lt(driver, targets[[2, 0, 3, 1]], alpha=1.0, mode=mode).mesh, out, atol=1e-4)


def test_save_load_round_trip(fitted: Fitted, tmp_path: Path) -> None:
    driver, targets = fitted.meshes[2][:5], fitted.meshes[3][:2]
    fitted.lt.save(tmp_path / "copy.safetensors")
    assert (tmp_path / "copy.json").is_file()
    again = LandmarkTransformer.load(tmp_path / "copy.safetensors")
    assert again.config == fitted.lt.config and again.stats == fitted.lt.stats
    for mode in ("absolute", "relative"):
        expected = fitted.lt(driver, targets, alpha=1.0, mode=mode).mesh
        np.testing.assert_array_equal(again(driver, targets, alpha=1.0, mode=mode).mesh, expected)


def test_shipped_default_loads_and_runs(fitted: Fitted) -> None:
    lt = LandmarkTransformer.load()
    assert DEFAULT_PATH.stat().st_size + DEFAULT_PATH.with_suffix(".json").stat().st_size < 2_000_000
    assert lt.stats["split"] == "train" and lt.components >= 5
    out = lt(fitted.meshes[0][:3], fitted.meshes[1][:2], alpha=1.0, mode="relative")
    assert out.mesh.shape == (3, 478, 3) and out.ibug68.shape == (3, 68, 3) and np.isfinite(out.mesh).all()


def test_missing_or_corrupt_file_is_an_input_error(fitted: Fitted, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.safetensors"
    with pytest.raises(InputError, match=str(missing)):
        LandmarkTransformer.load(missing)
    corrupt = tmp_path / "bad.safetensors"
    fitted.lt.save(corrupt)
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=str(corrupt)):
        LandmarkTransformer.load(corrupt)
    corrupt.with_suffix(".json").write_text("{not json")
    with pytest.raises(InputError, match=str(corrupt.with_suffix(".json"))):
        LandmarkTransformer.load(corrupt)
    with pytest.raises(InputError, match="mode"):
        fitted.lt(fitted.meshes[0][:1], fitted.meshes[1][:1], alpha=1.0, mode="sideways")
    assert main(["fit-landmarks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err
    assert main(["fit-landmarks", str(fitted.root), "--out", str(tmp_path / "x.safetensors"), "--set", "epoch=3"]) == 2
    assert "unknown LandmarkTransformerConfig setting" in capsys.readouterr().err


def test_a_fitted_file_drives_reenact(fitted: Fitted, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--landmark-transformer FILE` (a file `fit-landmarks` wrote) is used by reenact; another gives
    another output; a damaged one is a one-line error."""
    driver = next((ASSETS / "videos").glob("*.mp4"))
    common = ["reenact", "--target", str(ASSETS / "faces" / "02_grace_hopper.jpg"), "--driver", str(driver),
              "--quiet", "--set", "size=128", "--set", "max_frames=4", "--set", "paste_back=false"]
    outs = {}
    for name, extra in (("shipped", []), ("fitted", ["--landmark-transformer", str(fitted.path)])):
        outs[name] = tmp_path / f"{name}"
        assert main([*common, "-o", str(outs[name]), *extra]) == 0
    shipped, own = (sorted(p.glob("*.png")) for p in outs.values())
    assert len(shipped) == len(own) == 4
    assert any(np.abs(load_image(a).astype(int) - load_image(b)).mean() > 0.5 for a, b in zip(shipped, own))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not weights")
    broken.with_suffix(".json").write_text(fitted.path.with_suffix(".json").read_text())
    assert main([*common, "-o", str(tmp_path / "x.mp4"), "--landmark-transformer", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.safetensors" in err
