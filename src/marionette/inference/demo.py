"""`marionette demo`: runs with no arguments on the bundled assets (public-domain portrait, GRID clip)."""

from __future__ import annotations

from pathlib import Path

from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.landmarks.preview import landmark_report

ASSETS = Path(__file__).resolve().parents[3] / "assets"
TARGET = ASSETS / "faces" / "02_grace_hopper.jpg"
DRIVER = ASSETS / "videos" / "grid_lbax4n.mp4"


def run_demo(out: Path, progress: bool = True) -> list[Path]:
    """Write the landmark preview of the target, the reenacted portrait and a side-by-side video."""
    out.mkdir(parents=True, exist_ok=True)
    preview = out / "landmarks.png"
    landmark_report(TARGET, preview=preview)
    result, side = out / "result.mp4", out / "side_by_side.mp4"
    ReenactPipeline(ReenactConfig()).run([str(TARGET)], str(DRIVER), result, progress=progress)
    ReenactPipeline(ReenactConfig(side_by_side=True, paste_back=False)).run([str(TARGET)], str(DRIVER), side,
                                                                             progress=progress)
    return [preview, result, side]
