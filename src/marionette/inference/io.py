"""Streaming inputs and outputs of reenactment: driver sources (video, GIF, image, folder, webcam) and
output writers (H.264 mp4 with the driver's audio, GIF, PNG frames), all written atomically."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from marionette.content_credentials import write_sidecar
from marionette.errors import InputError
from marionette.media import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    atomic_folder,
    atomic_path,
    decode_video,
    list_image_sequence,
    load_image,
    probe_video,
    save_image,
    sweep_temporaries,
)
from marionette.outputs import output_kind
from marionette.provenance import MOV_MUXER_OPTIONS, gif_comment, png_info, sign_output

MILLISECOND = Fraction(1, 1000)  # time base of timed (live) frames
GIF_SAMPLES = 8  # evenly spaced frames whose pixels make a GIF's one palette
GIF_COLOURS = 255  # palette entries for pixels
GIF_KEPT = GIF_COLOURS  # the 256th entry, transparent: the pixel shows what the frames before drew
GIF_TOLERANCE = 16  # levels (any channel) a pixel may drift from what is shown before it is redrawn


@dataclass(frozen=True)
class DriverSource:
    """A driver, streamed frame by frame (never held whole in memory)."""

    spec: str  # what the user gave: a path or a webcam index
    rate: Fraction  # frame rate: the video's own (exact, e.g. 30000/1001), else DEFAULT_RATE
    audio: Path | None  # a file whose audio track goes into the output, if it has one
    announced: int = 0  # frames the container announces (0 if unknown or not a video)
    time_base: Fraction | None = None  # unit of the frames' timestamps (None: untimed, frames follow at `rate`)

    @property
    def fps(self) -> float:
        return float(self.rate)

    @property
    def live(self) -> bool:
        """A webcam: it has no end of its own (Ctrl-C or max_frames ends it)."""
        return self.spec.isdigit()

    def frames(self) -> Iterator[tuple[np.ndarray, Fraction | None]]:
        """(H, W, 3) uint8 RGB frames and their time in seconds since the driver began: a video's own
        timestamps (constant, NTSC or variable rate), a webcam's capture times; None for images."""
        if self.live:
            yield from _webcam(int(self.spec))
            return
        path = Path(self.spec)
        if path.is_dir():
            size: tuple[int, int] | None = None
            for p in list_image_sequence(path):
                frame = load_image(p)
                size = size or (frame.shape[1], frame.shape[0])
                yield _letterbox(frame, size), None  # every frame the size of the first
        elif path.suffix.lower() in IMAGE_EXTS:
            yield load_image(path), None
        else:
            start: Fraction | None = None
            for frame, at in decode_video(path):
                start = at if start is None else start
                yield frame, (at - start if at is not None and start is not None else None)


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale `image` to fit (width, height) = `size`, keeping its aspect, padded with black."""
    w, h = size
    if image.shape[:2] == (h, w):
        return image
    scale = min(w / image.shape[1], h / image.shape[0])
    sw, sh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - sw) // 2, (h - sh) // 2
    canvas[y : y + sh, x : x + sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    return canvas


DEFAULT_RATE = Fraction(25)  # frame rate of image drivers and webcams
DRIVER_VIDEO_EXTS = (*VIDEO_EXTS, ".gif")  # an animated GIF drives as a video does, at its own frame delays


def open_driver(spec: str) -> DriverSource:
    """A video file (an animated GIF too), an image, a folder of images, or a webcam index ("0")."""
    if spec.isdigit():
        return DriverSource(spec, DEFAULT_RATE, None, time_base=MILLISECOND)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        images = list_image_sequence(path)
        if not images:
            raise InputError(f"{path}: folder holds no images")
        return DriverSource(spec, DEFAULT_RATE, None, announced=len(images))
    if path.suffix.lower() in IMAGE_EXTS:
        return DriverSource(spec, DEFAULT_RATE, None, announced=1)
    if path.suffix.lower() not in DRIVER_VIDEO_EXTS:
        raise InputError(f"{path}: not a video ({', '.join(DRIVER_VIDEO_EXTS)}), image or folder of images")
    info = probe_video(path)
    return DriverSource(spec, info.rate or DEFAULT_RATE, path if has_audio(path) else None, info.frames,
                        info.time_base or MILLISECOND)


def has_audio(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.FFmpegError:
        return False


def _webcam(index: int) -> Iterator[tuple[np.ndarray, Fraction]]:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise InputError(f"webcam {index}: cannot be opened")
    start = time.perf_counter()
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[..., ::-1].copy(), Fraction(round(1000 * (time.perf_counter() - start)), 1000)
    finally:
        capture.release()


def to_i420(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB, H and W even -> (3H/2, W) uint8 I420: BT.601, limited range, as swscale converts an
    untagged frame; luma per pixel, chroma from each 2x2 block's mean colour (ours: 0.4 ms of CPU a 512x600 frame
    against swscale's 1.3, its round trip as close to the frame; OpenCV alone reads one pixel of each block)."""
    h, w = frame.shape[:2]
    i420 = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)  # (3H/2, W)
    blocks = cv2.resize(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_NEAREST)  # each 2x2 block its mean colour
    i420[h:] = cv2.cvtColor(blocks, cv2.COLOR_RGB2YUV_I420)[h:]  # the U and V planes
    return i420


