"""Write the frontal mean face mesh (src/marionette/assets/frontal_mesh.json) from a fitted landmark
transformer: its Procrustes reference, the normalised frame's mean face (centred, frontal, eyes level,
inter-ocular distance 1). The shipped asset is the shipped transformer's; tests/test_warp.py checks
they agree, so refitting the shipped transformer means running this again.

    PYTHONPATH=src python tools/derive_frontal_mesh.py [--transformer FILE.safetensors] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from marionette.landmark_transformer.model import DEFAULT_PATH, LandmarkTransformer
from marionette.landmarks.frontal import FRONTAL_MESH
from marionette.resources import asset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transformer", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--out", type=Path, default=asset(FRONTAL_MESH))
    args = parser.parse_args()
    reference = LandmarkTransformer.load(args.transformer).reference  # (478, 3) float64
    # one point per line; JSON writes each float64 as its shortest exact repr, so it reads back bit for bit
    args.out.write_text("[\n" + ",\n".join(json.dumps(point) for point in reference.tolist()) + "\n]\n")
    print(f"{args.out}: {len(reference)} points")


if __name__ == "__main__":
    main()
