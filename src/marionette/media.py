"""Reading and writing media: images (any mode, EXIF-rotated), videos (PyAV), image sequences.

Every failure on user input becomes an `InputError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from marionette.errors import InputError

UMASK = os.umask(0o022)  # read the process umask (setting it is the only way), then restore it
os.umask(UMASK)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB: grayscale, RGBA, CMYK and EXIF rotation handled."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)  # ours: transparency over white
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_image(path: str | Path, image: np.ndarray, **options: object) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically; the format follows the extension; `options`
    go to PIL's writer (e.g. pnginfo)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[Path(path).suffix.lower()], **options)


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # frames per second (average rate), 0 if unknown
    frames: int  # frame count from the container, else counted by demuxing (no decoding); 0 if unknown
    width: int
    height: int


def probe_video(path: str | Path) -> VideoInfo:
    """Container-level facts of a video; raises InputError if it cannot be opened."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            frames = int(stream.frames or 0) or sum(1 for packet in container.demux(stream) if packet.size)
            return VideoInfo(fps, frames, stream.codec_context.width, stream.codec_context.height)
    except av.FFmpegError as e:
        raise InputError(f"{path}: corrupt or unreadable video ({e})") from None


def iter_video(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as (H, W, 3) uint8 RGB; never holds the whole video."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise InputError(f"{path}: corrupt or unreadable video ({e})") from None


def list_image_sequence(folder: str | Path) -> list[Path]:
    """Image files of a folder in name order (a clip stored as frames)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)


def iter_frames(source: str | Path) -> Iterator[np.ndarray]:
    """Frames of a video file or of an image-sequence folder."""
    source = Path(source)
    if source.is_dir():
        for p in list_image_sequence(source):
            yield load_image(p)
    else:
        yield from iter_video(source)

