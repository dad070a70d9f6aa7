"""`preprocess`: videos -> dataset of crops; resumable, skips bad input, identity-disjoint splits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from marionette.data.config import PreprocessConfig
from marionette.data.manifest import SPLITS, Manifest, assign_splits, clip_path
from marionette.data.preprocess import find_clips, preprocess
from marionette.data.store import ClipReader
from marionette.errors import InputError
from marionette.landmarks.layout import MESH_TO_IBUG68, inter_ocular
from marionette.media import probe_video

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GRID = sorted(p.stem for p in (ASSETS / "videos").glob("*.mp4"))
CONFIG = PreprocessConfig(max_frames=6)


def _mtimes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((root / "clips").rglob("*.safetensors"))}


# --- the bundled clips -------------------------------------------------------------------------

def test_manifest_lists_every_clip(dataset):
    m = dataset.manifest
    assert dataset.failures == {}
    assert [c.info.clip_id for c in m.clips] == GRID and len(GRID) == 4
    for c in m.clips:
        assert c.info.frames == dataset.config.max_frames
        assert c.info.identity == c.info.clip_id  # flat folder: one identity per file
        assert (c.info.source_frames, c.info.source_width, c.info.source_height) == (75, 360, 288)
        assert c.info.fps == 25.0 and c.info.size == dataset.config.size
        assert c.split in SPLITS
        assert clip_path(dataset.root, c.info.clip_id).is_file()
    print(f"dataset of {len(m.clips)} clips built in {dataset.seconds:.1f} s")


def test_splits_are_identity_disjoint(dataset):
    splits: dict[str, set[str]] = {}
    for c in dataset.manifest.clips:
        splits.setdefault(c.info.identity, set()).add(c.split)
    assert all(len(s) == 1 for s in splits.values())
    assert dataset.manifest.split("train") and dataset.manifest.split("test")
    assert len(dataset.manifest.split("all")) == 4


def test_manifest_round_trip(dataset, tmp_path):
    dataset.manifest.save(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json") == dataset.manifest
    assert Manifest.load(dataset.root) == dataset.manifest  # the folder form reads manifest.json
    with pytest.raises(InputError, match="no dataset manifest"):
        Manifest.load(tmp_path / "nothing")
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="bad.json"):
        Manifest.load(tmp_path / "bad.json")


def test_stored_clip_is_consistent(dataset):
    from marionette.landmarks.mesh import FaceMesh

    clip = ClipReader(clip_path(dataset.root, GRID[0]))
    size = dataset.config.size
    images = clip.images(range(len(clip)))
    mesh = clip.mesh()
    assert images.shape == (6, size, size, 3) and mesh.shape == (6, 478, 3)
    assert np.array_equal(clip.ibug68, mesh[:, MESH_TO_IBUG68])
    assert ((mesh[..., :2] > 0) & (mesh[..., :2] < size - 1)).all()  # the whole face inside the crop
    assert np.isfinite(clip.pose).all() and (np.abs(clip.pose) < 45).all()
    # the stored landmarks sit on the stored crop: detect again on the JPEG crop and compare
    with FaceMesh(video=False, max_faces=1) as detector:
        for i in (0, 5):
            again = detector.detect(images[i])[0].ibug68
            nme = np.linalg.norm(again[:, :2] - clip.ibug68[i, :, :2], axis=1).mean() / inter_ocular(clip.ibug68[i])
            assert nme < 0.05, nme


def test_rerun_does_no_work(dataset):
    before = _mtimes(dataset.root)
    manifest, failures = preprocess(dataset.src, dataset.root, dataset.config, workers=2, progress=False)
    assert _mtimes(dataset.root) == before and len(before) == 4  # no clip rewritten
    assert manifest == dataset.manifest and failures == {}


def test_stale_temp_files_are_removed(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset.root, root)
    stale = [root / "clips" / ".x.safetensors", root / "clips" / f".{GRID[0]}.safetensors.k2j4.safetensors",
             root / ".manifest.json.partial-k2j4abcd.json"]
    for p in stale:
        p.write_bytes(b"half-written")
    manifest, _ = preprocess(dataset.src, root, dataset.config, workers=1, progress=False)
    assert not any(p.exists() for p in stale)
    assert manifest == dataset.manifest
    assert [c["clip_id"] for c in json.loads((root / "manifest.json").read_text())["clips"]] == GRID


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_mid_build_then_rerun_gives_byte_identical_clips(dataset, tmp_path):
    """kill -9 of the parent while its workers build clips: the workers die with it, a rerun builds
    every clip, each byte-identical to an uninterrupted build, and no temporary is left."""
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "marionette.cli", "preprocess", str(dataset.src), str(out), "--workers", "2",
               "--quiet", "--set", f"max_frames={dataset.config.max_frames}"]
    builder = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("clips/*.safetensors")) and builder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first clip is in place: the others are being built or saved
    assert builder.poll() is None, "the build ended before it could be killed"
    os.kill(builder.pid, signal.SIGKILL)  # the parent only: its workers must not outlive it
    builder.wait()
    deadline = time.monotonic() + 10
    while _group_alive(builder.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(builder.pid), "pool workers outlived their killed parent"
    done = len(list(out.glob("clips/*.safetensors")))
    assert 1 <= done < 4
    assert subprocess.run(command, capture_output=True).returncode == 0
    rebuilt = {p.name: p.read_bytes() for p in sorted((out / "clips").rglob("*.safetensors"))}
    reference = {p.name: p.read_bytes() for p in sorted((dataset.root / "clips").rglob("*.safetensors"))}
    assert rebuilt.keys() == reference.keys() and rebuilt == reference
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_other_config_is_refused(dataset):
    other = PreprocessConfig(max_frames=7)
    with pytest.raises(InputError, match="other settings"):
        preprocess(dataset.src, dataset.root, other, workers=1, progress=False)


# --- bad input -----------------------------------------------------------------------------------

def _write_noise_video(path: Path, frames: int = 10, size: int = 128) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size)[None, :, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = np.clip(ramp + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_frame_count_is_known_even_when_the_container_gives_none(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"  # Matroska stores no frame count: the packets are counted
    _write_noise_video(path, frames=7, size=64)
    assert probe_video(path).frames == 7


BAD = {"corrupt": "corrupt.mp4", "truncated": "truncated.mp4", "empty": "empty.mp4", "noface": "noface.mp4"}
GOOD = {"good", "seq"}


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A source tree of good and bad clips, preprocessed once: (src, out, manifest, failures)."""
    src = tmp_path_factory.mktemp("messy_src")
    out = tmp_path_factory.mktemp("messy_out") / "ds"
    real = (ASSETS / "videos" / "grid_lbax4n.mp4").read_bytes()
    (src / "good.mp4").write_bytes(real)
    (src / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    (src / "truncated.mp4").write_bytes(real[: len(real) // 5])
    (src / "empty.mp4").write_bytes(b"")
    _write_noise_video(src / "noface.mp4")
    (src / "seq").mkdir()
    for i in range(4):
        shutil.copy(ASSETS / "faces" / "02_grace_hopper.jpg", src / "seq" / f"{i:04d}.jpg")
    (src / "notes.txt").write_text("not a clip")
    manifest, failures = preprocess(src, out, CONFIG, workers=1, progress=False)
    return src, out, manifest, failures


def test_bad_clips_are_skipped_and_listed(messy):
    src, out, manifest, failures = messy
    assert {c.info.clip_id for c in manifest.clips} == GOOD
    assert set(failures) == set(BAD)
    for clip_id, name in BAD.items():
        assert name in failures[clip_id], failures[clip_id]  # the reason names the file
        assert not clip_path(out, clip_id).exists()
    assert "no face" in failures["noface"]
    assert "truncated" in failures["truncated"]
    logged = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {r["clip_id"]: r["reason"] for r in logged} == failures and len(logged) == len(BAD)
    seq = next(c.info for c in manifest.clips if c.info.clip_id == "seq")
    assert (seq.frames, seq.source_frames, seq.fps, seq.source) == (4, 4, 0.0, "seq")
    assert (seq.source_width, seq.source_height) == (512, 600)


def test_failed_clips_are_retried_only_when_asked(messy, tmp_path):
    src, out = tmp_path / "src", tmp_path / "ds"
    shutil.copytree(messy[0], src)
    shutil.copytree(messy[1], out)
    shutil.copy(ASSETS / "videos" / "grid_swiz3n.mp4", src / "empty.mp4")  # the empty clip gets fixed
    good = _mtimes(out)

    manifest, failures = preprocess(src, out, CONFIG, workers=1, progress=False)
    assert set(failures) == set(BAD)  # not retried: still listed, still absent
    assert {c.info.clip_id for c in manifest.clips} == GOOD
    assert len((out / "failures.jsonl").read_text().splitlines()) == len(BAD)  # nothing appended
    assert _mtimes(out) == good

    manifest, failures = preprocess(src, out, CONFIG, workers=1, progress=False, retry_failed=True)
    assert set(failures) == set(BAD) - {"empty"}
    assert {c.info.clip_id for c in manifest.clips} == GOOD | {"empty"}
    assert len((out / "failures.jsonl").read_text().splitlines()) == len(BAD) - 1
    assert {k: v for k, v in _mtimes(out).items() if k in good} == good  # finished clips not redone


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        preprocess(tmp_path / "absent", tmp_path / "out", CONFIG, progress=False)
    (tmp_path / "src").mkdir()
    with pytest.raises(InputError, match="no videos"):
        preprocess(tmp_path / "src", tmp_path / "out", CONFIG, progress=False)


# --- clip discovery and splits ---------------------------------------------------------------------

def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")


def test_find_clips_voxceleb_tree(tmp_path):
    _touch(tmp_path, "id001/vidA/00001.mp4", "id001/vidA/00002.mp4", "id001/vidB/00001.mp4",
           "id002/vidC/00001.MP4", "id003/vidD/frames/0001.jpg", "id003/vidD/frames/0002.jpg",
           "id002/.hidden.mp4", ".cache/id009/x.mp4", "id002/readme.txt")
    jobs = find_clips(tmp_path, identity_level=0)
    assert [(j.clip_id, j.identity) for j in jobs] == [
        ("id001/vidA/00001", "id001"), ("id001/vidA/00002", "id001"), ("id001/vidB/00001", "id001"),
        ("id002/vidC/00001", "id002"), ("id003/vidD/frames", "id003"),
    ]
    assert jobs[-1].source == tmp_path / "id003/vidD/frames" and jobs[3].source.name == "00001.MP4"
    assert [j.identity for j in find_clips(tmp_path, identity_level=1)] == ["vidA", "vidA", "vidB", "vidC", "vidD"]


def test_find_clips_flat_folder(tmp_path):
    _touch(tmp_path, "alice.mp4", "bob.mov", "carol/0001.png")
    jobs = find_clips(tmp_path, identity_level=0)
    assert [(j.clip_id, j.identity) for j in jobs] == [("alice", "alice"), ("bob", "bob"), ("carol", "carol")]


def test_assign_splits_properties():
    rng = np.random.default_rng(0)
    for n in range(1, 41):
        ids = [f"id{i:03d}" for i in range(n)]
        for val, test in [(0.1, 0.1), (0.0, 0.2), (0.3, 0.3), (0.5, 0.5), (float(rng.uniform(0.01, 0.5)), 0.05)]:
            split = assign_splits(ids, val, test, seed=3)
            assert set(split) == set(ids) and set(split.values()) <= set(SPLITS)
            shuffled = list(rng.permutation(ids)) + ids[: n // 2]  # order and repeats do not matter
            assert assign_splits(shuffled, val, test, seed=3) == split
            counts = {s: sum(v == s for v in split.values()) for s in SPLITS}
            assert counts["train"] >= 1
            if n >= 3:
                assert counts["test"] >= 1
            n_test, n_val = int(np.ceil(n * test)), int(np.ceil(n * val))
            if n_test + n_val <= n - 1:  # room for a training identity: the fractions are exact
                assert (counts["test"], counts["val"]) == (n_test, n_val)
    ids = [f"id{i:03d}" for i in range(30)]
    assert assign_splits(ids, 0.1, 0.1, seed=0) != assign_splits(ids, 0.1, 0.1, seed=1)
    assert assign_splits([], 0.1, 0.1, seed=0) == {}
