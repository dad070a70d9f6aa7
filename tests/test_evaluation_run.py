"""`evaluate` end to end on the bundled GRID clips: deterministic episode lists, every renderer
through one pipeline, a report, resuming, and the CLI's one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from marionette.cli import main
from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.evaluation.episodes import load_episodes, make_episodes, save_episodes
from marionette.evaluation.run import EvalConfig, evaluate
from marionette.provenance import verify

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CONFIG = EvalConfig(renderers=("copy", "warp"), shots=(1, 2), episodes=2, samples=1)


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
    for renderer in ("copy", "warp"):
        for k in ("1", "2"):
            assert 0.3 < self_mode["ssim"][renderer][k] < 1.0
            assert 15 < self_mode["psnr"][renderer][k] < 50
            assert 0.0 <= cross["expression_agreement"][renderer][k] <= 1.0
    # the copy baseline at K=1 outputs the target itself: identity to the target is perfect
    assert cross["csim"]["copy"]["1"] == pytest.approx(1.0, abs=1e-5)
    assert cross["identity_score"]["copy"]["1"] == 1.0
    calibration = json.loads((report / "calibration.json").read_text())
    assert len(calibration["references"]) == 4 and "auc" in calibration["separation"]  # the 4 GRID speakers
    # the warp follows the transformed driver landmarks more closely than an unchanged target frame
    assert cross["nme"]["warp"]["2"] < cross["nme"]["copy"]["2"]
    md = (report / "report.md").read_text()
    assert "| metric | copy K=1 | copy K=2 | warp K=1 | warp K=2 |" in md and "dlib" in md
    assert (report / "plots" / "self_ssim.png").is_file() and (report / "plots" / "cross_prmse.png").is_file()
    grid = verify(report / "samples" / "grid_cross_k2.jpg")  # synthetic samples carry both marks
    assert grid.tag is not None and grid.watermark.present, grid
    assert verify(report / "samples" / "cross_k2_e0_warp.jpg").watermark.present


def test_videos_give_temporal_metrics_and_a_marked_video_wall(small, tmp_path):
    import av

    from marionette.provenance import read_container_tag, verify

    root, manifest = small
    config = EvalConfig(renderers=("copy", "warp"), shots=(2,), episodes=1, samples=1, videos=True)
    evaluate(root, tmp_path, config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for r in records:
        values = r["metrics"]
        assert values["jumps"] >= 0 and values["flicker"] >= 0 and values["landmark_jitter"] is not None
    frames = manifest.clips[0].info.frames
    for mode in ("self", "cross"):
        wall = tmp_path / "samples" / f"{mode}_k2_e0_wall.mp4"
        assert "marionette" in read_container_tag(wall) and verify(wall).watermark.present
        with av.open(str(wall)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        size = manifest.config.size
        assert len(decoded) == frames and decoded[0].shape == (size, 3 * size, 3)  # driver | copy | warp


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
        evaluate(root, report, EvalConfig(seed=1, renderers=("copy",), shots=(1,), episodes=1), progress=False)


def test_neural_without_checkpoint_is_a_one_line_error(small, tmp_path, capsys):
    root, _ = small
    assert main(["evaluate", "--data", str(root), "--out", str(tmp_path / "r"), "--set", "renderers=neural"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "marionette: error: renderer neural needs a trained generator (--checkpoint)"


def test_arcface_without_onnxruntime_is_a_one_line_error(tmp_path, monkeypatch):
    from marionette.evaluation.judges import make_judge

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it fails

    with pytest.raises(InputError, match=r"^ArcFace judge needs onnxruntime \(pip install onnxruntime\)$"):
        make_judge(tmp_path / "arcface.onnx")


def test_evaluate_scores_what_reenact_runs(small, report):
    """Each recorded self-reenactment PSNR equals that of the output the reenact pipeline gives,
    configured as `reenact` is, for the same stored targets and driver."""
    import numpy as np

    from marionette.data.manifest import clip_path
    from marionette.data.store import ClipReader
    from marionette.evaluation.metrics import psnr
    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
    from marionette.landmarks.crop import CropBox

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
        start = pipeline.driving.reference(mesh[0], CropBox((size - 1) / 2, (size - 1) / 2, float(size)))
        output = pipeline.render(pipeline.driving(mesh[episode.driver_frame], start))
        truth = reader.images([episode.driver_frame])[0]
        assert np.isclose(psnr(output, truth), records[episode.shots, episode.episode], atol=1e-6)


def test_neural_device_is_resolved_once_and_half_precision_is_not_mixed(small, tmp_path, monkeypatch, caplog):
    """device=cuda on a machine without one: one warning for the whole run (not one per pipeline);
    a report made in bf16 is not resumed in fp32."""
    import dataclasses
    import logging

    import torch

    from marionette.inference.export import export_generator
    from marionette.model import Generator, model_config

    root, _ = small
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.manual_seed(0)
    export = tmp_path / "g.safetensors"
    export_generator(export, Generator(model_config("tiny")), model_config("tiny"), PreprocessConfig(), step=0)
    config = EvalConfig(renderers=("neural",), shots=(1,), modes=("self", "cross"), episodes=1, samples=0,
                        checkpoint=str(export), device="cuda", precision="bf16")
    evaluate(root, tmp_path / "r", config, progress=False)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "device=" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("device=cuda: no CUDA device here"), said
    assert json.loads((tmp_path / "r" / "settings.json").read_text())["precision"] == "bf16"
    with pytest.raises(InputError, match=r"other settings \(precision\)"):
        evaluate(root, tmp_path / "r", dataclasses.replace(config, precision="fp32"), progress=False)
