"""`evaluate` end to end on the bundled GRID clips: deterministic episode lists, every renderer
through one pipeline, a report with intervals, resuming, motion fidelity of videos, the inputs
written for other tools and their videos scored beside ours, and one-line errors that leave
nothing behind."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from marionette.cli import main
from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.evaluation.episodes import load_episodes, make_episodes, save_episodes
from marionette.evaluation.report import write_report
from marionette.evaluation.run import EvalConfig, evaluate
from marionette.provenance import verify

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CONFIG = EvalConfig(renderers=("copy", "warp"), shots=(1, 2), episodes=2, samples=1, videos=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """4 GRID clips, 10 frames each; half the identities in the test split (2 of them)."""
    from marionette.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("evalset")
    config = PreprocessConfig(max_frames=10, split="hash", test_fraction=0.5, val_fraction=0.0)
    manifest, _ = preprocess(ASSETS / "videos", root, config, workers=1, progress=False)
    assert len({c.info.identity for c in manifest.split("test")}) >= 2
    return root, manifest


@pytest.fixture(scope="module")
def report(small, tmp_path_factory):
    root, _ = small
    out = tmp_path_factory.mktemp("report")
    evaluate(root, out, CONFIG, progress=False)
    return out


def test_episode_lists_are_deterministic_paired_and_round_trip(small, tmp_path):
    _, manifest = small
    a = make_episodes(manifest, "test", ("self", "cross"), (1, 8), 5, seed=0)
    assert a == make_episodes(manifest, "test", ("self", "cross"), (1, 8), 5, seed=0)
    assert a != make_episodes(manifest, "test", ("self", "cross"), (1, 8), 5, seed=1)
    ids = {c.info.clip_id: c.info.identity for c in manifest.clips}
    test_ids = {c.info.identity for c in manifest.split("test")}
    for e in a:
        assert ids[e.target_clip] in test_ids and ids[e.driver_clip] in test_ids
        assert len(e.target_frames) == e.shots == len(set(e.target_frames))
        if e.mode == "self":
            assert e.driver_clip == e.target_clip and e.driver_frame not in e.target_frames
        else:
            assert ids[e.driver_clip] != ids[e.target_clip]
    one, eight = ({e.episode: e for e in a if e.mode == "cross" and e.shots == k} for k in (1, 8))
    assert all(one[i].target_frames == eight[i].target_frames[:1] and one[i].driver_frame == eight[i].driver_frame
               for i in one)
    save_episodes(tmp_path / "e.csv", a)
    assert load_episodes(tmp_path / "e.csv") == a


def test_hard_drivers_are_each_hard_frame_once_round_robin(small):
    _, manifest = small
    clips = sorted(c.info.clip_id for c in manifest.split("test"))
    ids = {c.info.clip_id: c.info.identity for c in manifest.clips}
    hard = {clip: np.array([1, 4 + i]) for i, clip in enumerate(clips)}  # two hard frames per clip
    episodes = make_episodes(manifest, "test", ("self", "cross"), (1, 8), 100, seed=0, hard=hard.__getitem__)
    driven = [(e.driver_clip, e.driver_frame) for e in episodes if e.mode == "self" and e.shots == 1]
    assert driven == [(c, 1) for c in clips] + [(c, 4 + i) for i, c in enumerate(clips)]  # round-robin, each once
    for e in episodes:
        assert e.driver_frame in hard[e.driver_clip] and len(set(e.target_frames)) == e.shots
        if e.mode == "self":
            assert e.driver_clip == e.target_clip and e.driver_frame not in e.target_frames
        else:
            assert ids[e.driver_clip] != ids[e.target_clip]
    assert len(make_episodes(manifest, "test", ("self",), (1,), 3, seed=0, hard=hard.__getitem__)) == 3
    with pytest.raises(InputError, match="no frame has closed eyes or a wide-open mouth"):
        make_episodes(manifest, "test", ("self",), (1,), 5, seed=0, hard=lambda clip: np.array([], int))


@pytest.mark.slow
def test_report_has_every_cell_and_sane_values(report):
    lines = (report / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 2 * 2  # renderers x shots x modes x episodes
    table = json.loads((report / "report.json").read_text())
    assert "dlib" in table["settings"]["judge"] and "LPIPS omitted" in " ".join(table["omitted"])
    self_mode, cross = table["results"]["self"], table["results"]["cross"]
    assert set(self_mode) >= {"l1", "psnr", "ssim", "csim", "identity_score", "perceptual", "psnr_mouth",
                              "perceptual_eyes", "blink_correlation", "gaze_error", "episodes"}
    assert "prmse" not in self_mode and "jumps" not in self_mode  # no video: temporal metrics not measured
    assert set(cross) >= {"csim", "identity_score", "prmse", "prmse_driven", "expression_agreement",
                          "expression_agreement_driven", "nme"} and "psnr" not in cross
    assert {"kid", "prmse_driven", "nme", "expression_agreement_driven"} <= set(self_mode)  # motion beside identity
    for renderer in ("copy", "warp"):
        for k in ("1", "2"):
            assert 0.3 < self_mode["ssim"][renderer][k] < 1.0
            assert 15 < self_mode["psnr"][renderer][k] < 50
            assert np.isfinite(self_mode["kid"][renderer][k])  # two episodes: a kernel distance exists
    # every difference between the renderers, with its interval, over the 2 paired episodes
    gain, low, high, n = table["differences"]["self"]["psnr"]["warp - copy"]["2"]
    assert gain == pytest.approx(self_mode["psnr"]["warp"]["2"] - self_mode["psnr"]["copy"]["2"]) and n == 2
    psnr = {(r["renderer"], r["episode"]): r["metrics"]["psnr"] for r in map(json.loads, lines)
            if (r["mode"], r["shots"]) == ("self", 2)}
    each = [psnr["warp", e] - psnr["copy", e] for e in (0, 1)]  # 2 episodes: the resamples' means span them
    assert (low, high) == pytest.approx((min(each), max(each)))
    assert set(table["differences"]["cross"]["nme"]["warp - copy"]) == {"1", "2"}
    write_report(report, table["omitted"])  # rebuilt from the same results: the same intervals
    assert json.loads((report / "report.json").read_text())["differences"] == table["differences"]
    # the copy baseline at K=1 outputs the target itself: identity to the target is perfect
    assert cross["csim"]["copy"]["1"] == pytest.approx(1.0, abs=1e-5)
    assert cross["identity_score"]["copy"]["1"] == 1.0
    calibration = json.loads((report / "calibration.json").read_text())
    assert len(calibration["references"]) == 4 and "auc" in calibration["separation"]  # the 4 GRID speakers
    # the warp follows the transformed driver landmarks more closely than an unchanged target frame
    assert cross["nme"]["warp"]["2"] < cross["nme"]["copy"]["2"]
    md = (report / "report.md").read_text()
    assert "| metric | copy K=1 | copy K=2 | warp K=1 | warp K=2 |" in md and "dlib" in md
    assert "### cross: identity beside motion fidelity" in md and "resolution of psnr: with n = 2 episodes" in md
    for plot in ("self_ssim", "cross_prmse", "self_identity_vs_motion", "cross_identity_vs_motion"):
        assert (report / "plots" / f"{plot}.png").is_file(), plot
    grid = verify(report / "samples" / "grid_cross_k2.jpg")  # synthetic samples carry both marks
    assert grid.tag is not None and grid.watermark.present, grid
    assert verify(report / "samples" / "cross_k2_e0_warp.jpg").watermark.present


def test_videos_rank_a_frozen_copy_last_on_motion_and_give_a_marked_video_wall(small, tmp_path):
    import av

    from marionette.provenance import read_container_tag, verify

    root, manifest = small
    config = EvalConfig(renderers=("copy", "warp"), shots=(1,), episodes=1, samples=1, videos=True)
    evaluate(root, tmp_path, config, progress=False)
    records = {(r["renderer"], r["mode"]): r["metrics"]
               for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert len(records) == 4
    for mode in ("self", "cross"):
        copy, warp = records["copy", mode], records["warp", mode]
        # copying one target holds one frame: perfectly still, and no motion followed at all
        assert (copy["motion_correlation"], copy["motion_error"]) == (0.0, 1.0)
        assert copy["landmark_jitter"] == copy["flicker"] == copy["jumps"] == 0.0
        # the warp follows the driven landmarks (measured: r 0.91 / 0.96, error 0.41 / 0.28) and moves
        assert warp["motion_correlation"] > 0.7 and warp["motion_error"] < 0.7 and warp["flicker"] > 0
    # every frame of the self video against its ground truth: the warp's frames are the closer ones
    assert records["warp", "self"]["video_psnr"] > records["copy", "self"]["video_psnr"] > 15
    assert "video_psnr" not in records["warp", "cross"]  # no ground truth in cross-identity
    frames = manifest.clips[0].info.frames
    for mode in ("self", "cross"):
        wall = tmp_path / "samples" / f"{mode}_k1_e0_wall.mp4"
        assert "marionette" in read_container_tag(wall) and verify(wall).watermark.present
        with av.open(str(wall)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        size = manifest.config.size
        assert len(decoded) == frames and decoded[0].shape == (size, 3 * size, 3)  # driver | copy | warp


@pytest.mark.slow
def test_rerun_resumes_only_missing_lines(small, report):
    root, _ = small
    path = report / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:10])  # lose 3 lines, one cut short
    evaluate(root, report, CONFIG, progress=False)
    redone = [json.loads(line) for line in path.read_text().splitlines()[len(lines) - 3 + 1:]]
    assert sorted(json.dumps(r, sort_keys=True) for r in redone) == sorted(
        json.dumps(json.loads(line), sort_keys=True) for line in lines[-3:])  # deterministic results
    with pytest.raises(InputError, match="other settings"):
        evaluate(root, report, EvalConfig(seed=1, renderers=("copy",), shots=(1,), episodes=1, videos=False), progress=False)


def test_onnx_without_checkpoint_is_a_one_line_error(small, tmp_path, capsys):
    root, _ = small
    assert main(["evaluate", "--data", str(root), "--out", str(tmp_path / "r"), "--set", "renderers=onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("marionette: error: renderer onnx needs an ONNX export folder (--checkpoint DIR, "
                   "from `marionette export-onnx`)")
    assert not (tmp_path / "r").exists()  # a failed evaluation leaves nothing behind


def test_arcface_without_onnxruntime_is_a_one_line_error(tmp_path, monkeypatch):
    from marionette.evaluation.judges import make_judge

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it fails

    with pytest.raises(InputError, match=r"^ArcFace judge needs onnxruntime \(pip install onnxruntime\)$"):
        make_judge(tmp_path / "arcface.onnx")


@pytest.mark.slow
def test_evaluate_scores_what_reenact_runs(small, report):
    """Each recorded self-reenactment PSNR equals that of the output the reenact pipeline gives,
    configured as `reenact` is, for the same stored targets and driver."""
    from marionette.data.manifest import clip_path
    from marionette.data.store import ClipReader
    from marionette.evaluation.metrics import psnr
    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline, TrackedDriver

    root, manifest = small
    size = manifest.config.size
    pipeline = ReenactPipeline(ReenactConfig(renderer="warp", size=size, transform=False, mode="absolute",
                                             paste_back=False))
    lines = [json.loads(line) for line in (report / "results.jsonl").read_text().splitlines()
             if line.endswith("}")]  # (another test leaves a line cut short, as a kill would)
    records = {(r["shots"], r["episode"]): r["metrics"]["psnr"] for r in lines
               if r["mode"] == "self" and r["renderer"] == "warp"}
    assert records
    for episode in load_episodes(report / "episodes.csv"):
        if episode.mode != "self":
            continue
        reader = ClipReader(clip_path(root, episode.target_clip))
        mesh = reader.mesh()  # (F, 478, 3) in crop pixels
        frames = list(episode.target_frames)
        pipeline.set_target_crops(reader.images(frames), mesh[frames])
        output = next(pipeline.render_frames(TrackedDriver(mesh, [episode.driver_frame]))).output
        truth = reader.images([episode.driver_frame])[0]
        assert np.isclose(psnr(output, truth), records[episode.shots, episode.episode], atol=1e-6)


def test_cross_episodes_show_the_drivers_teeth_and_self_episodes_never_take_its_pixels(small, tmp_path, monkeypatch):
    """In self-reenactment the driver frame is the ground truth: its mouth never reaches the renderer.
    Cross episodes hand it over as `reenact` does (cross_mouth=driver), or not (drawn)."""
    from marionette.warp import WarpRenderer

    root, _ = small
    handed: list[bool] = []  # per render_batch call: were the driver's mouths handed over?
    render_batch = WarpRenderer.render_batch

    def spy(self, meshes, mouths=None):
        handed.append(mouths is not None)
        return render_batch(self, meshes, mouths)

    monkeypatch.setattr(WarpRenderer, "render_batch", spy)
    config = dataclasses.replace(CONFIG, renderers=("warp",), shots=(1,))
    evaluate(root, tmp_path / "driver", config, progress=False)
    assert sorted(handed) == [False] * config.episodes + [True] * config.episodes  # self, then cross episodes
    handed.clear()
    evaluate(root, tmp_path / "drawn", dataclasses.replace(config, cross_mouth="drawn"), progress=False)
    assert handed == [False] * 2 * config.episodes


def test_neural_device_is_resolved_once_and_half_precision_is_not_mixed(small, tmp_path, monkeypatch, caplog):
    """device=cuda on a machine without one: one warning for the whole run (not one per pipeline);
    a report made in bf16 is not resumed in fp32."""
    import logging

    import torch

    from marionette.inference.export import export_generator
    from marionette.model.config import model_config
    from marionette.model.generator import Generator

    root, _ = small
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.manual_seed(0)
    export = tmp_path / "g.safetensors"
    export_generator(export, Generator(model_config("tiny")), model_config("tiny"), PreprocessConfig(), step=0)
    config = EvalConfig(renderers=("neural",), shots=(1,), modes=("self", "cross"), episodes=1, samples=0,
                        videos=False, checkpoint=str(export), device="cuda", precision="bf16")
    evaluate(root, tmp_path / "r", config, progress=False)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "device=" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("device=cuda: no CUDA device here"), said
    assert json.loads((tmp_path / "r" / "settings.json").read_text())["precision"] == "bf16"
    with pytest.raises(InputError, match=r"other settings \(precision\)"):
        evaluate(root, tmp_path / "r", dataclasses.replace(config, precision="fp32"), progress=False)


def _resplit(small, tmp_path: Path, split: str) -> Path:
    """The small dataset with every clip moved to `split` (its clips shared, its manifest rewritten)."""
    root, _ = small
    data = json.loads((root / "manifest.json").read_text())
    for clip in data["clips"]:
        clip["split"] = split
    folder = tmp_path / f"all_{split}"
    folder.mkdir()
    (folder / "clips").symlink_to(root / "clips")
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def test_an_empty_split_is_named_and_a_failed_run_leaves_nothing(small, tmp_path, capsys, monkeypatch):
    import marionette.evaluation.run as run

    data = _resplit(small, tmp_path, "train")
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == ("marionette: error: split 'test' has no clips: this dataset's "
                                               "identities are all in train; use split=all")
    assert not out.exists()
    out.mkdir()  # an empty folder the user made stays, empty
    with pytest.raises(InputError, match="split 'val' has no clips"):
        evaluate(data, out, EvalConfig(split="val"), progress=False)
    assert out.is_dir() and not any(out.iterdir())

    def broken(*args, **kwargs):
        raise InputError("no identity references")

    monkeypatch.setattr(run, "_calibration", broken)  # a failure once the folder is begun, before any result
    root, _ = small
    with pytest.raises(InputError, match="no identity references"):
        evaluate(root, tmp_path / "new", CONFIG, progress=False)
    assert not (tmp_path / "new").exists()  # no settings.json, no samples/, nothing


def _render_episode(root: Path, episode: dict, size: int) -> np.ndarray:
    """The warp renderer's video of an episode described by its inputs' episode.json, driven from
    the dataset's stored meshes as evaluate drives it: (F, S, S, 3)."""
    from marionette.data.manifest import clip_path
    from marionette.data.store import ClipReader
    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline, TrackedDriver

    drive = dict(transform=False, mode="absolute") if episode["mode"] == "self" else dict(mode="relative")
    pipeline = ReenactPipeline(ReenactConfig(renderer="warp", size=size, paste_back=False, **drive))
    target, driver = ClipReader(clip_path(root, episode["target_clip"])), ClipReader(clip_path(root, episode["driver_clip"]))
    frames = episode["target_frames"]
    pipeline.set_target_crops(target.images(frames), target.mesh()[frames])
    meshes = driver.mesh()  # (F, 478, 3)
    return np.stack([r.output for r in pipeline.render_frames(TrackedDriver(meshes, range(len(meshes))))])


