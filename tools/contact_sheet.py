"""Contact sheets of a warp-guided generator beside the warp: per clip of a preprocessed dataset's
split, three driver frames of self-reenactment (the widest mouth, the most closed eyes, the head
turned furthest from the targets' mean pose), each a row: first target | warp | generator | truth
(the driver frame itself), at the dataset's crop size. K targets are spread evenly over the clip
and never drive. The sheet is written as every synthetic output is (watermarked, tagged).
`--wall OUT.mp4` also writes a video wall of the first clip: truth | warp | generator over every
frame that is not a target (the evaluation's video wall: labelled, tagged, watermarked).

    python tools/contact_sheet.py DATA EXPORT OUT.png [--split test] [--clips ID,ID] [--k 8] [--wall OUT.mp4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from marionette.data.manifest import Manifest, clip_path
from marionette.data.store import ClipReader
from marionette.evaluation.report import write_video_wall
from marionette.inference.export import load_generator
from marionette.inference.neural import NeuralRenderer
from marionette.landmarks.measures import eye_openness, lip_gap
from marionette.provenance import save_marked_image
from marionette.warp import WarpRenderer

PICKS = ("widest mouth", "eyes most closed", "largest turn")


def picks(reader: ClipReader, mesh: np.ndarray, drivers: np.ndarray, targets: np.ndarray) -> list[int]:
    """The driver frames (positions in the clip) of PICKS, from the candidates `drivers` (their
    meshes `mesh` (n, 478, 3))."""
    turn = np.linalg.norm(reader.pose[drivers] - reader.pose[targets].mean(axis=0), axis=1)  # (n,) degrees
    return [int(drivers[np.argmax(lip_gap(mesh))]), int(drivers[np.argmin(eye_openness(mesh))]),
            int(drivers[np.argmax(turn)])]


def label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("export")
    parser.add_argument("out")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", default="", help="comma list of clip ids (default: every clip of the split)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--wall", default="", help="also write a video wall of the first clip to this .mp4")
    args = parser.parse_args()
    data = Path(args.data)
    manifest = Manifest.load(data)
    size = manifest.config.size
    wanted = [c for c in args.clips.split(",") if c]
    clips = [c.info.clip_id for c in manifest.split(args.split) if not wanted or c.info.clip_id in wanted]
    if not clips:
        sys.exit(f"contact_sheet: error: {data}: no clip of split {args.split!r} matches --clips")
    generator = load_generator(args.export).generator
    warp, neural = WarpRenderer(size), NeuralRenderer(generator, crop_size=size)
    rows = []
    for clip in clips:
        reader = ClipReader(clip_path(data, clip))
        targets = np.linspace(0, len(reader) - 1, args.k).round().astype(int)  # (K,)
        drivers = np.setdiff1d(np.arange(len(reader)), targets)
        clip_meshes = reader.mesh()  # (F, 478, 3)
        crops, meshes = reader.images(targets), clip_meshes[targets]
        warp.prepare(crops, meshes)
        neural.prepare(crops, meshes)
        for pick, frame in zip(PICKS, picks(reader, clip_meshes[drivers], drivers, targets)):
            mesh = clip_meshes[frame]
            cells = [(crops[0], f"{clip[:14]} K={args.k}"), (warp.render(mesh), "warp"),
                     (neural.render(mesh), "generator"), (reader.images([frame])[0], pick)]
            rows.append(np.concatenate([label(image, text) for image, text in cells], axis=1))
        if args.wall and clip == clips[0]:
            driven = clip_meshes[drivers]  # (n, 478, 3)
            write_video_wall(Path(args.wall), [("truth", reader.images(drivers), False),
                                               ("warp", np.stack([warp.render(m) for m in driven]), True),
                                               ("generator", np.stack([neural.render(m) for m in driven]), True)],
                             reader.info)
    save_marked_image(args.out, np.concatenate(rows, axis=0), "warp,neural")
    print(f"{args.out}: {len(rows)} rows of {len(clips)} clips")


if __name__ == "__main__":
    main()
