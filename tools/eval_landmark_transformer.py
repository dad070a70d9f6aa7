"""Evaluate the landmark transformer on held-out identities; print a markdown table, draw a figure.

    python tools/eval_landmark_transformer.py DATASET [--model FILE] [--png docs/landmark_transformer_pairs.png]

Cross-identity pairs: every ordered (driver clip, target clip) of different people in the held-out
splits; the K targets are evenly spaced frames of the target clip, the driver is its whole clip.
Measured in the normalised frame (pose removed), in inter-ocular distances (IOD) of the target:
  identity error: |clip mean of the output - the target clip's true mean shape|, mean over the 478
      points. The clip mean is the paper's identity component (l_mean + l_id); for the driver's raw
      landmarks it is the driver's own face shape.
  expression correlation: Pearson correlation, pooled over frames and components, between the
      clip-centred expression coefficients (b_exp^T (n - clip mean)) of the output and the driver's.
  mouth correlation: correlation over frames of the inner-lip opening (iBUG 62-66) of output and driver.
Self-reproduction: target = driver's clip (K frames), driver = each of its frames, absolute mode:
  |output - driver| in the normalised frame (absolute mode takes the targets' mean position and
  scale by design), mean over points and frames; and with the driver frame itself as the target.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from marionette.data.manifest import Manifest, clip_path
from marionette.data.store import ClipReader
from marionette.landmark_transformer.model import DEFAULT_PATH, LandmarkTransformer
from marionette.landmarks.layout import inter_ocular, mesh_to_ibug68
from marionette.landmarks.render import render_landmarks
from marionette.media import save_image


def evenly(n: int, k: int) -> np.ndarray:
    return np.linspace(0, n - 1, k).round().astype(int)


def mouth_opening(shapes: np.ndarray) -> np.ndarray:
    """(T, 478, 3) -> (T,) inner-lip gap (iBUG points 62 and 66)."""
    points = mesh_to_ibug68(shapes)  # (T, 68, 3)
    return np.linalg.norm(points[:, 62] - points[:, 66], axis=-1)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def centred_coefficients(lt: LandmarkTransformer, shapes: np.ndarray) -> np.ndarray:
    """(T, L, 3) normalised shapes of one clip -> (T, C) b_exp^T (n - clip mean)."""
    return np.einsum("tlk,clk->tc", shapes - shapes.mean(0), lt.expression_basis)


def scores(lt: LandmarkTransformer, out_shapes: np.ndarray, driver_shapes: np.ndarray,
           target_mean: np.ndarray) -> tuple[float, float, float]:
    """Identity error (IOD), expression correlation, mouth correlation of one output clip."""
    iod = inter_ocular(mesh_to_ibug68(target_mean))
    identity = np.linalg.norm(out_shapes.mean(0) - target_mean, axis=-1).mean() / iod
    expression = correlation(centred_coefficients(lt, out_shapes), centred_coefficients(lt, driver_shapes))
    mouth = correlation(mouth_opening(out_shapes), mouth_opening(driver_shapes))
    return float(identity), expression, mouth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset folder made by `marionette preprocess`")
    parser.add_argument("--model", default=str(DEFAULT_PATH), help="fitted transformer (default: the shipped one)")
    parser.add_argument("--splits", default="val,test", help="held-out splits to draw identities from")
    parser.add_argument("--k", type=int, default=8, help="target frames K")
    parser.add_argument("--png", default=None, help="write a figure of a few cross pairs here")
    parser.add_argument("--pairs", type=int, default=4, help="cross pairs in the figure")
    args = parser.parse_args()

    root = Path(args.dataset)
    lt = LandmarkTransformer.load(args.model)
    manifest = Manifest.load(root)
    entries = [c for s in args.splits.split(",") for c in manifest.split(s)]
    readers = [ClipReader(clip_path(root, c.info.clip_id)) for c in entries]
    meshes = [r.mesh() for r in readers]  # (F, 478, 3) each
    shapes = [lt.normalize(m)[0] for m in meshes]  # (F, 478, 3) normalised
    rows: dict[str, list[tuple[float, float, float]]] = {"driver's raw landmarks": [],
                                                        "landmark transformer, absolute (paper)": [],
                                                        "landmark transformer, relative": []}
    pairs = [(x, y) for x in range(len(entries)) for y in range(len(entries))
             if entries[x].info.identity != entries[y].info.identity]
    for x, y in pairs:
        targets = meshes[y][evenly(len(meshes[y]), args.k)]  # (K, 478, 3)
        target_mean = shapes[y].mean(0)
        rows["driver's raw landmarks"].append(scores(lt, shapes[x], shapes[x], target_mean))
        for mode in ("absolute", "relative"):
            out = lt(meshes[x], targets, alpha=1.0, mode=mode)
            name = "landmark transformer, absolute (paper)" if mode == "absolute" else "landmark transformer, relative"
            rows[name].append(scores(lt, out.shapes, shapes[x], target_mean))

    self_errors, exact = [], []
    for mesh, shape in zip(meshes, shapes):
        out = lt(mesh, mesh[evenly(len(mesh), args.k)], alpha=1.0, mode="absolute").shapes  # (F, 478, 3)
        self_errors.append(np.linalg.norm(out - shape, axis=-1).mean() / inter_ocular(mesh_to_ibug68(shape.mean(0))))
        same = lt(mesh[:1], mesh[:1], alpha=1.0, mode="absolute").mesh  # target = the driver frame itself
        exact.append(np.abs(same - mesh[:1]).max())
    expression_size = np.mean([np.linalg.norm(s - s.mean(0), axis=-1).mean() for s in shapes])

    identities = len({c.info.identity for c in entries})
    print(f"Held-out splits {args.splits}: {len(entries)} clips, {identities} identities, {len(pairs)} ordered "
          f"cross-identity pairs, K = {args.k}, α = 1; model {Path(args.model).name} "
          f"({lt.components} expression components, fitted on {lt.stats.get('identities')} identities).\n")
    print("| driving landmarks | identity error (IOD) ↓ | expression correlation ↑ | mouth correlation ↑ |")
    print("|---|---:|---:|---:|")
    for name, values in rows.items():
        identity, expression, mouth = np.mean(values, axis=0)
        print(f"| {name} | {identity:.4f} | {expression:.3f} | {mouth:.3f} |")
    print(f"\nSelf-reproduction (target = driver's clip, K = {args.k}, absolute): mean point error "
          f"{np.mean(self_errors):.4f} IOD (the driver's own expression moves points by {expression_size:.4f} IOD "
          f"from its clip mean); with the driver frame itself as the target: max error {max(exact):.1e} px.")

    if args.png:
        tiles = []
        shown = [(x, (x + 1) % len(entries)) for x in range(len(entries))]  # each clip drives the next
        for x, y in [(x, y) for x, y in shown if (x, y) in pairs][: args.pairs]:
            frame = int(np.argmax(mouth_opening(shapes[x])))  # the widest-open mouth: a visible expression
            target_frames = evenly(len(meshes[y]), args.k)
            out = lt(meshes[x][frame : frame + 1], meshes[y][target_frames], alpha=1.0, mode="absolute")
            size = readers[x].info.size
            tiles.append(np.concatenate([
                readers[x].images([frame])[0],
                readers[y].images([target_frames[0]])[0],
                render_landmarks(mesh_to_ibug68(meshes[x][frame]), size),
                render_landmarks(out.ibug68[0], size),
            ], axis=1))
        save_image(args.png, np.concatenate(tiles, axis=0))
        print(f"\nFigure: {args.png} (rows: cross pairs; columns: driver | target | driver's landmarks | transformed)")


if __name__ == "__main__":
    main()
