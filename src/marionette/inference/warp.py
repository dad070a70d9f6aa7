"""The training-free `warp` renderer: a baseline, not the MarioNETte generator.

ours: the target crop is warped piecewise-affinely so that its dense face mesh (478 points) moves
to the driven mesh; a Delaunay triangulation of the target's mesh plus fixed anchors on the crop
border carries hair, neck and background along smoothly while the border stays put. Where the
driven mouth is open wider than the target's, the opening is filled with a dark mouth interior and upper teeth.
With K targets, each frame uses the target whose head pose is nearest the driven pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from marionette.landmarks.layout import MESH_INNER_LIPS, mesh_to_ibug68
from marionette.landmarks.pose import head_pose


def _border_anchors(size: int, per_side: int = 4) -> np.ndarray:
    """(4·per_side, 2) fixed points along the crop border."""
    t = np.linspace(0, size - 1, per_side + 1)[:-1]
    last = size - 1
    return np.concatenate([np.stack([t, np.zeros_like(t)], 1), np.stack([np.full_like(t, last), t], 1),
                           np.stack([last - t, np.full_like(t, last)], 1), np.stack([np.zeros_like(t), last - t], 1)])


@dataclass(frozen=True)
class WarpTarget:
    """One target prepared for warping: its crop, mesh and triangulation."""

    image: np.ndarray  # (S, S, 3) uint8 crop
    mesh: np.ndarray  # (478, 3) crop pixels
    triangles: np.ndarray  # (T, 3) vertex indices into mesh + border anchors
    pose: np.ndarray  # (3,) yaw, pitch, roll in degrees
    mouth_colour: np.ndarray  # (3,) float: colour of the mouth cavity
    teeth_colour: np.ndarray  # (3,) float: colour of teeth, as bright as the face allows


class WarpRenderer:
    """Piecewise-affine warp of the nearest-pose target onto the driven mesh."""

    name = "warp"

    def __init__(self, size: int):
        self.size = size
        self.targets: list[WarpTarget] = []
        self.anchors = _border_anchors(size)  # (A, 2)
        ys, xs = np.mgrid[0:size, 0:size]
        self._pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)], 0).astype(np.float32)  # (3, S·S)

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """(K, S, S, 3) uint8 target crops and their (K, 478, 3) meshes in crop pixels (once per set)."""
        self.targets = [self._prepare_one(crop, mesh) for crop, mesh in zip(crops, meshes)]

    def _prepare_one(self, image: np.ndarray, mesh: np.ndarray) -> WarpTarget:
        """Precompute what every frame needs from one (S, S, 3) target crop and its (478, 3) mesh."""
        points = np.concatenate([mesh[:, :2], self.anchors])  # (478 + A, 2)
        triangles = Delaunay(points).simplices.astype(np.int32)
        lips = mesh[MESH_INNER_LIPS, :2].astype(np.int32)
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [lips], 1)
        inside = image[mask > 0]
        lip_colour = inside.mean(0) if len(inside) else image.reshape(-1, 3).mean(0)
        face = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(mesh[:, :2].astype(np.int32)), 1)
        brightness = float(np.clip(image[face > 0].mean() / 150.0, 0.5, 1.1))
        return WarpTarget(image, mesh.astype(np.float32), triangles, head_pose(mesh_to_ibug68(mesh)),
                          mouth_colour=0.3 * lip_colour.astype(np.float32),  # ours: a dark, lip-tinted cavity
                          teeth_colour=np.array([225, 218, 205], np.float32) * brightness)

    def render(self, driven_mesh: np.ndarray) -> np.ndarray:
        """(478, 3) driven mesh in crop pixels -> (S, S, 3) uint8 frame."""
        pose = head_pose(mesh_to_ibug68(driven_mesh))
        target = min(self.targets, key=lambda t: float(np.abs(t.pose[:2] - pose[:2]).sum()))
        src = np.concatenate([target.mesh[:, :2], self.anchors]).astype(np.float32)  # (V, 2)
        dst = np.concatenate([driven_mesh[:, :2], self.anchors]).astype(np.float32)  # (V, 2)
        frame = cv2.remap(target.image, *self._maps(src, dst, target.triangles), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        return self._fill_mouth(frame, target, driven_mesh)

    def _maps(self, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel source coordinates: each output pixel takes the affine map of its triangle."""
        size = self.size
        index = np.full((size, size), -1, np.int32)
        corners = np.round(dst[triangles] * 16).astype(np.int32)  # (T, 3, 2) fixed point, 4 bits
        for t, corner in enumerate(corners):
            cv2.fillConvexPoly(index, corner, t, cv2.LINE_8, 4)
        # affine maps dst -> src per triangle: [x y 1]·M = src at the three corners, M = D^-1·src
        # with D^-1 = adj(D) / det(D) written out (batched LAPACK is slower for 3x3 systems)
        d = np.concatenate([dst[triangles], np.ones((len(triangles), 3, 1))], 2, dtype=np.float64)  # (T, 3, 3)
        adjugate = np.stack([np.cross(d[:, 1], d[:, 2]), np.cross(d[:, 2], d[:, 0]), np.cross(d[:, 0], d[:, 1])], 2)
        det = np.einsum("tk,tk->t", d[:, 0], adjugate[:, :, 0])  # (T,)
        det = np.where(np.abs(det) < 1e-6, 1e-6, det)  # degenerate (collapsed) triangles cover no pixel
        m = adjugate @ src[triangles] / det[:, None, None]  # (T, 3, 2)
        flat = index.ravel()
        coords = np.einsum("kp,pkc->pc", self._pixels, m[np.maximum(flat, 0)])  # (S·S, 2)
        uncovered = flat < 0  # only where driven triangles fold over: keep the pixel in place
        coords[uncovered] = self._pixels[:2, uncovered].T
        return coords[:, 0].reshape(size, size).astype(np.float32), coords[:, 1].reshape(size, size).astype(np.float32)

    def _fill_mouth(self, frame: np.ndarray, target: WarpTarget, driven_mesh: np.ndarray) -> np.ndarray:
        """Fill the driven mouth opening, where it is open wider than the target's own, with a dark
        cavity and, where it is open enough, a band of teeth under the upper lip."""
        ring = driven_mesh[MESH_INNER_LIPS, :2]  # (20, 2): upper lip 0..10 (corner to corner), lower 10..19
        opened = cv2.contourArea(ring.astype(np.float32))
        own = cv2.contourArea(target.mesh[MESH_INNER_LIPS, :2].astype(np.float32))
        if opened <= own + 1.0:
            return frame
        # ours: the fill's weight is the share of the opening the target's own mouth cannot supply
        weight = (opened - own) / opened
        blur = max(self.size / 256, 0.5)
        pad = int(4 * blur) + 2  # work in the mouth's bounding box only
        x0, y0 = np.maximum(np.floor(ring.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(ring.max(0)).astype(int) + pad, self.size)
        local = ring - np.array([x0, y0], np.float32)
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(mask, [np.round(local * 16).astype(np.int32)], weight, cv2.LINE_AA, 4)
        mask = cv2.GaussianBlur(mask, (0, 0), blur)[..., None]
        upper, lower = local[:11], np.concatenate([local[10:], local[:1]])
        xs = np.arange(x1 - x0, dtype=np.float32)
        top = np.interp(xs, *upper[np.argsort(upper[:, 0])].T)  # upper inner-lip height per column
        bottom = np.interp(xs, *lower[np.argsort(lower[:, 0])].T)
        rows = np.arange(y1 - y0, dtype=np.float32)[:, None]
        depth = (rows - top) / np.maximum(bottom - top, 1.0)  # 0 at the upper lip, 1 at the lower
        # ours: upper teeth show only where the lips are apart by a tenth of the mouth's width or more
        gap_ok = (bottom - top) > 0.1 * (local[:, 0].max() - local[:, 0].min())
        teeth = cv2.GaussianBlur(((depth < 0.35) & gap_ok).astype(np.float32), (0, 0), blur)[..., None]
        fill = target.mouth_colour * (1 - teeth) + target.teeth_colour * teeth
        out = frame.copy()
        region = frame[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region + (fill - region) * mask + 0.5, 0, 255).astype(np.uint8)
        return out
