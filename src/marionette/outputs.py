"""Where a command may write: checks made before any work starts, so that no output ever destroys
what a user has. Refused (one line): an output that is an input, the current or root folder, a
folder holding files marionette did not write, a folder where a file is asked for (or the
reverse), a path under a file, and an existing output without overwrite."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from marionette.errors import InputError
from marionette.provenance import TAG_KEY

MEDIA_OUTPUTS = ("mp4", "mov", "mkv", "gif", "png", "frames")
FRAME_NAME = re.compile(r"\d{6}\.png")  # names of the frames a PNG-folder output holds


def output_kind(path: Path) -> str:
    """mp4, mov, mkv, gif, png (one image, from a one-frame driver) or frames (a folder of PNG
    frames: a path without a suffix)."""
    kind = "frames" if path.suffix == "" else path.suffix.lower().lstrip(".")
    if kind not in MEDIA_OUTPUTS:
        raise InputError(f"{path}: unsupported output (use .mp4, .mov, .mkv, .gif, .png for an image driver, "
                         "or a folder for PNG frames)")
    return kind


def check_one_image_output(out: str | Path, driver: str, frames: int | None) -> None:
    """A .png output holds one image: refused (one line saying how to get frames) unless the
    driver gives one frame (`frames`: how many it will give, None if unknown)."""
    if output_kind(Path(out)) == "png" and frames != 1:
        raise InputError(f"{out}: a .png output is one image, but {driver} gives more than one frame; for its "
                         "frames as PNGs give a folder (a name without a suffix), else .mp4, .mov, .mkv or .gif")


def _is_marionette_frame(path: Path) -> bool:
    if not (path.is_file() and FRAME_NAME.fullmatch(path.name)):
        return False
    try:
        with Image.open(path) as im:
            return TAG_KEY in im.info
    except (OSError, ValueError, SyntaxError):
        return False


def _check_place(out: Path, inputs: list[str | Path]) -> None:
    """`out` is not an input, not the current or root folder, and not under a file."""
    target = out.resolve()
    if target == Path.cwd().resolve() or target == Path(target.anchor):
        raise InputError(f"{out}: is the current or root folder; give a new folder")
    for spec in inputs:
        path = Path(spec)
        if not str(spec).isdigit() and path.exists() and path.resolve() == target:
            raise InputError(f"{out}: is an input ({spec}); choose another output")
    for parent in out.absolute().parents:  # the nearest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{parent}: is not a folder, so {out} cannot be written")
            return


def check_file_output(out: str | Path, inputs: list[str | Path], overwrite: bool = False) -> None:
    """A single output file: refused where it would destroy anything (see the module docstring)."""
    out = Path(out)
    _check_place(out, inputs)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists; pass overwrite to replace it")


def check_media_output(out: str | Path, inputs: list[str | Path], overwrite: bool = False) -> None:
    """A reenactment output: a video or GIF file, or a folder of PNG frames, which may replace an
    existing one only with `overwrite` and only when it holds nothing but marionette's frames."""
    if output_kind(Path(out)) != "frames":
        check_file_output(out, inputs, overwrite)
        return
    _check_whole_folder(Path(out), inputs, _is_marionette_frame, "marionette frames from an earlier run", overwrite)


def check_work_folder(out: str | Path, inputs: list[str | Path], markers: tuple[str, ...], what: str) -> None:
    """A folder a command builds and resumes (a dataset, a run, a report): new, empty, or already
    one of its kind (it holds one of `markers`); never an input or a folder of other files."""
    out = Path(out)
    _check_place(out, inputs)
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: is not a folder")
    if any(out.iterdir()) and not any((out / m).exists() for m in markers):
        raise InputError(f"{out}: folder holds other files and no {markers[0]}, so it is not a marionette {what}; "
                         "give a new or empty folder")


def check_folder_output(out: str | Path, inputs: list[str | Path], names: tuple[str, ...], overwrite: bool = False) -> None:
    """A folder a command writes whole, holding the files `names` (an ONNX export): new or empty;
    one that holds nothing but such files (an earlier one) is replaced only with `overwrite`."""
    _check_whole_folder(Path(out), inputs, lambda e: e.name in names and e.is_file() and not e.is_symlink(),
                        "an earlier export", overwrite)


def _check_whole_folder(out: Path, inputs: list[str | Path], ours: Callable[[Path], bool], earlier: str,
                        overwrite: bool) -> None:
    """An output folder written whole: new or empty, or replaced (with `overwrite` only) when every
    entry in it is `ours`; never an input, never a folder of other files."""
    _check_place(out, inputs)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise InputError(f"{out}: exists and is not a folder; give a new folder")
    entries = list(out.iterdir())
    if not entries:
        return
    if not all(ours(e) for e in entries):
        raise InputError(f"{out}: folder holds files marionette did not write; give a new or empty folder")
    if not overwrite:
        raise InputError(f"{out}: holds {earlier}; pass --overwrite (--set overwrite=true) to replace it")