def test_inputs_for_other_tools_and_their_videos_scored_beside_ours(small, tmp_path, capsys):
    """Videos made by our warp renderer from the written inputs, saved under another name, score
    as the warp does: exactly as PNG frames, within the codec's loss as mp4."""
    from marionette.data.manifest import clip_path
    from marionette.data.store import ClipReader
    from marionette.inference.io import FrameWriter
    from marionette.media import iter_video, load_image

    root, manifest = small
    size = manifest.config.size
    out = tmp_path / "report"
    config = EvalConfig(renderers=("warp",), shots=(2,), episodes=1, samples=0, videos=True, inputs=True)
    evaluate(root, out, config, progress=False)
    made = tmp_path / "theirs"
    for folder in sorted((out / "inputs").iterdir()):
        episode = json.loads((folder / "episode.json").read_text())
        assert folder.name == f"{episode['mode']}_k{episode['shots']}_e{episode['episode']}"
        stored = ClipReader(clip_path(root, episode["target_clip"])).images(episode["target_frames"])
        assert all((load_image(folder / f"target_{j}.png") == stored[j]).all() for j in range(episode["shots"]))
        driver = list(iter_video(folder / "driver.mp4"))
        assert len(driver) == episode["frames"] == len(ClipReader(clip_path(root, episode["driver_clip"])))
        assert (load_image(folder / "driver.png")
                == ClipReader(clip_path(root, episode["driver_clip"])).images([episode["driver_frame"]])[0]).all()
        video = _render_episode(root, episode, size)
        # self as a folder of PNG frames (lossless), cross as an mp4
        with FrameWriter(made / (folder.name if episode["mode"] == "self" else f"{folder.name}.mp4"), 5, {}) as writer:
            for frame in video:
                writer.write(frame)
    lines = (out / "results.jsonl").read_text()
    missing = tmp_path / "empty"
    missing.mkdir()
    assert main(["evaluate", "--data", str(root), "--out", str(out), "--quiet", "--set", "renderers=warp",
                 "--set", "shots=2", "--set", "episodes=1", "--set", "videos=true", "--set", f"external=mine:{made}",
                 "--set", f"external=other:{missing}"]) == 2  # repeated: both kept, the second has no video
    assert capsys.readouterr().err.strip() == (f"marionette: error: {missing}: no video for episode self_k2_e0 "
                                               "(expected self_k2_e0.mp4 or a folder self_k2_e0/ of PNG frames)")
    assert (out / "results.jsonl").read_text() == lines  # refused before anything was written
    evaluate(root, out, dataclasses.replace(config, external=(f"mine:{made}",)), progress=False)
    records = {(r["renderer"], r["mode"]): r["metrics"] for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    ours, theirs = records["warp", "self"], records["mine", "self"]
    assert theirs.keys() == ours.keys() and all(
        theirs[k] == pytest.approx(ours[k], abs=1e-9) for k in ours if ours[k] is not None)
    ours, theirs = records["warp", "cross"], records["mine", "cross"]
    for name, tolerance in (("identity_score", 0.05), ("nme", 0.01), ("prmse_driven", 1.0), ("motion_correlation", 0.05),
                            ("motion_error", 0.1), ("flicker", 0.01)):
        assert theirs[name] == pytest.approx(ours[name], abs=tolerance), name
    table = json.loads((out / "report.json").read_text())["results"]
    assert table["self"]["psnr"]["mine"]["2"] == pytest.approx(table["self"]["psnr"]["warp"]["2"])
    assert "| metric | warp K=2 | mine K=2 |" in (out / "report.md").read_text()


def test_external_settings_are_checked_in_one_line(small, tmp_path, capsys):
    root, _ = small
    base = ["evaluate", "--data", str(root), "--out", str(tmp_path / "r"), "--quiet", "--set"]
    assert main(base + ["external=warp:" + str(tmp_path)]) == 2
    assert "external=warp:" in capsys.readouterr().err  # a name of ours
    assert main(base + [f"external=mine:{tmp_path / 'nowhere'}"]) == 2
    assert capsys.readouterr().err.strip() == f"marionette: error: external=mine:{tmp_path / 'nowhere'}: no such folder"
    assert not (tmp_path / "r").exists()
