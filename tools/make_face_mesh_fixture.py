"""MediaPipe's own face mesh on a fixed set of public-domain and CC-BY images: the reference points
that tests/test_torch_mesh.py holds the torch backend to (tests/face_mesh_reference.json), once.

    pip install -e ".[mediapipe]"   # MediaPipe itself (Python 3.10 to 3.12)
    PYTHONPATH=src python tools/make_face_mesh_fixture.py [--out tests/face_mesh_reference.json]

Runs `marionette.landmarks.mesh.FaceMesh(backend="mediapipe")` (mediapipe 0.10.21,
refine_landmarks=True) on tier-A media only (../shared/data/SOURCES.md): the stills of
faces/ 01-05 and paintings/ 01-05, frame FRAME of the four GRID clips and of the Obama weekly
address, in image mode; and in video mode (tracking, one face), TRACKED frames of one GRID clip,
keeping the last. Media in the repository's assets/ are named `assets/...`, the others
`shared/...` (../shared/data). Points are (478, 3) image pixels, OpenCV centres, rounded to 0.001.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import mediapipe

from marionette.landmarks.mesh import FaceMesh
from marionette.media import iter_video, load_image

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"assets": REPO / "assets", "shared": REPO.parent / "shared" / "data"}
OUT = REPO / "tests" / "face_mesh_reference.json"
STILLS = [
    "assets/faces/01_eileen_collins_nasa.jpg",
    "assets/faces/02_grace_hopper.jpg",
    "assets/faces/03_barack_obama_official.jpg",
    "shared/faces/04_joe_biden_official.jpg",
    "shared/faces/05_albert_einstein_bw.jpg",
    "shared/paintings/01_sargent_lady_in_chair.jpg",
    "shared/paintings/02_sargent_woman_black_dress.jpg",
    "shared/paintings/03_bouguereau_child.jpg",
    "shared/paintings/04_raphael_la_velata.jpg",
    "shared/paintings/05_vermeer_pearl_earring.jpg",
]
CLIPS = [
    "assets/videos/grid_brbk7n.mp4",
    "assets/videos/grid_lbax4n.mp4",
    "assets/videos/grid_lwbsza.mp4",
    "assets/videos/grid_swiz3n.mp4",
    "shared/videos/obama_weekly_address_256.mp4",
]
FRAME = 40  # the clips' frame looked at in image mode
TRACKED_CLIP, TRACKED = "assets/videos/grid_swiz3n.mp4", 25  # video mode: frames 0 .. TRACKED - 1, one face
MAX_FACES = 4


def media_path(name: str) -> Path:
    """`assets/...` or `shared/...` -> the file."""
    root, rest = name.split("/", 1)
    return ROOTS[root] / rest


def frames(name: str, count: int) -> list:
    """The first `count` frames of a clip."""
    return list(itertools.islice(iter_video(media_path(name)), count))


def rounded(faces: list) -> list[list[float]]:
    """Faces -> flat lists of their (478 * 3) points, rounded to 0.001 pixel."""
    return [[round(float(v), 3) for v in face.mesh.ravel()] for face in faces]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cases = []
    with FaceMesh(video=False, max_faces=MAX_FACES, backend="mediapipe") as mesh:
        for name in STILLS:
            cases.append({"source": name, "faces": rounded(mesh.detect(load_image(media_path(name))))})
        for name in CLIPS:
            cases.append({"source": name, "frame": FRAME, "faces": rounded(mesh.detect(frames(name, FRAME + 1)[-1]))})
    with FaceMesh(video=True, max_faces=1, backend="mediapipe") as tracker:
        found = [tracker.detect(frame) for frame in frames(TRACKED_CLIP, TRACKED)]
    cases.append({"source": TRACKED_CLIP, "tracked_frames": TRACKED, "faces": rounded(found[-1])})
    reference = {"mediapipe": mediapipe.__version__, "refine_landmarks": True, "max_faces": MAX_FACES,
                 "min_confidence": 0.5, "cases": cases}
    args.out.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    print(f"{args.out}: {len(cases)} cases, {sum(len(c['faces']) for c in cases)} faces, "
          f"{args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