class FrameWriter:
    """Writes frames to `path` (.mp4/.mov/.mkv: H.264 + the driver's audio, cut to the frames; .gif;
    .png: one frame; or a folder of PNGs when `path` has no suffix), each carrying `tags` in its metadata. Nothing
    appears under `path` unless `close()` completes (a frames folder is built beside it and renamed
    into place); an exception inside the `with` block removes the partial output. The caller checks
    first that `path` may be written (check_media_output); `replace=False` (a new output) refuses in
    one line, at the end, an output another run wrote meanwhile. GIF frames are kept (RGB) until the
    end, when one palette is made for the whole clip (see gif_frames): GIF is for short clips.

    Frames are untimed (they follow at `rate`) or timed (`write(frame, at=seconds)`): timed frames
    keep their times exactly, in units of `time_base`, so a 29.97 frames/s, variable-rate or live
    driver gives an output of the same pace and duration."""

    def __init__(self, path: Path, rate: Fraction | float, tags: dict[str, str], audio: Path | None = None,
                 crf: int = 18, time_base: Fraction = MILLISECOND, replace: bool = True):
        self.path, self.tags, self.audio, self.crf = Path(path), tags, audio, crf
        self.rate = Fraction(rate).limit_denominator(1001 * 1000)
        self.time_base = time_base
        self.kind = output_kind(self.path)
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._gif: list[np.ndarray] = []
        self._times: list[int] | None = None  # timestamps of timed frames, in time_base units
        self.frames = 0
        sweep_temporaries(self.path)  # what a killed run left
        try:
            self._tmp = self._stack.enter_context(atomic_folder(self.path, replace) if self.kind == "frames"
                                                  else atomic_path(self.path, replace))
        except OSError as e:
            raise InputError(f"{self.path}: cannot write output ({e.strerror})") from None

    def write(self, frame: np.ndarray, at: Fraction | float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame. `at`: its time in seconds (timed frames); None:
        frames follow at `rate`. A writer takes one kind or the other throughout."""
        if self.frames == 0:
            self._times = [] if at is not None else None
        assert (at is None) == (self._times is None), "mixed timed and untimed frames"
        if self._times is not None:  # strictly increasing
            pts = round(Fraction(at) / self.time_base)
            self._times.append(max(pts, self._times[-1] + 1) if self._times else pts)
        if self.kind in ("png", "frames"):
            assert self.kind == "frames" or self.frames == 0, "a .png output holds one frame"
            save_image(self._tmp / f"{self.frames:06d}.png" if self.kind == "frames" else self._tmp, frame,
                       pnginfo=png_info(self.tags))
        elif self.kind == "gif":
            if self._gif and frame.shape != self._gif[0].shape:  # every frame the size of the first
                frame = cv2.resize(frame, self._gif[0].shape[1::-1], interpolation=cv2.INTER_AREA)
            self._gif.append(frame)
        else:
            if frame.shape[0] % 2 or frame.shape[1] % 2:  # yuv420p needs even sizes
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            if self._container is None:
                self._open(frame.shape[1], frame.shape[0])
            elif (frame.shape[1], frame.shape[0]) != (self._stream.width, self._stream.height):
                frame = cv2.resize(frame, (self._stream.width, self._stream.height), interpolation=cv2.INTER_AREA)
            video_frame = av.VideoFrame.from_ndarray(to_i420(frame), format="yuv420p")
            if self._times is not None:
                video_frame.pts, video_frame.time_base = self._times[-1], self.time_base
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        fmt = {"mkv": "matroska"}.get(self.kind, self.kind)
        options = MOV_MUXER_OPTIONS if self.kind in ("mp4", "mov") else {}  # keep every metadata key
        self._container = av.open(str(self._tmp), "w", format=fmt, container_options=options)
        self._container.metadata.update(self.tags)
        # ours: preset veryfast keeps encoding a few ms per frame, for real-time use on a CPU
        self._stream = self._container.add_stream("libx264", rate=self.rate,
                                                  options={"crf": str(self.crf), "preset": "veryfast"})
        self._stream.pix_fmt = "yuv420p"
        self._stream.width, self._stream.height = width, height
        if self._times is not None:  # timed frames: their pts are in time_base units
            self._stream.codec_context.time_base = self.time_base
        if self.audio is not None:
            self._add_audio()

    def _add_audio(self) -> None:
        """Declare the driver's audio track before any packet is written (the header needs it):
        stream-copied when the container takes its codec, else transcoded to AAC."""
        self._audio_in = self._stack.enter_context(av.open(str(self.audio)))
        source = self._audio_in.streams.audio[0]
        self._transcode = source.codec_context.name not in COPYABLE_AUDIO[self.kind]
        if self._transcode:  # PyAV converts the decoded samples to what the encoder takes
            channels = source.codec_context.layout.nb_channels
            self._audio_out = self._container.add_stream("aac", rate=source.codec_context.sample_rate or 48000,
                                                         layout="mono" if channels == 1 else "stereo")
        else:
            self._audio_out = self._container.add_stream_from_template(source)

    def _write_audio(self) -> None:
        """The driver's audio up to the end of the last frame written, so that the output lasts as
        long as its frames (max_frames, a driver whose video ends first): packets remuxed unchanged
        (the last may overhang the end by its own length) or transcoded (cut to the sample); a
        damaged tail is dropped. Audio times count from the audio's first packet, as the frames'
        from the first frame."""
        source = self._audio_in.streams.audio[0]
        end = self._end()
        first: Fraction | None = None

        def elapsed(time: Fraction) -> Fraction:
            nonlocal first
            first = time if first is None else first
            return time - first

        if not self._transcode:
            with contextlib.suppress(av.FFmpegError):
                for packet in self._audio_in.demux(source):
                    if packet.dts is None:
                        continue
                    if packet.pts is not None and elapsed(packet.pts * packet.time_base) >= end:
                        break
                    packet.stream = self._audio_out
                    self._container.mux(packet)
            return
        with contextlib.suppress(av.FFmpegError):
            for frame in self._audio_in.decode(source):
                at = elapsed(Fraction(frame.pts * frame.time_base)) if frame.pts is not None else None
                if at is not None and at >= end:
                    break
                if at is not None and at + Fraction(frame.samples, frame.sample_rate) > end:
                    frame = _head(frame, round((end - at) * frame.sample_rate))
                frame.pts = None  # the encoder counts samples itself
                self._container.mux(self._audio_out.encode(frame))
        self._container.mux(self._audio_out.encode(None))

    def _end(self) -> Fraction:
        """Seconds from the driver's start to the end of the last frame written."""
        if self._times is None:
            return self.frames / self.rate
        return self._times[-1] * self.time_base + 1 / self.rate

    def close(self) -> None:
        if self.frames == 0:
            raise InputError(f"{self.path}: no frame was produced")
        if self.kind == "gif":  # PIL, not ffmpeg: ffmpeg's GIF muxer drops every metadata key
            (first, *rest), palette = gif_frames(self._gif)
            last = round(1000 / self.rate)
            duration = (last if self._times is None  # ms per frame
                        else [*(round(1000 * d * self.time_base) for d in np.diff(self._times).tolist()), last])
            # palette: the one global colour table; each frame marks its own kept pixels transparent
            first.save(self._tmp, format="GIF", save_all=True, append_images=rest, loop=0, duration=duration,
                       palette=palette, optimize=False, disposal=1, comment=gif_comment(self.tags))
        elif self.kind not in ("png", "frames"):
            for packet in self._stream.encode():
                self._container.mux(packet)
            if self.audio is not None:
                self._write_audio()
            self._container.close()
            self._container = None
        sidecar = sign_output(self._tmp, self.path, self.tags)  # C2PA manifest, signed (in each frame of a folder)
        self._stack.close()  # moves the finished file or folder into place
        if sidecar is not None:  # an mkv's manifest, beside it
            write_sidecar(self.path, sidecar)

    def abort(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def gif_palette(frames: list[np.ndarray]) -> Image.Image:
    """One palette for a clip of same-size frames: a fast octree over GIF_SAMPLES evenly spaced frames."""
    picks = np.linspace(0, len(frames) - 1, min(GIF_SAMPLES, len(frames))).round().astype(int)
    return Image.fromarray(np.concatenate([frames[i] for i in picks])).quantize(
        GIF_COLOURS, method=Image.Quantize.FASTOCTREE)


def gif_frames(frames: list[np.ndarray]) -> tuple[list[Image.Image], bytes]:
    """Same-size RGB frames as GIF frames on one palette, and that palette (256 RGB entries).
    Pixels map to their nearest colour, undithered: dithering changes pixels in every frame (a
    larger file) and the watermark, a low-frequency luma offset, survives without it. After the
    first frame, a pixel is redrawn only when its colour has moved more than GIF_TOLERANCE from
    what is shown and its palette colour differs; the others are transparent (GIF_KEPT), which LZW
    stores in a few bits: noise under the tolerance in still parts costs nothing."""
    palette = gif_palette(frames)
    colours = np.zeros((256, 3), np.uint8)
    used = np.asarray(palette.getpalette(), np.uint8).reshape(-1, 3)
    colours[: len(used)] = used
    images: list[Image.Image] = []
    shown: np.ndarray | None = None  # (H, W, 3) what a player shows after the frames so far
    for frame in frames:
        index = np.array(Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE))
        drawn = colours[index]
        if shown is None:
            shown = drawn
        else:
            moved = ((np.abs(frame.astype(np.int16) - shown).max(axis=2) > GIF_TOLERANCE)
                     & (drawn != shown).any(axis=2))
            shown[moved] = drawn[moved]
            index[~moved] = GIF_KEPT
        image = Image.fromarray(index)  # L, made P by its palette
        image.putpalette(colours.tobytes())
        if images:
            image.info["transparency"] = GIF_KEPT
        images.append(image)
    return images, colours.tobytes()


def _head(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    """The first `samples` samples of an audio frame."""
    per_sample = 1 if frame.format.is_planar else len(frame.layout.channels)  # packed: channels interleaved
    data = frame.to_ndarray()  # (channels, samples) planar, (1, samples * channels) packed
    head = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, : samples * per_sample]),
                                      format=frame.format.name, layout=frame.layout.name)
    head.sample_rate = frame.sample_rate
    return head


# audio codecs each container takes as they are; any other is transcoded to AAC
COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "mkv": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_f32le"},
}
