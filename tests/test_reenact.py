"""Reenactment pipeline: warp renderer, streaming driver, outputs (mp4 + audio, gif, png), bad input."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from clips import make_clip
from PIL import Image

from marionette.errors import InputError
from marionette.inference.io import FrameWriter, has_audio, to_i420
from marionette.inference.pipeline import STAGES, ReenactConfig, ReenactPipeline
from marionette.landmarks.crop import crop_image, head_box
from marionette.media import iter_video
from marionette.provenance import Watermark, container_tags, verify
from marionette.warp import WarpRenderer

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TARGET = str(ASSETS / "faces" / "02_grace_hopper.jpg")
DRIVER = ASSETS / "videos" / "grid_lbax4n.mp4"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("driver") / "driver.mp4")


def test_warp_with_the_targets_own_mesh_is_the_identity(hopper) -> None:
    image, face = hopper
    box = head_box(face.mesh, 1.8, -0.1)
    crop, mesh = crop_image(image, box, 128), box.to_crop(face.mesh, 128)
    renderer = WarpRenderer(128)
    renderer.prepare(crop[None], mesh[None])
    assert np.array_equal(renderer.render(mesh), crop)
    moved = mesh.copy()
    moved[:, 0] += 4.0  # the face moves right by 4 px; the crop border stays put
    out = renderer.render(moved)
    centre = (slice(40, 90), slice(40, 90))
    shifted = np.abs(out[centre[0], 44:94].astype(int) - crop[centre[0], 40:90]).mean()
    assert shifted < np.abs(out[centre].astype(int) - crop[centre]).mean() / 2
    assert np.array_equal(out[0], crop[0]) and np.array_equal(out[:, 0], crop[:, 0])


def test_mp4_output_is_tagged_playable_and_complete(driver: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.mp4"
    # motion from the driver's first frame on the target's own expression: the first frame is the target as it is
    config = ReenactConfig(size=128, reference="first", expression="target")
    stats = ReenactPipeline(config).run([TARGET], str(driver), out, progress=False)
    assert stats.frames == 12 and stats.decoded == 12 and 0 < stats.wall and 0 < stats.cpu
    assert all(stats.seconds[stage] > 0 for stage in STAGES)  # every stage timed, in whichever thread it ran
    assert f"{12 / stats.wall:.1f} frames/s" in stats.table()
    with av.open(str(out)) as container:
        assert "synthetic media: made by marionette" in container.metadata.get("comment", "")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    photo = np.asarray(Image.open(TARGET))
    assert len(frames) == 12 and frames[0].shape == photo.shape  # pasted back into the photo
    assert np.abs(frames[0].astype(int) - photo).mean() < 6  # first frame: the target as it is
    assert not list(tmp_path.glob(".*"))  # no temp file left
    report = verify(out)  # marked as synthetic twice: container tag and watermark
    assert report.tag is not None and report.watermark.present
    assert not verify(DRIVER).watermark.present and verify(DRIVER).tag is None


def test_large_target_photos_are_scaled_down_to_max_side(driver: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.mp4"
    ReenactPipeline(ReenactConfig(size=128, max_side=300)).run([TARGET], str(driver), out, progress=False)
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (300, 256, 3)  # the 512 x 600 photo at its longest side 300


class FakeWebcam:
    """Stands in for cv2.VideoCapture: serves the bundled clip's frames (BGR) round and round, then,
    after `stop_after` frames, raises KeyboardInterrupt as Ctrl-C would (no camera on CI)."""

    stop_after: int | None = None
    opened = True
    pace = 0.0  # seconds per frame

    def __init__(self, index: int) -> None:
        self.frames = [f[..., ::-1].copy() for f in itertools.islice(iter_video(DRIVER), 10)]
        self.served, self.released = 0, False
        FakeWebcam.last = self

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self) -> tuple[bool, np.ndarray]:
        if self.served == self.stop_after:
            raise KeyboardInterrupt
        time.sleep(self.pace)
        self.served += 1
        return True, self.frames[self.served % len(self.frames)]

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_timed_frames_keep_their_times(tmp_path: Path, suffix: str) -> None:
    times = [0.0, 0.1, 0.25, 0.7, 0.75]  # a live driver's uneven pace, seconds
    out = tmp_path / f"timed{suffix}"
    with FrameWriter(out, 25.0, {"comment": "test"}) as writer:
        for i, t in enumerate(times):
            writer.write(np.full((32, 48, 3), 40 * i, np.uint8), at=t)
    with av.open(str(out)) as container:
        decoded = [round(float(f.time), 3) for f in container.decode(video=0)]
    if suffix == ".gif":  # GIF stores per-frame durations in hundredths of a second
        assert [round(t, 2) for t in decoded] == times
    else:
        assert decoded == times


def test_mp4_output_keeps_the_frames_colours(tmp_path: Path) -> None:
    """Pure colour patches come back from the writer's mp4 as they went in (a swapped chroma plane, a
    full-range or BT.709 matrix moves them by 10 levels or more)."""
    patches = np.zeros((64, 96, 3), np.uint8)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (16, 16, 16), (224, 172, 140)]):
        patches[:, 16 * i:16 * (i + 1)] = colour
    out = tmp_path / "colours.mp4"
    with FrameWriter(out, 25, {}) as writer:
        for _ in range(3):
            writer.write(patches)
    decoded = list(iter_video(out))
    assert len(decoded) == 3
    inner = np.stack(decoded).reshape(3, 64, 6, 16, 3)[:, 8:-8, :, 4:-4].astype(int)  # away from chroma edges
    assert np.abs(inner - patches.reshape(64, 6, 16, 3)[8:-8, :, 4:-4]).max() <= 4


def test_i420_conversion_matches_swscale() -> None:
    """The writer's own RGB -> I420 is swscale's (what PyAV would do) to rounding: luma per pixel, chroma of
    each 2x2 block's mean (1 px red and blue stripes: purple, where one pixel's chroma would read red)."""
    stripes = np.zeros((64, 96, 3), np.uint8)
    stripes[:, ::2], stripes[:, 1::2] = (255, 0, 0), (0, 0, 255)
    for frame in [*itertools.islice(iter_video(DRIVER), 3), stripes]:
        ours = to_i420(frame).astype(int)
        theirs = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
        h = frame.shape[0]
        assert np.abs(ours[:h] - theirs[:h]).max() <= 1  # luma
        assert np.abs(ours[h:] - theirs[h:]).mean() < 0.3 and np.abs(ours[h:] - theirs[h:]).max() <= 6  # chroma


def gif_local_colour_tables(data: bytes) -> int:
    """How many frames of a GIF carry a colour table of their own (walks the file's blocks)."""

    def table_bytes(packed: int) -> int:  # a descriptor's flags: table present, its size
        return 3 << ((packed & 7) + 1) if packed & 0x80 else 0

    pos, count = 13 + table_bytes(data[10]), 0
    while data[pos] != 0x3B:  # the trailer
        if data[pos] == 0x21:  # an extension: introducer, label, sub-blocks
            pos += 2
        else:  # an image: descriptor, its colour table, LZW code size, sub-blocks
            count += bool(data[pos + 9] & 0x80)
            pos += 10 + table_bytes(data[pos + 9]) + 1
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    return count


def test_gif_output_has_one_palette_is_small_and_stays_marked(tmp_path: Path) -> None:
    frames = [Watermark().embed(f) for f, _ in zip(iter_video(DRIVER), range(12))]  # camera noise in every pixel
    out = tmp_path / "clip.gif"
    with FrameWriter(out, 25, container_tags("warp")) as writer:
        for frame in frames:
            writer.write(frame)
    data = out.read_bytes()
    assert data[10] & 0x80 and gif_local_colour_tables(data) == 0  # one global palette, none per frame
    pixels = frames[0].shape[0] * frames[0].shape[1] * len(frames)
    assert len(data) < 0.127 * pixels  # 3 MB for 90 frames at 512 x 512 px, per pixel
    decoded = list(iter_video(out))
    assert len(decoded) == len(frames)
    assert min(cv2.PSNR(d, f) for d, f in zip(decoded, frames)) > 30  # kept (transparent) pixels composed right
    report = verify(out)
    assert report.tag is not None and report.watermark.present and report.manifest.valid


@pytest.mark.parametrize("how", ["ctrl-c", "max_frames"])
def test_webcam_session_ends_with_ctrl_c_or_max_frames_and_keeps_the_output(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam)
    monkeypatch.setattr(FakeWebcam, "stop_after", 7 if how == "ctrl-c" else None)
    monkeypatch.setattr(FakeWebcam, "pace", 0.1)
    out = tmp_path / "live.mp4"
    config = ReenactConfig(size=128, paste_back=False, max_frames=0 if how == "ctrl-c" else 5)
    pipeline = ReenactPipeline(config)
    assert pipeline.renderer_name == "neural"  # the default: the shipped generator
    try:
        stats = pipeline.run([TARGET], "0", out, progress=False)
    except KeyboardInterrupt:  # (re-raised, it would stop the whole pytest session)
        pytest.fail("Ctrl-C ended the webcam session by losing its recording")
    assert pipeline.renderer_name == "warp"  # a webcam's default: the renderer that keeps up in real time
    assert stats.frames == (7 if how == "ctrl-c" else 5) and FakeWebcam.last.released
    assert not [t for t in threading.enumerate() if t.name.startswith("marionette-")]
    assert len(list(iter_video(out))) == stats.frames and verify(out).watermark.present
    with av.open(str(out)) as container:  # written at the pace the frames came, not at 25 frames/s
        assert np.diff([float(f.time) for f in container.decode(video=0)]).min() >= FakeWebcam.pace - 0.002
    monkeypatch.setattr(FakeWebcam, "opened", False)
    with pytest.raises(InputError, match="webcam 1: cannot be opened"):
        ReenactPipeline(config).run([TARGET], "1", tmp_path / "none.mp4", progress=False)
    assert not (tmp_path / "none.mp4").exists()


def test_webcam_with_the_generator_draws_some_frames_and_carries_the_rest(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`renderer=neural` asked for with a webcam: its frames come one at a time, and on the CPU most carry
    the generator's last correction (a call with no frame to draw); every frame is written, marked."""
    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam)
    monkeypatch.setattr(FakeWebcam, "stop_after", None)
    out = tmp_path / "live.mp4"
    pipeline = ReenactPipeline(ReenactConfig(renderer="neural", size=128, paste_back=False, max_frames=6))
    stats = pipeline.run([TARGET], "0", out, progress=False)
    assert pipeline.renderer_name == "neural" and pipeline.renderer.every > 1 and stats.frames == 6
    assert len(list(iter_video(out))) == 6 and verify(out).watermark.present


def test_webcam_neutral_face_is_estimated_over_its_first_frames_then_set_by_the_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A webcam's relative-mode reference is re-estimated from all its frames so far until
    neutral_seconds have passed, then kept; set_neutral() makes the next frame drawn the neutral face."""
    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam)
    config = ReenactConfig(renderer="warp", size=128, paste_back=False, max_frames=9, neutral_seconds=0.16)  # 4 frames at 25/s
    pipeline = ReenactPipeline(config)
    windows: list[np.ndarray] = []  # the driver meshes each estimate of the reference used
    estimate, render = pipeline.driving.reference, pipeline.renderer.render_batch

    def reference(meshes: np.ndarray, *args: object) -> object:
        windows.append(meshes.copy())
        return estimate(meshes, *args)

    def rendering(driven: np.ndarray, mouths: list | None = None) -> np.ndarray:
        rendering.calls += 1
        if rendering.calls == 6:  # the user presses the neutral key while the 6th frame is drawn
            pipeline.set_neutral()
        return render(driven, mouths)

    rendering.calls = 0
    monkeypatch.setattr(pipeline.driving, "reference", reference)
    monkeypatch.setattr(pipeline.renderer, "render_batch", rendering)
    stats = pipeline.run([TARGET], "0", tmp_path / "live.mp4", progress=False)
    assert stats.frames == 9 and [len(w) for w in windows] == [1, 2, 3, 4, 1]
    assert all(np.array_equal(windows[k][:k], windows[k - 1]) for k in range(1, 4))  # the window grows
    assert not np.array_equal(windows[4][0], windows[0][0])  # the 7th frame's face, not the first one's


def test_preview_window_shows_each_frame_and_q_stops(driver: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[tuple[int, ...]] = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 4 else -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: shown.append(()))
    out = tmp_path / "previewed.mp4"
    ReenactPipeline(ReenactConfig(size=128, paste_back=False, preview=True)).run([TARGET], str(driver), out,
                                                                                  progress=False)
    assert shown == [(128, 128, 3)] * 4 + [()] and len(list(iter_video(out))) == 4  # q kept the 4 frames
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="needs a display"):
        ReenactPipeline(ReenactConfig(preview=True))


def test_driver_audio_is_copied(tmp_path: Path) -> None:
    driver = make_clip(tmp_path / "talking.mp4", audio="aac")
    out = tmp_path / "result.mp4"
    pipeline = ReenactPipeline(ReenactConfig(size=128))
    pipeline.run([TARGET], str(driver), out, progress=False)
    assert pipeline.renderer_name == "neural"  # a file driver's default: the shipped generator
    assert has_audio(driver) and has_audio(out)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def test_gif_png_and_side_by_side_outputs(driver: Path, tmp_path: Path) -> None:
    config = ReenactConfig(size=128, paste_back=False, side_by_side=True)
    ReenactPipeline(config).run([TARGET], str(driver), tmp_path / "r.gif", progress=False)
    with Image.open(tmp_path / "r.gif") as gif:
        assert gif.n_frames == 12 and gif.size[1] == 128 and gif.size[0] > 3 * 128
    ReenactPipeline(config).run([TARGET], str(driver), tmp_path / "frames", progress=False)
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 12
    for path in (tmp_path / "r.gif", pngs[0]):
        report = verify(path)
        assert report.tag is not None and report.watermark.present, path


def test_faceless_driver_frames_hold_the_last_landmarks(tmp_path: Path) -> None:
    driver = make_clip(tmp_path / "gaps.mp4", blank=frozenset({4, 5, 6}))
    stats = ReenactPipeline(ReenactConfig(size=128, paste_back=False)).run([TARGET], str(driver),
                                                                          tmp_path / "r.mp4", progress=False)
    assert stats.frames == 12 and stats.faceless == 3


def test_k_targets_and_odd_image_modes(driver: Path, tmp_path: Path) -> None:
    photo = Image.open(TARGET)
    grey, rgba, cmyk = tmp_path / "grey.png", tmp_path / "rgba.png", tmp_path / "cmyk.jpg"
    photo.convert("L").save(grey)
    photo.convert("RGBA").save(rgba)
    photo.convert("CMYK").save(cmyk)
    pipeline = ReenactPipeline(ReenactConfig(size=128, paste_back=False))
    stats = pipeline.run([str(grey), str(rgba), str(cmyk)], str(driver), tmp_path / "r.mp4", progress=False)
    assert len(pipeline.targets) == 3 and stats.frames == 12


def test_bad_inputs_give_one_line_errors_and_no_output(driver: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(blank)
    noface = make_clip(tmp_path / "noface.mp4", frames=5, blank=frozenset(range(5)))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 1000)
    cases = [
        ([str(blank)], str(driver), tmp_path / "a.mp4", "no face found"),
        ([TARGET], str(noface), tmp_path / "b.mp4", "no face found in any driver frame"),
        ([TARGET], str(corrupt), tmp_path / "c.mp4", "corrupt or unreadable video"),
        ([TARGET], str(tmp_path / "missing.mp4"), tmp_path / "d.mp4", "no such file"),
        ([TARGET], str(driver), tmp_path / "e.avi", "unsupported output"),
        ([TARGET], str(driver), Path("/proc/forbidden/x.mp4"), "cannot write output"),
    ]
    for targets, drv, out, reason in cases:
        with pytest.raises(InputError, match=reason):
            ReenactPipeline(ReenactConfig(size=128)).run(targets, drv, out, progress=False)
        assert not out.exists()
        assert not [t for t in threading.enumerate() if t.name.startswith("marionette-")]  # no stage left running
    assert not list(tmp_path.glob(".*"))  # no half-written file under any name
