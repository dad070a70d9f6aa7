"""The torch face mesh (marionette.landmarks.torch_mesh) against MediaPipe's own points.

tests/face_mesh_reference.json (tools/make_face_mesh_fixture.py) holds what mediapipe 0.10.21's
FaceMesh(refine_landmarks=True) found on tier-A media: 10 stills and 5 clip frames in image mode,
and the 25th frame of a GRID clip tracked in video mode. Errors are in pixels of the face scaled to
256 px wide (the reference mesh's box), over the 478 points (x, y). Measured with torch 2.13 on
the CPU: image mode, mean 0.001-0.008 px per face, worst point 0.021 px (the fixture's rounding to
0.001 image px is up to 0.0015 px of that); the tracked frame, mean 0.055 px, worst point 0.37 px
(tracking feeds each frame's points into the next frame's crop, so float differences of 1e-4 px
grow a little, without drifting: 0.02-0.11 px per frame over 40 frames of other clips). The
media under ../shared/data are skipped when it is absent, those in the repository's assets/ always
run. MediaPipe is not needed.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from marionette.errors import InputError
from marionette.landmarks.mesh import MESH_BACKEND_ENV, FaceMesh, frame_chunks, mesh_backend, mesh_placement
from marionette.landmarks.tflite_net import TfliteNet
from marionette.landmarks.torch_mesh import TorchFaceMesh
from marionette.media import iter_video, load_image

REPO = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((Path(__file__).with_name("face_mesh_reference.json")).read_text())
STILLS = [c for c in REFERENCE["cases"] if "tracked_frames" not in c]
(TRACKED,) = [c for c in REFERENCE["cases"] if "tracked_frames" in c]
MEAN_BOUND, WORST_BOUND = 0.05, 0.25  # image mode, px at 256 px
TRACKED_MEAN_BOUND, TRACKED_WORST_BOUND = 0.25, 1.0  # video mode
BATCH_BOUND = 1e-3  # image px: video mode's detect_batch against detect frame by frame


def frames(case: dict, request: pytest.FixtureRequest, count: int) -> list[np.ndarray]:
    """The first `count` frames of a case's clip, or its still."""
    root, rest = case["source"].split("/", 1)
    path = (REPO / "assets" if root == "assets" else request.getfixturevalue("shared_data")) / rest
    if path.suffix == ".jpg":
        return [load_image(path)]
    return list(itertools.islice(iter_video(path), count))


def errors(found: list, reference: list[list[float]]) -> list[tuple[float, float]]:
    """(mean, worst) point distance of each face, in px at 256 px face width; same count asserted."""
    assert len(found) == len(reference)
    result = []
    for face, points in zip(found, reference):
        points = np.array(points).reshape(478, 3)
        scale = 256 / np.ptp(points[:, 0])
        distance = np.linalg.norm(face.mesh[:, :2] - points[:, :2], axis=1) * scale
        result.append((distance.mean(), distance.max()))
        assert np.abs(face.mesh[:, 2] - points[:, 2]).mean() * scale < MEAN_BOUND  # depth too
    return result


@pytest.fixture(scope="module")
def mesh() -> TorchFaceMesh:
    return TorchFaceMesh(max_faces=REFERENCE["max_faces"], min_confidence=REFERENCE["min_confidence"])


@pytest.mark.parametrize("case", STILLS, ids=[f"{c['source'].rsplit('/', 1)[1]}" for c in STILLS])
def test_image_mode_matches_mediapipe(case: dict, mesh: TorchFaceMesh, request: pytest.FixtureRequest) -> None:
    image = frames(case, request, case.get("frame", 0) + 1)[-1]
    for mean, worst in errors(mesh.detect(image), case["faces"]):
        assert mean < MEAN_BOUND and worst < WORST_BOUND, (mean, worst)


