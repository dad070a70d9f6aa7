"""`marionette demo`: runs with no arguments on the sample media shipped in the package
(a public-domain portrait, a GRID clip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.landmarks.preview import landmark_report
from marionette.media import iter_video
from marionette.outputs import check_work_folder
from marionette.provenance import save_marked_image
from marionette.resources import SAMPLE_DRIVER, SAMPLE_TARGET, asset

TARGET = asset(SAMPLE_TARGET)  # shipped with the package: the demo runs from any install
DRIVER = asset(SAMPLE_DRIVER)


def run_demo(out: Path, progress: bool = True) -> list[Path]:
    """Write the target's landmark preview, the reenacted portrait, a side-by-side video
    (driver | target | result) and a PNG of three of its frames. A rerun replaces these files;
    a folder holding other files is refused."""
    preview = out / "landmarks.png"
    result, side, frames = out / "result.mp4", out / "side_by_side.mp4", out / "frames.png"
    check_work_folder(out, [], tuple(p.name for p in (result, side, frames, preview)), "demo folder")
    out.mkdir(parents=True, exist_ok=True)
    landmark_report(TARGET, preview=preview)
    ReenactPipeline(ReenactConfig(overwrite=True)).run([str(TARGET)], str(DRIVER), result, progress=progress)
    pipeline = ReenactPipeline(ReenactConfig(side_by_side=True, paste_back=False, overwrite=True))
    stats = pipeline.run([str(TARGET)], str(DRIVER), side, progress=progress)
    picks = {stats.frames // 4, stats.frames // 2, 3 * stats.frames // 4}
    sheet = np.concatenate([f for i, f in enumerate(iter_video(side)) if i in picks], axis=0)  # (3H, W, 3)
    save_marked_image(frames, sheet, pipeline.renderer_name)  # stacking broke the frames' own mark
    return [preview, result, side, frames]
