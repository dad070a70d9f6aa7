"""Contact sheets and two measurements of the warp renderer on hard cases.

    PYTHONPATH=src python tools/warp_sheets.py --out OUT [--before BEFORE]
    PYTHONPATH=src python tools/warp_sheets.py --jumps TARGET_VIDEO DRIVER
    PYTHONPATH=src python tools/warp_sheets.py --blinks TARGET DRIVER

The first writes OUT/CASE.png per case (rows of driver | target | result). With --before (the same
tool's output from an older checkout), it also writes OUT/CASE_compare.png: driver | target |
before | after. Cases use the shared data (../shared/data): the Vermeer painting in absolute mode
with a frontal GRID driver; Grace Hopper with a blinking, gaze-shifting driver; Grace Hopper with a
driver that turns its head; 8 frames of one clip as targets with another clip driving.
--jumps: 8 frames of TARGET_VIDEO as targets; prints how much the output crop changes from frame
to frame (mean absolute difference, grey levels) and how many frames change by more than 5.
--blinks: prints the eye-aspect ratio (mean of both eyes, iBUG points) of the driven mesh and of
the output as MediaPipe re-detects it, at the driver's most closed frame and over the clip.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from marionette.inference.io import open_driver
from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.mesh import FaceMesh
from marionette.media import load_image, save_image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HOPPER = REPO / "assets" / "faces" / "02_grace_hopper.jpg"
CASES = {  # name: (targets, driver, settings, driver frames shown, region of the result shown (x0, y0, x1, y1))
    "vermeer_absolute": ([DATA / "paintings" / "05_vermeer_pearl_earring.jpg"], DATA / "videos" / "grid_lwbsza.mp4",
                         {"mode": "absolute"}, [5, 25, 45, 65], (0, 0, 1, 1)),
    "hopper_blink_gaze": ([HOPPER], DATA / "videos" / "lp_d14.mp4", {}, [0, 52, 80, 97, 150], (0.2, 0.3, 0.8, 0.55)),
    "hopper_head_turn": ([HOPPER], DATA / "videos" / "lp_d3.mp4", {}, [0, 90, 150, 210, 270], (0, 0, 1, 1)),
    "eight_targets": ([DATA / "videos" / "lp_d9.mp4"], DATA / "videos" / "lp_d11.mp4", {"target_frames": 8},
                      [20, 60, 100, 140, 180], (0, 0, 1, 1)),
}
ROW = 160  # pixels per row in the sheets


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def sheet(targets: list[Path], driver: Path, settings: dict, picks: list[int],
          region: tuple[float, float, float, float]) -> tuple[np.ndarray, int]:
    """Rows of driver | target | result (crops, not pasted back; of the result, `region` as shares
    of its side) at the picked driver frames, and the result column's width."""
    config = ReenactConfig(renderer="warp", side_by_side=True, paste_back=False, **settings)
    with tempfile.TemporaryDirectory() as tmp:
        ReenactPipeline(config).run([str(t) for t in targets], str(driver), Path(tmp) / "frames", progress=False)
        frames = sorted((Path(tmp) / "frames").glob("*.png"))
        rows = [load_image(frames[min(i, len(frames) - 1)]) for i in picks]
    fitted = []
    for row in rows:
        side = row.shape[0]
        x0, y0, x1, y1 = (round(v * side) for v in region)
        result = row[y0:y1, row.shape[1] - side + x0 : row.shape[1] - side + x1]
        width = result.shape[1] * ROW // result.shape[0]
        left = cv2.resize(row[:, : row.shape[1] - side], (ROW * 2, ROW), interpolation=cv2.INTER_AREA)
        fitted.append(np.concatenate([left, cv2.resize(result, (width, ROW), interpolation=cv2.INTER_AREA)], 1))
    return np.concatenate(fitted, axis=0), width


def _crops(targets: list[str], driver: str, settings: dict) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(driven mesh, output crop) per driver frame."""
    pipeline = ReenactPipeline(ReenactConfig(renderer="warp", paste_back=False, **settings))
    pipeline.set_targets(targets)
    for rendered in pipeline.render_frames(open_driver(driver)):
        yield rendered.driven, rendered.output


def jumps(target_video: str, driver: str) -> None:
    changes = []
    previous = None
    for _, crop in _crops([target_video], driver, {"target_frames": 8}):
        crop = crop.astype(np.float32)
        if previous is not None:
            changes.append(float(np.abs(crop - previous).mean()))
        previous = crop
    c = np.array(changes)
    print(f"{len(c) + 1} frames: frame-to-frame change median {np.median(c):.2f}, 99th percentile "
          f"{np.percentile(c, 99):.2f}, max {c.max():.2f} grey levels; {(c > 5).sum()} frames change by more than 5")


def _eye_aspect(mesh: np.ndarray) -> float:
    p = mesh_to_ibug68(mesh)[:, :2]

    def one(e: np.ndarray) -> float:
        return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2 * np.linalg.norm(e[0] - e[3]))

    return (one(p[36:42]) + one(p[42:48])) / 2


def blinks(target: str, driver: str) -> None:
    driven, seen = [], []
    with FaceMesh(video=False) as tracker:
        for mesh, crop in _crops([target], driver, {}):
            faces = tracker.detect(crop)
            driven.append(_eye_aspect(mesh))
            seen.append(_eye_aspect(faces[0].mesh) if faces else np.nan)
    d, s = np.array(driven), np.array(seen)
    i = int(np.argmin(d))
    print(f"{len(d)} frames: eye-aspect ratio of the driven mesh min {d.min():.3f}, of the re-detected output "
          f"min {np.nanmin(s):.3f} (at the most closed driven frame {s[i]:.3f}); correlation {np.corrcoef(d, s)[0, 1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--jumps", nargs=2, metavar=("TARGET_VIDEO", "DRIVER"))
    parser.add_argument("--blinks", nargs=2, metavar=("TARGET", "DRIVER"))
    parser.add_argument("--before", type=Path, help="sheets of an older checkout, for before | after sheets")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES))
    args = parser.parse_args()
    if args.jumps:
        return jumps(*args.jumps)
    if args.blinks:
        return blinks(*args.blinks)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.cases.split(","):
        image, width = sheet(*CASES[name])
        save_image(args.out / f"{name}.png", image)
        if args.before and (args.before / f"{name}.png").is_file():
            result = load_image(args.before / f"{name}.png")[:, -width:]
            both = np.concatenate([image[:, :-width], result, image[:, -width:]], axis=1)
            header = np.concatenate([_label(np.zeros((24, w, 3), np.uint8), text) for w, text in
                                     ((2 * ROW, "driver | target"), (width, "before"), (width, "after"))], 1)
            save_image(args.out / f"{name}_compare.png", np.concatenate([header, both], axis=0))
        print(f"wrote {args.out / name}.png")


if __name__ == "__main__":
    main()
