"""Derive the warp renderer's face triangulation (src/marionette/assets/face_triangles.json), once.

    pip install -e ".[mediapipe]"   # the tessellation below is read from MediaPipe (Python 3.10 to 3.12)
    PYTHONPATH=src python tools/derive_face_triangles.py [--out src/marionette/assets/face_triangles.json]

MediaPipe ships its canonical face mesh's tessellation as edges (`FACEMESH_TESSELATION`, 1,322
undirected edges over vertices 0..467, Apache-2.0). Its triangles are the edge graph's 3-cliques,
less the two that are not faces (each of their edges already borders two faces: 49-64-129 and its
mirror 279-294-358), 852 in all: a surface with three holes (the eyes, the mouth). They are wound
consistently by walking across shared edges, the winding that shows most of them with a positive
signed area in the frontal mean mesh chosen (24 at the sides of the face stay negative there: they
face sideways). The holes are filled with the Delaunay triangles of their rims (inner lips, eye
openings) whose centres lie inside, wound positive: the warp moves lips and lids over them.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
from matplotlib.path import Path as Polygon
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION
from scipy.spatial import Delaunay

from marionette.landmarks.frontal import frontal_mesh
from marionette.landmarks.layout import MESH_EYE_OPENINGS, MESH_INNER_LIPS
from marionette.warp import signed_areas

NOT_FACES = {(49, 64, 129), (279, 294, 358)}
OUT = Path(__file__).resolve().parents[1] / "src" / "marionette" / "assets" / "face_triangles.json"


def surface() -> list[tuple[int, int, int]]:
    """MediaPipe's face triangles, wound consistently (each shared edge crossed in opposite directions)."""
    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    neighbours = collections.defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    triangles = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]} - NOT_FACES)
    by_edge = collections.defaultdict(list)
    for i, (a, b, c) in enumerate(triangles):
        for edge in ((a, b), (b, c), (a, c)):
            by_edge[edge].append(i)

    def directed(t: tuple[int, int, int]) -> set[tuple[int, int]]:
        return {(t[0], t[1]), (t[1], t[2]), (t[2], t[0])}

    wound: dict[int, tuple[int, int, int]] = {0: triangles[0]}
    todo = [0]
    while todo:
        i = todo.pop()
        for a, b in directed(wound[i]):
            for j in by_edge[tuple(sorted((a, b)))]:
                if j not in wound:
                    t = triangles[j]
                    wound[j] = (t[0], t[2], t[1]) if (a, b) in directed(t) else t
                    todo.append(j)
    assert len(wound) == len(triangles), "the tessellation is not one connected surface"
    return [wound[i] for i in range(len(triangles))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    frontal = frontal_mesh()[:, :2]  # (478, 2) x right, y down
    faces = np.array(surface())
    if (signed_areas(frontal[faces]) > 0).sum() < len(faces) / 2:
        faces = faces[:, [0, 2, 1]]
    holes = []
    for rim in (MESH_INNER_LIPS, *MESH_EYE_OPENINGS):
        points = frontal[rim]
        inside = Polygon(points)
        holes += [rim[s] for s in Delaunay(points).simplices if inside.contains_point(points[s].mean(0))]
    holes = np.array(holes)
    holes[signed_areas(frontal[holes]) < 0] = holes[signed_areas(frontal[holes]) < 0][:, [0, 2, 1]]
    triangles = np.concatenate([faces, holes])
    print(f"{len(faces)} surface triangles ({(signed_areas(frontal[faces]) <= 0).sum()} facing away in the frontal "
          f"mean mesh), {len(holes)} in the openings")
    args.out.write_text(json.dumps(triangles.tolist()) + "\n")


if __name__ == "__main__":
    main()