def test_batch_matches_mediapipe(mesh: TorchFaceMesh, request: pytest.FixtureRequest) -> None:
    """The GRID frames (all 360x288, in the repository) in one batch."""
    cases = [c for c in STILLS if c["source"].startswith("assets/videos/grid_")]
    batch = np.stack([frames(c, request, c["frame"] + 1)[-1] for c in cases])
    for found, case in zip(mesh.detect_batch(batch), cases):
        for mean, worst in errors(found, case["faces"]):
            assert mean < MEAN_BOUND and worst < WORST_BOUND, (case["source"], mean, worst)


def test_video_mode_tracks_like_mediapipe(request: pytest.FixtureRequest) -> None:
    clip = frames(TRACKED, request, TRACKED["tracked_frames"])
    with FaceMesh(video=True, max_faces=1, backend="torch") as tracker:
        found = [tracker.detect(frame) for frame in clip]
    assert all(len(faces) == 1 for faces in found)
    ((mean, worst),) = errors(found[-1], TRACKED["faces"])
    assert mean < TRACKED_MEAN_BOUND and worst < TRACKED_WORST_BOUND, (mean, worst)


GRID = "assets/videos/grid_swiz3n.mp4"


@pytest.mark.parametrize(("sources", "max_faces", "gap"), [
    ((GRID,), 1, ()),  # the detector's result used on the first frame only
    ((GRID,), 2, range(12, 16)),  # every frame's associated; the face lost on 4 grey frames, found again
    ((GRID, "assets/videos/grid_lbax4n.mp4"), 4, ()),  # two clips side by side: two faces tracked
    (("shared/videos/lp_d3.mp4",), 2, ()),  # head turns
], ids=["grid-1", "grid-gap-2", "two-faces-4", "lp_d3-2"])
def test_video_batches_find_what_frame_by_frame_tracking_does(sources: tuple[str, ...], max_faces: int, gap: range,
                                                              request: pytest.FixtureRequest) -> None:
    """Video mode's detect_batch (the detector on a chunk's frames in one batch, then the landmark
    model frame by frame) against detect frame by frame on a fresh tracker, over 40 frames in chunks
    of MESH_BATCH: the same faces, points within BATCH_BOUND image px. Measured with torch 2.13 on
    the CPU: equal to the bit (without detecting a track's first frame again: up to 0.3 px)."""
    clip = np.concatenate([np.stack(frames({"source": source}, request, 40)) for source in sources], axis=2)
    clip[list(gap)] = 128
    with FaceMesh(video=True, max_faces=max_faces, backend="torch") as tracker:
        one_by_one = [tracker.detect(frame) for frame in clip]
    with FaceMesh(video=True, max_faces=max_faces, backend="torch") as tracker:
        batched = [faces for chunk in frame_chunks(clip) for faces in tracker.detect_batch(np.stack(chunk))]
    counts = [len(faces) for faces in one_by_one]
    assert [len(faces) for faces in batched] == counts
    assert counts == [0 if t in gap else len(sources) for t in range(len(clip))]
    worst = max(np.abs(a.mesh - b.mesh).max() for found, again in zip(one_by_one, batched) for a, b in zip(found, again))
    assert worst < BATCH_BOUND, worst


def test_frame_chunks() -> None:
    """Runs of at most `size` frames of one shape, in order; a run is handed on once full."""
    small, large = np.zeros((2, 3, 3), np.uint8), np.zeros((4, 3, 3), np.uint8)
    items = [(small, 0), (small, 1), (small, 2), (large, 3), (small, 4)]
    chunks = list(frame_chunks(items, lambda item: item[0], 2))
    assert [[t for _, t in chunk] for chunk in chunks] == [[0, 1], [2], [3], [4]]
    endless = frame_chunks(itertools.count(), lambda item: small, 3)
    assert next(endless) == [0, 1, 2]


def test_no_face(mesh: TorchFaceMesh) -> None:
    assert mesh.detect(np.full((120, 160, 3), 128, np.uint8)) == []


