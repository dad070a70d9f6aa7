"""Episodes for other tools, and their videos scored beside ours.

Inputs (`evaluate --set inputs=true`): every episode's inputs, in REPORT_DIR/inputs/<name>/
(<name> = <mode>_k<K>_e<i>, as in episodes.csv):
  target_0.png .. target_<K-1>.png  the K target crops (S x S RGB, the dataset's frames as stored)
  driver.mp4                        the driver clip's F frames (H.264, at the clip's pace); in
                                    self mode the targets' own clip, whose frames are the ground truth
  driver.png                        the episode's driver frame (frame `driver_frame` of driver.mp4), lossless
  episode.json                      mode, shots, episode, target_clip, target_frames, driver_clip,
                                    driver_frame, frames (F), size (S), fps

External videos (`--set external=NAME:FOLDER`): FOLDER/<name>.mp4, or a folder FOLDER/<name>/ of
PNG frames in name order, per episode: the other method's result for the targets, driven by
driver.mp4 frame by frame (F frames, or more: the first F are used). Frame `driver_frame` is
scored as the episode's result, the whole video by the temporal metrics (videos=true). Square
frames of another size are resized to S x S (area interpolation; ours: a method's own resolution
is kept up to that point).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from marionette.data.store import ClipInfo
from marionette.errors import InputError
from marionette.evaluation.config import external_names
from marionette.evaluation.episodes import EvalEpisode
from marionette.inference.io import FrameWriter
from marionette.media import atomic_folder, iter_frames, list_image_sequence, save_image

CLIP_RATE = 5.0  # frames a second of a clip whose source frame rate is unknown


def external_folders(entries: tuple[str, ...]) -> dict[str, Path]:
    """("NAME:FOLDER", ...) -> {NAME: FOLDER}; each FOLDER must be a folder."""
    folders = {name: Path(entry.split(":", 1)[1].strip()) for name, entry in zip(external_names(entries), entries)}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise InputError(f"external={name}:{folder}: no such folder")
    return folders


def external_video(folder: Path, episode: EvalEpisode) -> Path:
    """The other method's video of `episode` in `folder` (see the module docstring)."""
    for path in (folder / f"{episode.name}.mp4", folder / episode.name):
        if path.is_file() or (path.is_dir() and list_image_sequence(path)):
            return path
    raise InputError(f"{folder}: no video for episode {episode.name} (expected {episode.name}.mp4 or a folder "
                     f"{episode.name}/ of PNG frames)")


def load_external(path: Path, frames: int, size: int) -> np.ndarray:
    """The first `frames` frames of a video file or PNG folder as (frames, size, size, 3) uint8."""
    out = []
    for frame in iter_frames(path):
        if frame.shape[0] != frame.shape[1]:
            raise InputError(f"{path}: frames are {frame.shape[1]}x{frame.shape[0]}; give square crops like the "
                             f"episode's targets ({size}x{size})")
        if frame.shape[0] != size:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        out.append(frame)
        if len(out) == frames:
            return np.stack(out)  # (F, S, S, 3)
    raise InputError(f"{path}: {len(out)} frames, but the episode's driver clip has {frames}")


def clip_rate(info: ClipInfo) -> int:
    """Whole frames a second at which a clip's kept frames play over its source duration."""
    fps = info.fps * info.frames / info.source_frames if info.fps > 0 and info.source_frames else CLIP_RATE
    return max(1, round(fps))


def write_inputs(folder: Path, episode: EvalEpisode, targets: np.ndarray, driver: np.ndarray, info: ClipInfo) -> None:
    """REPORT_DIR/inputs/<name>/ (module docstring) from (K, S, S, 3) target crops and the (F, S, S, 3)
    driver clip whose stats are `info`; written whole or not at all, once."""
    path = folder / episode.name
    if path.is_dir():
        return
    with atomic_folder(path) as tmp:
        for j, image in enumerate(targets):
            save_image(tmp / f"target_{j}.png", image)
        save_image(tmp / "driver.png", driver[episode.driver_frame])
        with FrameWriter(tmp / "driver.mp4", clip_rate(info), {}) as writer:  # untagged: real footage
            for frame in driver:
                writer.write(frame)
        record = {"mode": episode.mode, "shots": episode.shots, "episode": episode.episode,
                  "target_clip": episode.target_clip, "target_frames": list(episode.target_frames),
                  "driver_clip": episode.driver_clip, "driver_frame": episode.driver_frame,
                  "frames": len(driver), "size": int(driver.shape[1]), "fps": clip_rate(info)}
        (tmp / "episode.json").write_text(json.dumps(record, indent=1) + "\n")
