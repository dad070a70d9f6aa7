"""How well the calibrated identity score separates the people of a dataset (ROC AUC), as JSON:
`python tools/identity_separation.py DATASET [--frames N] [--arcface FILE]`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from marionette.data.manifest import Manifest
from marionette.evaluation.calibration import FRAMES_PER_CLIP, embed_dataset, separation
from marionette.evaluation.judges import make_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder made by `marionette preprocess`")
    parser.add_argument("--frames", type=int, default=FRAMES_PER_CLIP, help="frames embedded per clip")
    parser.add_argument("--arcface", help="ArcFace ONNX file (default judge: dlib's ResNet)")
    args = parser.parse_args()
    manifest = Manifest.load(args.data)
    judge = make_judge(args.arcface)
    found = embed_dataset(args.data, manifest, lambda image, mesh, key: judge.embed(image, mesh), args.frames)
    result = separation(found)
    print(json.dumps({"dataset": str(args.data), "judge": judge.name, "clips": len(manifest.clips),
                      "frames_embedded": len(found), **asdict(result)}, indent=1))


if __name__ == "__main__":
    main()
