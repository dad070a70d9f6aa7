"""Contact sheets of the warp renderer on hard cases: driver | target | result, a few frames each.

    PYTHONPATH=src python tools/warp_sheets.py --out OUT [--before BEFORE]

writes OUT/CASE.png per case. With --before (the same tool's output from an older checkout), it
also writes OUT/CASE_compare.png: driver | target | before | after. Cases use the shared data
(../shared/data): the Vermeer painting in absolute mode with a frontal GRID driver; Grace Hopper
with a blinking, gaze-shifting driver; Grace Hopper with a driver that turns its head; 8 frames of
one clip as targets with another clip driving.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.media import iter_video, load_image, save_image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HOPPER = REPO / "assets" / "faces" / "02_grace_hopper.jpg"
CASES = {  # name: (targets, driver, settings, driver frames shown)
    "vermeer_absolute": ([DATA / "paintings" / "05_vermeer_pearl_earring.jpg"], DATA / "videos" / "grid_lwbsza.mp4",
                         {"mode": "absolute"}, [5, 25, 45, 65]),
    "hopper_blink_gaze": ([HOPPER], DATA / "videos" / "lp_d14.mp4", {}, [0, 17, 66, 140, 200]),
    "hopper_head_turn": ([HOPPER], DATA / "videos" / "lp_d3.mp4", {}, [0, 90, 150, 210, 270]),
    "eight_targets": ([DATA / "videos" / "lp_d9.mp4"], DATA / "videos" / "lp_d11.mp4", {"target_frames": 8},
                      [20, 60, 100, 140, 180]),
}
ROW = 192  # pixels per row in the sheets


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def sheet(targets: list[Path], driver: Path, settings: dict, picks: list[int]) -> np.ndarray:
    """Rows of driver | target | result (crops, not pasted back) at the picked driver frames."""
    config = ReenactConfig(renderer="warp", side_by_side=True, paste_back=False, **settings)
    with tempfile.TemporaryDirectory() as tmp:
        ReenactPipeline(config).run([str(t) for t in targets], str(driver), Path(tmp) / "frames", progress=False)
        frames = sorted((Path(tmp) / "frames").glob("*.png"))
        rows = [load_image(frames[min(i, len(frames) - 1)]) for i in picks]
    rows = [cv2.resize(r, (r.shape[1] * ROW // r.shape[0], ROW), interpolation=cv2.INTER_AREA) for r in rows]
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--before", type=Path, help="sheets of an older checkout, for before | after sheets")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.cases.split(","):
        image = sheet(*CASES[name])
        save_image(args.out / f"{name}.png", image)
        if args.before and (args.before / f"{name}.png").is_file():
            before = load_image(args.before / f"{name}.png")
            result = before[:, -ROW:]
            both = np.concatenate([image[:, :-ROW], result, image[:, -ROW:]], axis=1)
            header = np.concatenate([_label(np.zeros((24, w, 3), np.uint8), text) for w, text in
                                     ((image.shape[1] - ROW, "driver | target"), (ROW, "before"), (ROW, "after"))], 1)
            save_image(args.out / f"{name}_compare.png", np.concatenate([header, both], axis=0))
        print(f"wrote {args.out / name}.png")


if __name__ == "__main__":
    main()
