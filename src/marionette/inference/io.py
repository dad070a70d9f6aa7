"""Streaming inputs and outputs of reenactment: driver sources (video, image, folder, webcam) and
output writers (H.264 mp4 with the driver's audio, GIF, PNG frames), all written atomically."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from marionette.errors import InputError
from marionette.media import (
    IMAGE_EXTS, UMASK, atomic_path, iter_video, list_image_sequence, load_image, probe_video, save_image,
)
from marionette.provenance import MOV_MUXER_OPTIONS, gif_comment, png_info, sign_output

MILLISECOND = Fraction(1, 1000)  # time base of timed (live) frames


@dataclass(frozen=True)
class DriverSource:
    """A driver, streamed frame by frame (never held whole in memory)."""

    spec: str  # what the user gave: a path or a webcam index
    fps: float  # frame rate of the output
    audio: Path | None  # a file whose audio track goes into the output, if it has one

    @property
    def live(self) -> bool:
        """A webcam: it has no end of its own (Ctrl-C or max_frames ends it)."""
        return self.spec.isdigit()

    def frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB frames."""
        if self.live:
            yield from _webcam(int(self.spec))
            return
        path = Path(self.spec)
        if path.is_dir():
            for p in list_image_sequence(path):
                yield load_image(p)
        elif path.suffix.lower() in IMAGE_EXTS:
            yield load_image(path)
        else:
            yield from iter_video(path)


def open_driver(spec: str, default_fps: float = 25.0) -> DriverSource:
    """A video file, an image, a folder of images, or a webcam index ("0")."""
    if spec.isdigit():
        return DriverSource(spec, default_fps, None)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not list_image_sequence(path):
            raise InputError(f"{path}: folder holds no images")
        return DriverSource(spec, default_fps, None)
    if path.suffix.lower() in IMAGE_EXTS:
        return DriverSource(spec, default_fps, None)
    info = probe_video(path)
    return DriverSource(spec, info.fps or default_fps, path if has_audio(path) else None)


def has_audio(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.FFmpegError:
        return False


def _webcam(index: int) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise InputError(f"webcam {index}: cannot be opened")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[..., ::-1].copy()
    finally:
        capture.release()


class FrameWriter:
    """Writes frames to `path` (.mp4/.mov/.mkv: H.264 + the driver's audio; .gif; or a folder of
    PNGs when `path` has no suffix), each carrying `tags` in its metadata. Nothing appears under
    `path` unless `close()` completes; an exception inside the `with` block removes the partial
    output. GIF frames are kept (palettized) until the end: GIF is for short clips."""

    def __init__(self, path: Path, fps: float, tags: dict[str, str], audio: Path | None = None, crf: int = 18):
        self.path, self.fps, self.tags, self.audio, self.crf = Path(path), fps, tags, audio, crf
        self.kind = "png" if self.path.suffix == "" else self.path.suffix.lower().lstrip(".")
        if self.kind not in ("mp4", "mov", "mkv", "gif", "png"):
            raise InputError(f"{self.path}: unsupported output (use .mp4, .mov, .mkv, .gif or a folder for PNG frames)")
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._gif: list[Image.Image] = []
        self._times: list[int] | None = None  # milliseconds of timed frames
        self.frames = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "png":
                self._tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}."))
            else:
                self._tmp = self._stack.enter_context(atomic_path(self.path))
        except OSError as e:
            raise InputError(f"{self.path}: cannot write output ({e.strerror})") from None

    def write(self, frame: np.ndarray, at: float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame. `at`: its time in seconds since the first frame,
        for live drivers (a webcam's frames come as fast as they are made); None: frames follow at
        `fps`. A writer takes one kind or the other throughout."""
        if self.frames == 0:
            self._times = [] if at is not None else None
        assert (at is None) == (self._times is None), "mixed timed and untimed frames"
        if self._times is not None:  # milliseconds, strictly increasing
            at_ms = max(round(at * 1000), self._times[-1] + 1) if self._times else 0
            self._times.append(at_ms)
        if self.kind == "png":
            save_image(self._tmp / f"{self.frames:06d}.png", frame, pnginfo=png_info(self.tags))
        elif self.kind == "gif":
            self._gif.append(Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT))
        else:
            if frame.shape[0] % 2 or frame.shape[1] % 2:  # yuv420p needs even sizes
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            if self._container is None:
                self._open(frame.shape[1], frame.shape[0])
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if self._times is not None:
                video_frame.pts, video_frame.time_base = self._times[-1], MILLISECOND
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        fmt = {"mkv": "matroska"}.get(self.kind, self.kind)
        options = MOV_MUXER_OPTIONS if self.kind in ("mp4", "mov") else {}  # keep every metadata key
        self._container = av.open(str(self._tmp), "w", format=fmt, container_options=options)
        self._container.metadata.update(self.tags)
        rate = round(self.fps) if abs(self.fps - round(self.fps)) < 1e-3 else self.fps
        # ours: preset veryfast keeps encoding a few ms per frame, for real-time use on a CPU
        self._stream = self._container.add_stream("libx264", rate=rate,
                                                  options={"crf": str(self.crf), "preset": "veryfast"})
        self._stream.pix_fmt = "yuv420p"
        self._stream.width, self._stream.height = width, height
        if self._times is not None:  # timed frames: their pts are milliseconds
            self._stream.codec_context.time_base = MILLISECOND
        if self.audio is not None:
            self._add_audio()

    def _add_audio(self) -> None:
        """Declare the driver's audio track before any packet is written (the header needs it)."""
        self._audio_in = self._stack.enter_context(av.open(str(self.audio)))
        try:
            self._audio_out = self._container.add_stream_from_template(self._audio_in.streams.audio[0])
        except (ValueError, av.FFmpegError):
            raise InputError(f"{self.audio}: its audio cannot be copied into {self.path.suffix}") from None

    def _copy_audio(self) -> None:
        """Remux the driver's audio packets unchanged."""
        for packet in self._audio_in.demux(self._audio_in.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = self._audio_out
                self._container.mux(packet)

    def close(self) -> None:
        if self.frames == 0:
            raise InputError(f"{self.path}: no frame was produced")
        if self.kind == "png":
            sign_output(self._tmp, self.path, self.tags)  # C2PA manifest in each frame
            if self.path.exists():
                shutil.rmtree(self.path)
            self._tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700 folders
            self._tmp.rename(self.path)
            return
        if self.kind == "gif":  # PIL, not ffmpeg: ffmpeg's GIF muxer drops every metadata key
            first, *rest = self._gif
            duration = (round(1000 / self.fps) if self._times is None
                        else [*np.diff(self._times).tolist(), round(1000 / self.fps)])  # ms per frame
            first.save(self._tmp, format="GIF", save_all=True, append_images=rest, loop=0,
                       duration=duration, comment=gif_comment(self.tags))
        else:
            for packet in self._stream.encode():
                self._container.mux(packet)
            if self.audio is not None:
                self._copy_audio()
            self._container.close()
            self._container = None
        sign_output(self._tmp, self.path, self.tags)  # C2PA manifest, signed
        self._stack.close()  # moves the finished file into place

    def abort(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        if self.kind == "png":
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            with contextlib.suppress(Exception):
                self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
