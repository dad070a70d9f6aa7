"""Reading and writing media: images (any mode, EXIF-rotated), videos (PyAV), image sequences,
and atomic writes (temporaries beside the destination, moved into place only when complete).

Every failure on user input becomes an `InputError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from safetensors.numpy import save as safetensors_save

from marionette.errors import InputError

UMASK = os.umask(0o022)  # read the process umask (setting it is the only way), then restore it
os.umask(UMASK)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv")
MAX_PIXELS = 89_478_485  # images above this many pixels are refused (PIL's decompression-bomb limit)
TEMP_TAG = ".partial-"  # temporaries are named .NAME.partial-PID-XXXXXXXX beside their destination


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB: grayscale (8- and 16-bit), palette, RGBA, CMYK and EXIF
    rotation handled; images above MAX_PIXELS are refused before they are decoded."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{path}: image of {im.width}x{im.height} pixels is above the limit of "
                                 f"{MAX_PIXELS / 1e6:.0f} megapixels; scale it down first")
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I") or im.mode == "F":  # 16-bit or float grey: scale to 8 bits
                grey = np.asarray(im, dtype=np.float64)
                grey = grey / 257 if im.mode.startswith("I;16") or grey.max() > 255 else grey
                return np.repeat(np.clip(grey, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, rgba)  # ours: transparency over white
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image is above the limit of {MAX_PIXELS / 1e6:.0f} megapixels; "
                         "scale it down first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


def _temporary_name(path: Path) -> str:
    """The prefix of `path`'s temporaries: .NAME.partial-PID- (the writing process)."""
    return f".{path.name}{TEMP_TAG}{os.getpid()}-"


def _writer_gone(tmp: Path, path: Path) -> bool:
    """Whether the process that wrote the temporary `tmp` of `path` has ended (its name says which)."""
    pid, named, _ = tmp.name.removeprefix(f".{path.name}{TEMP_TAG}").partition("-")
    if not (named and pid.isdigit()) or os.name != "posix":  # no process named (or no way to ask)
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def sweep_temporaries(path: str | Path) -> list[Path]:
    """Remove what a killed run left while writing `path` (files or folders named by atomic_path
    or atomic_folder), never a temporary of a run still writing; returns them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(p for p in path.parent.glob(f".{path.name}{TEMP_TAG}*") if _writer_gone(p, path))
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def _naming(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """OSErrors inside (those about `tmp`, if given) name `path`, the destination, not the
    temporary beside it."""
    try:
        yield
    except OSError as e:
        if tmp is not None and e.filename is not None and not str(e.filename).startswith(str(tmp)):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None


def _written_meanwhile(path: Path) -> InputError:
    return InputError(f"{path}: was written meanwhile (by another run?); pass overwrite to replace it")


def _move_new(tmp: Path, path: Path) -> None:
    """Move the finished file `tmp` to `path` only if no file is there: never replaces one that
    appeared while `tmp` was written (two runs writing the same new output)."""
    try:
        os.link(tmp, path)  # atomic, and fails if `path` exists
    except FileExistsError:
        raise _written_meanwhile(path) from None
    except OSError:  # a file system without hard links: claim the name, then fill it
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise _written_meanwhile(path) from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.
    `replace=False`: a new file, refused (one line) if `path` has appeared meanwhile."""
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_name(path), suffix=path.suffix)
    os.close(fd)
    try:
        with _naming(path, Path(tmp)):
            yield Path(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        if replace:
            os.replace(tmp, path)
        else:
            _move_new(Path(tmp), path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; if the block succeeds it becomes `path`,
    replacing what was there (which the caller has checked may go), else it is removed.
    `replace=False`: a new (or empty) folder, refused (one line) if `path` has been filled meanwhile."""
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_name(path)))
    try:
        with _naming(path, tmp):
            yield tmp
        tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700 folders
        if not replace:
            try:
                os.rename(tmp, path)  # takes the place of nothing or of an empty folder, never of a file or files
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                raise _written_meanwhile(path) from None
        elif path.exists():  # moved aside first: at any moment either the old or the new folder is whole
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_name(path)))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically and byte-for-byte reproducibly: the header's keys in
    sorted order (the library writes the metadata map in a random order)."""
    data = safetensors_save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format aligns the data to 8 bytes
    with atomic_path(path) as tmp:
        tmp.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + n :])


def save_image(path: str | Path, image: np.ndarray, **options: object) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically; the format follows the extension; `options`
    go to PIL's writer (e.g. pnginfo)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[Path(path).suffix.lower()], **options)


@dataclass(frozen=True)
class VideoInfo:
    rate: Fraction | None  # average frame rate, exact (30000/1001 for NTSC video); None if unknown
    frames: int  # frame count from the container, else counted by demuxing (no decoding); 0 if unknown
    width: int
    height: int
    time_base: Fraction | None  # unit of the video stream's timestamps

    @property
    def fps(self) -> float:
        """Frames per second, 0 if unknown."""
        return float(self.rate) if self.rate else 0.0


def _open_video(path: str | Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise InputError(f"{path}: corrupt or unreadable video ({e})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: no video stream")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Container-level facts of a video; raises InputError if it cannot be opened."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        frames = int(stream.frames or 0)
        if not frames:  # counted from the packets, as far as the container can be read
            with contextlib.suppress(av.FFmpegError):
                for packet in container.demux(stream):
                    frames += bool(packet.size)
        rate = Fraction(stream.average_rate) if stream.average_rate else None
        time_base = Fraction(stream.time_base) if stream.time_base else None
        return VideoInfo(rate, frames, stream.codec_context.width, stream.codec_context.height, time_base)


def decode_video(path: str | Path) -> Iterator[tuple[np.ndarray, Fraction | None]]:
    """Decode a video frame by frame: (H, W, 3) uint8 RGB and its presentation time in seconds
    (None if the container has none). Never holds the whole video. A truncated or partly corrupt
    video yields what can be decoded (corrupt packets are skipped, a broken container ends the
    stream); one that yields nothing is an InputError."""
    failed: av.FFmpegError | None = None
    decoded = 0
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        packets = container.demux(stream)
        while True:
            try:
                packet: av.Packet | None = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:  # the container breaks off: drain the decoder, keep what it had
                failed, packet = e, None
            try:
                frames = stream.decode(packet)
            except av.FFmpegError as e:  # a corrupt packet: skip it
                failed, frames = e, []
            for frame in frames:
                decoded += 1
                at = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else None
                yield frame.to_ndarray(format="rgb24"), (Fraction(at) if at is not None else None)
            if packet is None:
                break
    if failed is not None and decoded == 0:
        raise InputError(f"{path}: corrupt or unreadable video ({failed})")


def iter_video(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as (H, W, 3) uint8 RGB (see decode_video)."""
    for frame, _ in decode_video(path):
        yield frame


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

