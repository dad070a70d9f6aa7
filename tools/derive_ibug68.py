"""Derive MESH_TO_IBUG68 and MESH_MIRROR (src/marionette/landmarks/layout.py) from real video.

A one-off tool, kept for provenance: it prints both tables as Python source, with their fit, and
says whether they match the ones in layout.py. It needs the dev extra (dlib, face_recognition_models).

    python tools/derive_ibug68.py                     # all of ../shared/data/videos, every 8th frame
    python tools/derive_ibug68.py --max-videos 2      # a quick check

Method:
1. Pairs. On every `--step`-th frame of each video, dlib's HOG detector and 68-point predictor
   run beside marionette's FaceMesh (still-image mode, so each frame is independent as in dlib).
   Frames where dlib finds exactly one face and the mesh finds at least one are kept.
2. Mirror map. Each mesh is aligned to the first by a similarity transform (Procrustes, 3D) and
   the aligned meshes are averaged. The mean is mirrored (x -> -x about its centroid) and rigidly re-aligned onto
   itself by iterated closest points. Vertices are then paired greedily, closest pairs first, by
   the distance of mirrored v to w plus that of mirrored w to v, summed over the aligned frames
   (a vertex may pair with itself: the midline), so the map is an involution. The first kept face
   must be roughly frontal.
3. Table. cost[i, v] = mean over frames of |dlib point i - mesh vertex v| / inter-ocular distance.
   Point i and its mirror partner j are chosen jointly: vertex v for i and MESH_MIRROR[v] for j,
   minimising cost[i, v] + cost[j, MESH_MIRROR[v]]; points on the midline (i == j) only take
   midline vertices. The table is therefore mirror-symmetric by construction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from marionette.landmarks import layout
from marionette.landmarks.layout import IBUG68_MIRROR, inter_ocular
from marionette.landmarks.mesh import FaceMesh
from marionette.landmarks.reference import dlib_model_path
from marionette.media import iter_video

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "videos"


def collect_pairs(videos: list[Path], step: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 68, 2) dlib points and (N, 478, 3) mesh points of the same faces, in image pixels."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    dlib_points, meshes = [], []
    with FaceMesh(video=False, max_faces=1) as mesh:
        for video in videos:
            used = 0
            for t, frame in enumerate(iter_video(video)):
                if t % step:
                    continue
                rects = detector(frame, 1)
                if len(rects) != 1:
                    continue
                faces = mesh.detect(frame)
                if not faces:
                    continue
                shape = predictor(frame, rects[0])
                dlib_points.append([(p.x, p.y) for p in shape.parts()])
                meshes.append(faces[0].mesh)
                used += 1
            print(f"{video.name}: {used} frames", file=sys.stderr)
    return np.array(dlib_points, np.float64), np.array(meshes, np.float64)


Similarity = tuple[float, np.ndarray, np.ndarray]  # scale k, rotation R, translation t: x -> k x R + t


def fit_similarity(a: np.ndarray, b: np.ndarray, scale: bool = True) -> Similarity:
    """The map taking (P, 3) points `a` closest to (P, 3) points `b` (least squares, Umeyama)."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    u, s, vt = np.linalg.svd(ca.T @ cb)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])  # a rotation, never a reflection
    rotation = u @ d @ vt
    k = (s * np.diag(d)).sum() / (ca**2).sum() if scale else 1.0
    return k, rotation, b.mean(0) - k * a.mean(0) @ rotation


def apply(transform: Similarity, points: np.ndarray) -> np.ndarray:
    k, rotation, t = transform
    return k * points @ rotation + t