def test_bad_inputs(tmp_path: Path, mesh: TorchFaceMesh) -> None:
    damaged = tmp_path / "face_landmarks.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError) as e:
        TfliteNet(damaged)
    assert str(damaged) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="uint8 RGB"):
        mesh.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="backend"):
        FaceMesh(backend="tflite")


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto falls back to torch without mediapipe; asking for mediapipe then, or for an unknown
    backend, is one line."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if not installed: its import fails
    monkeypatch.delenv(MESH_BACKEND_ENV, raising=False)
    assert mesh_backend() == "torch"
    monkeypatch.setenv(MESH_BACKEND_ENV, "mediapipe")
    with pytest.raises(InputError, match=r'pip install -e "\.\[mediapipe\]"') as e:
        FaceMesh()
    assert "\n" not in str(e.value)
    monkeypatch.setenv(MESH_BACKEND_ENV, "tflite")
    with pytest.raises(InputError, match=f"{MESH_BACKEND_ENV}=tflite: must be one of auto, mediapipe, torch"):
        FaceMesh()
    with FaceMesh(backend="torch") as mesh:  # told, it ignores the environment
        assert mesh.backend == "torch"


def test_device_choice(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """MediaPipe runs on the CPU: a GPU picks torch for an auto backend; mediapipe named keeps the CPU,
    with one warning line where the GPU was named rather than found by auto."""
    import types

    import torch

    import marionette.devices

    monkeypatch.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))  # as if installed
    monkeypatch.delenv(MESH_BACKEND_ENV, raising=False)
    assert mesh_placement(device="cpu") == ("mediapipe", "cpu")
    monkeypatch.setattr(marionette.devices, "resolve_device", lambda setting: torch.device("cuda"))  # as if a GPU
    assert mesh_placement(device="auto") == mesh_placement(device="cuda") == ("torch", "cuda")
    assert mesh_placement("torch", "cuda") == ("torch", "cuda")
    assert not caplog.records
    monkeypatch.setenv(MESH_BACKEND_ENV, "mediapipe")
    assert mesh_placement(device="auto") == ("mediapipe", "cpu") and not caplog.records
    assert mesh_placement(device="cuda") == ("mediapipe", "cpu")
    (record,) = caplog.records
    assert record.getMessage() == f"device=cuda: the mediapipe face mesh runs on the CPU ({MESH_BACKEND_ENV}=torch runs on cuda)"


def test_reenactment_on_the_torch_mesh_draws_what_mediapipes_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole pipeline on the torch mesh (the target's detection, the driver's tracking, the driven
    mesh, the warp): 12 frames of a real GRID clip onto a real portrait, every output frame's face found
    again; where MediaPipe is installed, the same run on it draws frames within half a grey level."""
    import importlib.util

    from marionette.inference.pipeline import ReenactConfig, ReenactPipeline

    backends = ("torch", "mediapipe") if importlib.util.find_spec("mediapipe") else ("torch",)
    outputs = {}
    for backend in backends:
        monkeypatch.setenv(MESH_BACKEND_ENV, backend)
        out = tmp_path / backend
        config = ReenactConfig(renderer="warp", size=128, paste_back=False, max_frames=12)
        ReenactPipeline(config).run([str(REPO / "assets/faces/02_grace_hopper.jpg")],
                                    str(REPO / "assets/videos/grid_lbax4n.mp4"), out, progress=False)
        outputs[backend] = np.stack([load_image(p) for p in sorted(out.glob("*.png"))]).astype(float)
    assert outputs["torch"].shape == (12, 128, 128, 3)
    with FaceMesh(backend="torch") as mesh:
        assert all(len(mesh.detect(frame.astype(np.uint8))) == 1 for frame in outputs["torch"])
    if "mediapipe" in outputs:
        difference = np.abs(outputs["torch"] - outputs["mediapipe"]).mean(axis=(1, 2, 3))
        # measured 0.03-0.06 grey levels per frame (torch 2.13, CPU): points 0.01-0.6 px apart
        assert 0 < difference.max() < 0.5, difference.round(2)  # above 0: two backends really ran