def mesh_mirror(meshes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """(478,) vertex -> vertex of the horizontally mirrored face, an involution (see the module docstring)."""
    aligned = np.array([apply(fit_similarity(m, meshes[0]), m) for m in meshes])
    mean = aligned.mean(0)
    centre = mean.mean(0)
    flip = np.array([-1.0, 1.0, 1.0])
    flipped = (mean - centre) * flip + centre  # the first face is near frontal: this starts close
    transform: Similarity = (1.0, np.eye(3), np.zeros(3))
    for _ in range(iterations):
        nearest = np.linalg.norm(apply(transform, flipped)[:, None] - mean[None], axis=-1).argmin(1)
        transform = fit_similarity(flipped, mean[nearest], scale=False)
    # distances summed over frames, not taken on the mean shape: vertices that coincide there (the
    # inner mouth corners of a closed mouth) separate in the frames where the mouth opens
    distance = np.zeros((len(mean), len(mean)))
    for frame in aligned:
        mirrored = apply(transform, (frame - centre) * flip + centre)
        distance += np.linalg.norm(mirrored[:, None] - frame[None], axis=-1)  # mirrored v -> vertex w
    cost = distance + distance.T  # v and w are partners both ways
    mirror = np.full(len(mean), -1)
    for flat in np.argsort(cost, axis=None, kind="stable"):  # greedy pairing, closest pairs first
        v, w = divmod(int(flat), len(mean))
        if mirror[v] < 0 and mirror[w] < 0:
            mirror[v], mirror[w] = w, v
    return mirror


def ibug_table(dlib_points: np.ndarray, meshes: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(68,) mesh vertex of each iBUG point and its (68,) mean normalized distance to dlib's point."""
    iod = inter_ocular(dlib_points)
    cost = np.mean(np.linalg.norm(dlib_points[:, :, None, :] - meshes[:, None, :, :2], axis=-1)
                   / iod[:, None, None], axis=0)  # (68, 478)
    midline = mirror == np.arange(len(mirror))
    table = np.zeros(68, np.int64)
    for i in range(68):
        joint = cost[i] + cost[IBUG68_MIRROR[i]][mirror]
        if IBUG68_MIRROR[i] == i:
            joint = np.where(midline, joint, np.inf)
        table[i] = joint.argmin()
    return table, cost[np.arange(68), table]


def format_table(name: str, values: np.ndarray, per_line: int = 19) -> str:
    rows = [", ".join(str(v) for v in values[i : i + per_line]) + "," for i in range(0, len(values), per_line)]
    return f"{name} = np.array([\n" + "\n".join(f"    {r}" for r in rows) + "\n], dtype=np.int64)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of face videos (*.mp4)")
    parser.add_argument("--step", type=int, default=8, help="use every step-th frame")
    parser.add_argument("--max-videos", type=int, default=0, help="use only the first N videos (0 = all)")
    args = parser.parse_args()

    videos = sorted(args.videos.glob("*.mp4"))[: args.max_videos or None]
    if not videos:
        print(f"{args.videos}: no *.mp4 videos", file=sys.stderr)
        return 1
    dlib_points, meshes = collect_pairs(videos, args.step)
    print(f"{len(dlib_points)} frames from {len(videos)} videos")
    if len(dlib_points) < 2:
        print("too few frames with one face to fit the tables", file=sys.stderr)
        return 1

    mirror = mesh_mirror(meshes)
    involution = bool(np.array_equal(mirror[mirror], np.arange(len(mirror))))
    table, error = ibug_table(dlib_points, meshes, mirror)
    symmetric = bool(np.array_equal(mirror[table], table[IBUG68_MIRROR]))

    print(f"MESH_MIRROR is an involution: {involution}; "
          f"differs from layout.py at {int((mirror != layout.MESH_MIRROR).sum())} of 478 vertices")
    print(f"MESH_TO_IBUG68 is mirror-symmetric: {symmetric}; "
          f"differs from layout.py at {int((table != layout.MESH_TO_IBUG68).sum())} of 68 points")
    print(f"mean NME of the fitted table on these frames: {error.mean():.4f} (worst point {error.max():.4f})")
    print()
    print(format_table("MESH_TO_IBUG68", table))
    print()
    print(format_table("MESH_MIRROR", mirror, per_line=23))
    return 0 if involution and symmetric else 1


if __name__ == "__main__":
    sys.exit(main())
