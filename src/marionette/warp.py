"""The training-free `warp` renderer: a baseline, not the MarioNETte generator.

ours: the target crop is warped so that its dense face mesh (478 points) moves to the driven mesh,
treating the mesh as a 3D surface:
- one fixed triangulation of the face surface (vertices 0..467: MediaPipe's own, wound
  consistently, with the eye and mouth openings filled), shared by every target and frame; a
  triangle facing away in the driven mesh is dropped and the others are drawn far to near
  (painter's order by depth), so a turned head folds nothing;
- a triangle the target shows folded or edge-on while the driven mesh shows it (the side of a face
  turned towards the camera) is not stretched from that sliver: the smooth field below draws it;
- a triangle the target shows foreshortened or not at all (the far cheek of a turned face) takes
  its texture from its mirror image on the other side of the face;
- beyond the face (hair, ears, neck, background) a smooth displacement field, interpolated from
  the silhouette's motion and decaying to zero at the crop border, carries the rest along;
- eyes: the opening between the driven eyelids is redrawn with the target's eye white and its iris
  moved to the driven iris points (468..477), so the gaze follows; an eye the driver shuts on a
  target whose eye is open gets a drawn closed lid (the skin around it carried over the eye, a lash
  line where the lids meet), since the target's own lid and lashes stretched over it read as open;
- mouth: the opening between the driven inner lips shows the interior of the target (of the K)
  whose open mouth is nearest in shape, carried by its jaws (what lies under its upper lip moves
  with the driven upper lip, what lies over its lower lip with the lower, teeth at their own size),
  over a soft shaded cavity that opens between them; where the pipeline hands over the driver's own
  mouth, the driver's teeth in the target's light in that cavity (with no open-mouthed target, the
  whole opening is cavity); it opens only with the driven lips; as it shuts, an open target's interior
  turns to the dark of a seam, and a target photographed mid-shout takes its lips from a copy with the
  cavity at their inner edge filled;
- K targets: each frame blends the nearest-pose targets with weights smoothed over time, so the
  output moves from one target to another without a jump.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from marionette.landmarks.crop import CropConfig
from marionette.landmarks.frontal import frontal_mesh
from marionette.landmarks.layout import (
    LOWER_LID,
    MESH_EYE_OPENINGS,
    MESH_FACE_OVAL,
    MESH_INNER_LIPS,
    MESH_IRIS_START,
    MESH_IRISES,
    MESH_MIRROR,
    MESH_OUTER_LIPS,
    MESH_TO_IBUG68,
    UPPER_LID,
    mesh_to_ibug68,
)
from marionette.landmarks.measures import LIP_GAP, lip_gap
from marionette.landmarks.pose import head_pose
from marionette.resources import asset

MIRROR_FROM, MIRROR_FULL = 0.7, 0.25  # a face triangle the target shows at under MIRROR_FROM times its mirror
# image's area takes texture from that mirror image, fully at MIRROR_FULL, blended in between
MIRROR_EYE = 0.6  # an eye the target shows under this share of the other's width is drawn from the other
GAZE_REDRAW = 0.04  # eye widths the iris moves within the lids before the eye is fully redrawn
SHUT_LID = (0.15, 0.25)  # ours: a driven eye opened under SHUT_LID[1] of the target's own opening gets a drawn closed
#   lid, wholly from SHUT_LID[0]: the target's lid and lashes stretched over the eye read to a face mesh as an eye
#   still open (0.12-0.14 eye openness where the driver's reads 0.03-0.06)
LID_SPAN = (0.45, 0.1)  # ours: the closed lid drawn from the line where the lids meet up to 0.45 and down to 0.1 eye
#   widths at the eye's middle (the stretched lashes lie within it), tapering to the corners; up to no more than
#   LID_TO_BROW of the way to the brow (more carried the brow's dark down into the lid of a low-browed face)
LID_TO_BROW = 0.5
LASH_WIDTH = 0.04  # ours: the closed lid's lash line, eye widths thick at its middle
LID_GRAIN = (0.8, 0.45, 0.03)  # ours: the closed lid takes 0.8 of the fine detail (finer than 0.03 eye widths, clipped
#   at twice its spread) of the skin 0.45 eye widths below it, under the eye: an inpainted lid was smoother than the
#   skin around it (an airbrushed patch on a wrinkled or painted face)
LID_LIGHT, LID_LIT, LID_EDGE = 0.75, (0.05, 0.3), 0.1  # ours: the closed lid's middle, 0.05 to 0.3 eye widths above
#   where the lids meet (its edge blurred by 0.1), brought 0.75 of the way to the luma of the target's cheeks, no
#   lighter than the skin around the lid, its hue kept: inpainted from a shadowed socket (paintings, deep-set eyes), a
#   lid stayed dark brown and a face mesh read the eye open above the lash line (0.15-0.25 where the driven reads
#   0.0-0.06); the cheeks' colour itself was a pale patch under a shadowing fringe, dimmed a grey one
OPEN_TARGET_EYE = 0.08  # ours: a target eye whose opening is under this area (eye units) is closed itself: no lid drawn
DRAWN_WHITE, DRAWN_SHADOW, WHITE_TINT, DRAWN_IRIS, DRAWN_OPENING = 0.97, 0.64, 0.5, (0.35, (1.17, 0.94, 0.84)), 0.12
#   ours: a target whose eyes are both shut shows no white or iris (its lid stretched open was a grey-brown blob); its
#   opened eyes are drawn with those of the median open eye of the bundled faces and paintings (45 eyes) in its
#   cheeks' light: the white's and shadowed white's luma over the cheeks' luma, tinted by half the cheeks' tint (their
#   RGB over their luma; measured 0.7, quartiles 0.48-0.94, lashes and lid margins included; at 0.7 the white was the
#   skin's colour); the iris's luma over the cheeks' and its RGB over its own luma. DRAWN_OPENING: the opening (eye
#   units) the drawn white is lit from, brightening to 1.3 times it (from the median open eye's, 0.245: grey, dead eyes)
IRIS_RINGS = ((0.4, 0.55), (0.85, 0.8))  # ours: the drawn iris's pupil (within 0.4 of its radius, 0.55 of its colour)
#   and limbal ring (beyond 0.85, 0.8 of it), its middle as light as keeps the disc's mean at DRAWN_IRIS
CAVITY = 0.15  # ours: a drawn mouth cavity's colour, of the lips'; a face mesh read lips parted over a cavity twice
#   as light (0.3) shut on a pouting target (0.015-0.028 where the driven lips part 0.13-0.20; at 0.15 it read 0.04-0.07)
MOUTH_OPEN = 0.08  # inner-lip gap / mouth width at which a mouth is fully open (the fill fades in from half of it)
STRETCH = (1.5, 2.5)  # ours: the driver's teeth show in the cavity between an open target's jaws as the driven opening
#   grows from 1.5 to 2.5 times the target's (a smile's sliver of teeth cannot fill a bared-teeth grimace)
JAW_FILL = 1.25  # ours: an open target's interior, carried by its jaws, stretches up to 1.25 times to fill a driven
#   opening wider than its own (no dark sliver where the two are alike); beyond it the cavity opens between its parts
#   (the whole interior stretched over a wider opening was bars of teeth, a third of the way to the driver's, grey)
JAW_GAP = (0.45, 0.25)  # ours: a target's interior splits into its jaws' parts at the middle of its longest run of pixels
#   darker than 0.45 of its light (its 90th percentile luma) spanning 0.25 of the gap; a column without one (teeth
#   from lip to lip: a smile shows the upper ones) goes whole with the upper lip
LIP_INSIDE = (0.6, 1.25)  # ours: between an open target's inner and outer lips, a pixel darker than 0.6 of the lips'
#   light (the median of their lighter half) or lighter than 1.25 times it and paler is its mouth's cavity or teeth, not
#   lip: where a face mesh's inner lips lie inside the opening (a shout), a mouth driven shut drew them as shards
SHOUT = (0.3, 0.6)  # ours: only a target whose lips are apart by more than 0.3 of its mouth's width (fully from 0.6)
#   is shut with those pixels filled from its lips (`_shut_mouth`); at smaller openings they make the dark seam of lips
#   that meet (filled there too: the mouth's PSNR in self-reenactment −0.2 to −0.35 dB)
SEAM = (0.1, 0.6)  # ours: an open target's interior, squeezed between lips driven shut, is drawn 0.6 times as light as
#   the mean of its lips' darkest tenth: its teeth were a white line between shut lips
JAW_COLUMNS, JAW_ROWS = 31, 19  # where a target's interior is sampled for its split: across the mouth, across the gap
POSE_SIGMA = 4.0  # degrees: how fast a target's blend weight falls with its pose distance to the driven pose
FOLLOW = 0.15  # per frame: how fast the blend weights move to the current frame's (1 = no smoothing)
WEIGHT_FLOOR = 0.03  # blend weights below this are dropped (the rest renormalised): fewer targets to warp
FOLDED = 0.15  # a face triangle the target shows under this share of its frontal area is folded or edge-on there
FACE_TRIANGLES = "face_triangles.json"  # package asset: the face surface's triangles
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 weights of R, G, B
_SHIFT = 4  # sub-pixel bits of cv2 drawing
_UPPER_LIP = slice(0, 11)  # MESH_INNER_LIPS[0..10]: upper inner lip, corner to corner
_LOWER_LIP = [0, *range(19, 10, -1), 10]  # MESH_INNER_LIPS positions of the lower inner lip, corner to corner
_JAW_ACROSS = np.linspace(0.05, 0.95, JAW_COLUMNS)  # _jaw_split's columns, as shares of the way from corner to corner
_LIP_GAP = [int(np.flatnonzero(MESH_INNER_LIPS == i)[0]) for i in LIP_GAP]  # lip_gap's four points in the ring


@functools.cache
def face_triangles() -> np.ndarray:
    """(T, 3) triangles of the face surface (vertices 0..467): MediaPipe's own tessellation of its
    canonical face, every triangle wound the same way round the surface (so one facing away in a
    driven mesh has a negative signed area, a turned cheek's included), plus the openings of the
    eyes and mouth filled (assets/face_triangles.json, written by tools/derive_face_triangles.py)."""
    return np.array(json.loads(asset(FACE_TRIANGLES).read_text()), np.int32)


@functools.cache
def _opening_triangles() -> np.ndarray:
    """(T,) bool: face triangles inside the mouth's or an eye's opening (all corners on its rim)."""
    rims = [set(MESH_INNER_LIPS.tolist()), *(set(opening.tolist()) for opening in MESH_EYE_OPENINGS)]
    return np.array([any(set(t.tolist()) <= rim for rim in rims) for t in face_triangles()])


@functools.cache
def _frontal_areas() -> np.ndarray:
    """(T,) areas of the face triangles in the frontal mean mesh, per squared inter-ocular unit (the
    sides of the face, which it shows facing away, by their size)."""
    frontal = frontal_mesh()
    return np.abs(signed_areas(frontal[face_triangles(), :2])) / eye_span(frontal) ** 2


def signed_areas(corners: np.ndarray) -> np.ndarray:
    """(..., 3, 2) triangle corners -> (...,) signed areas (positive: clockwise on screen, y down)."""
    ab, ac = corners[..., 1, :] - corners[..., 0, :], corners[..., 2, :] - corners[..., 0, :]
    return 0.5 * (ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0])


def eye_span(mesh: np.ndarray) -> float:
    """3D distance between the outer eye corners of a (478, 3) mesh: its size, whatever its pose."""
    return float(np.linalg.norm(mesh[MESH_EYE_OPENINGS[0, 0]] - mesh[MESH_EYE_OPENINGS[1, 0]]))


def _border_anchors(size: int, per_side: int = 8) -> np.ndarray:
    """(4·per_side, 2) fixed points along the crop border."""
    t = np.linspace(0, size - 1, per_side + 1)[:-1]
    last = size - 1
    return np.concatenate([np.stack([t, np.zeros_like(t)], 1), np.stack([np.full_like(t, last), t], 1),
                           np.stack([last - t, np.full_like(t, last)], 1), np.stack([np.zeros_like(t), last - t], 1)])


class SmoothField:
    """The displacement beyond the face in a `size` crop: moves given at some points (the silhouette's),
    spread by inverse-distance weighting on a coarse grid (exact at the points, so continuous with the
    face), zero at fixed points along the crop border and tapering to zero at the border itself."""

    def __init__(self, size: int):
        self.size = size
        self.anchors = _border_anchors(size)  # (A, 2)
        self.cells = max(size // 16, 2)  # computed on a coarse grid, then resized
        centres = (np.arange(self.cells) + 0.5) * size / self.cells - 0.5  # cv2.resize's sample positions
        self.grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)  # (G·G, 2)
        ys, xs = np.mgrid[0:size, 0:size]
        inward = np.minimum(np.minimum(xs, size - 1 - xs), np.minimum(ys, size - 1 - ys))
        self.taper = np.clip(inward / (0.05 * size), 0, 1).astype(np.float32)[..., None]  # (S, S, 1) 0 on the border

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """(N, 2) points at `dst` whose move takes them to `src` -> (S, S, 2) float32 move of every pixel."""
        points = np.concatenate([dst, self.anchors])  # (N + A, 2)
        moves = np.concatenate([src - dst, np.zeros_like(self.anchors)])  # (N + A, 2)
        weights = 1.0 / (((self.grid[:, None] - points[None]) ** 2).sum(-1) + 1e-3)  # (G·G, N + A)
        field = (weights @ moves) / weights.sum(1, keepdims=True)  # (G·G, 2)
        field = cv2.resize(field.reshape(self.cells, self.cells, 2).astype(np.float32), (self.size, self.size),
                           interpolation=cv2.INTER_LINEAR)  # (S, S, 2)
        return field * self.taper


@functools.lru_cache(maxsize=4)
def _smooth_field(size: int) -> SmoothField:
    return SmoothField(size)


def _affine_maps(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(T, 3, 2) triangle corners in the output and in the source -> (T, 3, 2) maps M with
    [x y 1]·M = the source point of output point (x, y). M = D^-1·src with D^-1 = adj(D) / det(D)
    written out (batched LAPACK is slower for 3x3 systems); degenerate triangles get a huge det^-1
    but cover no pixel."""
    d = np.concatenate([dst, np.ones(dst.shape[:2] + (1,))], 2, dtype=np.float64)  # (T, 3, 3)
    adjugate = np.stack([np.cross(d[:, 1], d[:, 2]), np.cross(d[:, 2], d[:, 0]), np.cross(d[:, 0], d[:, 1])], 2)
    det = np.einsum("tk,tk->t", d[:, 0], adjugate[:, :, 0])  # (T,)
    det = np.where(np.abs(det) < 1e-6, 1e-6, det)
    return adjugate @ src / det[:, None, None]


def _mapped(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y) (N,) each under its own affine map (N, 3, 2) -> their source (x, y), float32."""
    return ((maps[:, 0, 0] * x + maps[:, 1, 0] * y + maps[:, 2, 0]).astype(np.float32),
            (maps[:, 0, 1] * x + maps[:, 1, 1] * y + maps[:, 2, 1]).astype(np.float32))


def _paint_index(shape: tuple[int, int], corners: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(H, W) int32 map of which triangle covers each pixel (-1: none), triangles painted in
    `order` (later ones cover earlier ones); corners (T, 3, 2) in pixels."""
    index = np.full(shape, -1, np.int32)
    fixed = np.round(corners * (1 << _SHIFT)).astype(np.int32)  # (T, 3, 2)
    for t in order:
        cv2.fillConvexPoly(index, fixed[t], int(t), cv2.LINE_8, _SHIFT)
    return index


def motion_map(source: np.ndarray, mesh: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(478, 2+) meshes of one face in two images of `size` pixels -> (size, size) float32 x and y maps
    for cv2.remap: each pixel of the image at `mesh` taken from where the same point of the face is in
    the image at `source` (piecewise affine over the face triangles; pixels off the face moved as the
    warp's smooth field moves them, by the silhouette's move: hair and headwear go with the head)."""
    triangles = face_triangles()
    corners = mesh[triangles, :2]  # (T, 3, 2)
    index = _paint_index((size, size), corners, np.arange(len(triangles)))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)  # (S, S) each
    face = index >= 0
    on_face = _mapped(_affine_maps(corners, source[triangles, :2])[index[face]], xs[face], ys[face])
    move = _smooth_field(size)(_silhouette(source), _silhouette(mesh))  # (S, S, 2) back to `source`
    xs, ys = xs + move[..., 0], ys + move[..., 1]
    xs[face], ys[face] = on_face
    return xs, ys


def _grain(frame: np.ndarray, box: tuple[int, int, int, int], shift: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w, 3) float32 fine detail for the `box` (x0, y0, x1, y1) of an (S, S, 3) float32 frame, taken from the
    frame `shift` (2,) pixels away: the frame there less its blur by `sigma` pixels, clipped at twice its luma's spread."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    patch = cv2.remap(frame, xs + float(shift[0]), ys + float(shift[1]), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    detail = patch - cv2.GaussianBlur(patch, (0, 0), max(sigma, 0.7))
    bound = 2 * float((detail @ LUMA).std()) + 1e-3
    return np.clip(detail, -bound, bound)


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """(H, W) float32 anti-aliased coverage of an (N, 2) polygon in pixels."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * (1 << _SHIFT)).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    return mask.astype(np.float32) / 255.0


def _box(points: np.ndarray, pad: int, size: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) around (N, 2) points plus `pad`, inside a size x size crop."""
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + pad + 1, size)
    return int(x0), int(y0), int(x1), int(y1)


def _inside(polygon: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the pixels of a size x size crop more than half covered by an (N, 2) polygon."""
    x0, y0, x1, y1 = _box(polygon, 1, size)
    ys, xs = np.nonzero(_polygon_mask((y1 - y0, x1 - x0), polygon - np.array([x0, y0])) > 0.5)
    return ys + y0, xs + x0


@dataclass(frozen=True)
class EyeTexture:
    """One eye of a target, ready to redraw: its iris as a patch and the colour of its white."""

    iris: np.ndarray  # (P, P, 3) float32 the iris centred, the parts its lids hid filled with its mean colour
    alpha: np.ndarray  # (P, P) float32 soft disc of the iris
    radius: float  # iris radius in the target crop, pixels
    white: np.ndarray  # (3,) float32 colour of the eye white, open (the brightest quarter of the opening beside the iris)
    shadow: np.ndarray  # (3,) float32 ... in the lids' shadow (the opening's median beside the iris, lashes and margins in it)
    frame: np.ndarray  # (2, 3) the target's eye frame: eye units -> crop pixels (see _eye_frame)
    opening: np.ndarray  # (N, 2) the target's eye opening in eye units
    gaze: np.ndarray  # (2,) the target's iris centre in eye units
    lash: np.ndarray  # (3,) float32 colour of its lashes (the darkest tenth of the band along its upper lid)


@dataclass(frozen=True)
class WarpTarget:
    """One target prepared for warping."""

    image: np.ndarray  # (S, S, 3) uint8 crop
    mesh: np.ndarray  # (478, 3) crop pixels
    mirrored: np.ndarray  # (T, 3, 2) each face triangle's mirror image in the target (the other side of the face)
    mirror_weight: np.ndarray  # (T,) how much of each triangle's texture may come from its mirror image
    shown: np.ndarray  # (T,) each triangle's area in the target per its area seen face on
    pose: np.ndarray  # (3,) yaw, pitch, roll in degrees
    eyes: tuple[EyeTexture, EyeTexture]  # subject's right, left
    mouth_gap: float  # inner-lip gap / mouth width
    cavity: np.ndarray  # (3,) float32 colour of a mouth cavity drawn for this face
    skin: np.ndarray | None  # (3,) float32 RGB of its cheeks (skin_colour): the light a driver's teeth are matched to
    outline: np.ndarray  # (N, 2) its face outline on its silhouette (see _silhouette)
    jaw_split: np.ndarray | None  # (JAW_COLUMNS,) where its open mouth's interior splits (`_jaw_split`); None: shut
    shut_image: np.ndarray | None  # (S, S, 3) uint8 the crop as its open mouth is drawn shut (`_shut_mouth`); None: shut


def _eye_frame(opening: np.ndarray, side: int) -> np.ndarray:
    """(2, 3) affine map from eye units (outer corner at (-1/2, 0), inner at (1/2, 0), y towards the
    chin, same scale) to pixels, for an eye opening (N, 2) that starts at its outer corner and has
    its inner corner at N/2; `side` +1 for the subject's right eye, -1 for the left."""
    outer, inner = opening[0].astype(np.float64), opening[len(opening) // 2].astype(np.float64)
    axis = inner - outer
    return np.stack([axis, side * np.array([-axis[1], axis[0]]), (outer + inner) / 2], 1)


EYE_SIDES = (1, -1)  # _eye_frame's side of each row of MESH_EYE_OPENINGS
MESH_BROWS = (MESH_TO_IBUG68[17:22], MESH_TO_IBUG68[22:27])  # each eye's brow (subject's right, left), as MESH_EYE_OPENINGS


def _eye_texture(image: np.ndarray, mesh: np.ndarray, opening: np.ndarray, iris: np.ndarray, side: int) -> EyeTexture:
    """Cut one eye's iris out of an (S, S, 3) crop and measure its white."""
    centre = mesh[iris[0], :2].astype(np.float64)
    radius = max(float(np.linalg.norm(mesh[iris[1:], :2] - centre, axis=1).mean()), 1.0)
    half = int(np.ceil(1.5 * radius)) + 1
    width = 2 * half + 1
    to_patch = np.array([[1.0, 0.0, centre[0] - half], [0.0, 1.0, centre[1] - half]])  # patch -> crop
    patch = cv2.warpAffine(image, to_patch, (width, width), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    yy, xx = np.mgrid[0:width, 0:width] - half
    alpha = np.clip(radius + 0.5 - np.hypot(xx, yy), 0, 1).astype(np.float32)  # (P, P)
    shown = _polygon_mask((width, width), mesh[opening, :2] - (centre - half))  # what the lids left visible
    known = (alpha > 0.5) & (shown > 0.5)
    colour = patch[known].mean(0) if known.sum() >= 3 else np.array([70, 55, 45], np.float32)
    filled = patch * shown[..., None] + colour * (1 - shown[..., None])
    # the white (ours): the opening outside the iris, the median colour of its brightest quarter, and in the
    # lids' shadow that of all of it, lashes, lid margins and liner included (a narrowed eye drawn with the
    # bright white was read open by a face mesh; a wide one drawn with the shadowed white had brown whites)
    ys, xs = _inside(mesh[opening, :2], image.shape[0])
    white_px = image[ys, xs][np.hypot(xs - centre[0], ys - centre[1]) > 1.2 * radius].astype(np.float32)
    if len(white_px) >= 4:
        luma = white_px @ LUMA
        white, shadow = np.median(white_px[luma >= np.quantile(luma, 0.75)], 0), np.median(white_px, 0)
    else:
        white = shadow = np.array([215, 205, 195], np.float32)
    frame = _eye_frame(mesh[opening, :2], side)
    units = np.linalg.solve(frame[:, :2], (mesh[opening, :2] - frame[:, 2]).T).T  # (N, 2) pixels -> eye units
    gaze = np.linalg.solve(frame[:, :2], centre - frame[:, 2])
    lid = mesh[opening[UPPER_LID], :2].astype(np.float64)  # (7, 2) the upper lid, outer corner to inner
    band_px = image[_inside(np.concatenate([lid, (lid - frame[:, 1] * 0.15)[::-1]]), image.shape[0])].astype(np.float32)
    if len(band_px) >= 10:
        luma = band_px @ LUMA
        lash = band_px[luma <= np.quantile(luma, 0.1)].mean(0)
    else:
        lash = np.array([40, 32, 28], np.float32)
    return EyeTexture(filled, alpha, radius, white.astype(np.float32), shadow.astype(np.float32), frame,
                      units.astype(np.float32), gaze.astype(np.float32), lash.astype(np.float32))


def _drawn_eye(eye: EyeTexture, skin: np.ndarray) -> EyeTexture:
    """A shut target eye's texture with a drawn white and iris (DRAWN_WHITE, DRAWN_SHADOW, DRAWN_IRIS,
    IRIS_RINGS) in the light of its cheeks' (3,) colour `skin`; its iris disc, frame and opening kept."""
    light = float(skin @ LUMA)
    white_tint = 1 + WHITE_TINT * (skin / light - 1)  # (3,) RGB over luma

    def colour(luma: float, tint: np.ndarray) -> np.ndarray:
        return np.clip(luma * light * np.asarray(tint, np.float32), 0, 255).astype(np.float32)

    half = (eye.iris.shape[0] - 1) / 2
    yy, xx = np.mgrid[0:eye.iris.shape[0], 0:eye.iris.shape[1]] - half
    r = np.hypot(xx, yy) / eye.radius  # (P, P) in iris radii
    (pupil, pupil_gain), (rim, rim_gain) = IRIS_RINGS
    middle = (1 - pupil**2 * pupil_gain - (1 - rim**2) * rim_gain) / (rim**2 - pupil**2)  # the disc's mean gain 1
    gain = np.where(r < pupil, pupil_gain, np.where(r > rim, rim_gain, middle)).astype(np.float32)
    gain = cv2.GaussianBlur(gain, (0, 0), max(0.1 * eye.radius, 0.5))
    iris = np.clip(colour(*DRAWN_IRIS) * gain[..., None], 0, 255).astype(np.float32)  # (P, P, 3)
    return replace(eye, iris=iris, white=colour(DRAWN_WHITE, white_tint), shadow=colour(DRAWN_SHADOW, white_tint))


SKIN_PATCHES = ([36, 41, 31, 2, 1], [45, 46, 35, 14, 15])  # ours: each upper cheek, by ibug-68 points (lower eyelid,
#   nose, jaw): skin seldom under a beard, a fringe or a moustache


def skin_colour(image: np.ndarray, mesh: np.ndarray) -> np.ndarray | None:
    """(3,) float32 the median RGB colour of both upper cheeks of an (H, W, 3) uint8 RGB image with
    its (478, 3) mesh in its pixels; None where they show too few pixels."""
    points = mesh_to_ibug68(mesh)[:, :2]
    pixels = []
    for patch in SKIN_PATCHES:
        polygon = points[patch]
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + 1, image.shape[1::-1])
        if x1 > x0 and y1 > y0:
            inside = _polygon_mask((y1 - y0, x1 - x0), polygon - np.array([x0, y0])) > 0.5
            pixels.append(image[y0:y1, x0:x1][inside])
    pixels = np.concatenate(pixels) if pixels else np.zeros((0, 3), np.uint8)
    if len(pixels) < 16:
        return None
    return np.median(pixels, 0).astype(np.float32)


@dataclass(frozen=True)
class DriverMouth:
    """ours: one driver frame's mouth, to show what a mouth opened wider than every target's holds (its teeth)."""

    image: np.ndarray  # (h, w, 3) uint8 the driver frame around its mouth
    ring: np.ndarray  # (20, 2) float32 its inner lips in that patch's pixels
    gap: float  # its inner-lip gap / mouth width
    skin: np.ndarray | None  # (3,) float32 RGB of its cheeks (skin_colour): the light its teeth are seen in


def driver_mouth(frame: np.ndarray, mesh: np.ndarray, skin: np.ndarray | None) -> DriverMouth:
    """The mouth of an (H, W, 3) uint8 driver frame with its (478, 3) mesh in frame pixels, the patch
    cut wide enough for _mouth_interior's soft edge; `skin`: its skin colour (skin_colour)."""
    ring = mesh[MESH_INNER_LIPS, :2].astype(np.float32)
    pad = int(0.5 * np.ptp(ring[:, 0])) + 2
    x0, y0 = np.maximum(np.floor(ring.min(0)).astype(int) - pad, 0)
    x1, y1 = np.maximum(np.minimum(np.ceil(ring.max(0)).astype(int) + pad + 1, frame.shape[1::-1]), (x0 + 1, y0 + 1))
    return DriverMouth(frame[y0:y1, x0:x1].copy(), ring - np.array([x0, y0], np.float32), float(lip_gap(mesh)), skin)


def _silhouette(mesh: np.ndarray) -> np.ndarray:
    """(N, 2) the face-outline vertices of a (478, 3) mesh, each moved to the nearest point of its
    silhouette (the convex hull of the face surface) where it lies inside it: on the far side of a
    turned face the outline is hidden behind the cheek or the nose, and what lies beside it is the
    face, not the background the displacement field should carry. The nearest point moves no more
    than the vertex and the hull do (ours; the outline pushed out along rays from the face's centre
    swung from the nose tip to the brow where a hidden vertex lay near the centre, a pull of 90 px
    that drew a second profile beside a turned target's face)."""
    hull = cv2.convexHull(mesh[:MESH_IRIS_START, :2].astype(np.float32))[:, 0].astype(np.float64)  # (H, 2)
    outline = mesh[MESH_FACE_OVAL, :2].astype(np.float64)  # (N, 2)
    edges = np.roll(hull, -1, 0) - hull  # (H, 2)
    along = ((outline[:, None] - hull[None]) * edges[None]).sum(-1) / np.maximum((edges**2).sum(-1), 1e-12)  # (N, H)
    nearest = hull[None] + np.clip(along, 0, 1)[..., None] * edges[None]  # (N, H, 2) on each edge
    which = ((nearest - outline[:, None]) ** 2).sum(-1).argmin(1)  # (N,)
    return nearest[np.arange(len(outline)), which].astype(np.float32)


class WarpRenderer:
    """Depth-ordered piecewise-affine warp of the nearest-pose targets onto the driven mesh. A
    Renderer (inference/renderers.py): default crops, one frame per call, numpy on the CPU."""

    name = "warp"
    crop = CropConfig()
    batched = False
    placement = None

    def __init__(self, size: int):
        self.crop_size = size
        self.targets: list[WarpTarget] = []
        ys, xs = np.mgrid[0:size, 0:size]
        self._pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)], 0).astype(np.float32)  # (3, S·S)
        self._spread = _smooth_field(size)
        self._weights: np.ndarray | None = None  # (K,) smoothed blend weights of the targets

    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """(K, S, S, 3) uint8 target crops and their (K, 478, 3) meshes in crop pixels (once per set;
        starts a new stream: the blend weights start afresh)."""
        self.targets = [self._prepare_one(crop, mesh.astype(np.float32)) for crop, mesh in zip(crops, meshes)]
        self._weights = None

    def _prepare_one(self, image: np.ndarray, mesh: np.ndarray) -> WarpTarget:
        """Precompute what every frame needs from one (S, S, 3) target crop and its (478, 3) mesh."""
        triangles = face_triangles()
        frontal = _frontal_areas() * eye_span(mesh) ** 2  # (T,) each triangle's area if seen face on
        own = mesh[triangles, :2]  # (T, 3, 2)
        mirrored = mesh[MESH_MIRROR[triangles], :2]  # its mirror image: a reflection, so orientation flips
        shown, shown_mirrored = signed_areas(own) / frontal, -signed_areas(mirrored) / frontal
        ratio = shown / np.maximum(shown_mirrored, 1e-3)
        mirror_weight = np.clip((MIRROR_FROM - ratio) / (MIRROR_FROM - MIRROR_FULL), 0, 1) * (shown_mirrored > 0.3)
        lips = _polygon_mask(image.shape[:2], mesh[MESH_INNER_LIPS, :2]) > 0.5
        lip_colour = image[lips].mean(0) if lips.any() else image.reshape(-1, 3).mean(0)
        eyes = [_eye_texture(image, mesh, opening, iris, side)
                for opening, iris, side in zip(MESH_EYE_OPENINGS, MESH_IRISES, EYE_SIDES)]
        widths = [np.linalg.norm(mesh[opening[0], :2] - mesh[opening[8], :2]) for opening in MESH_EYE_OPENINGS]
        for eye in (0, 1):  # an eye turned away is drawn from the other one (their eye units mirror each other)
            if widths[eye] < MIRROR_EYE * widths[1 - eye]:
                eyes[eye] = eyes[1 - eye]
        skin = skin_colour(image, mesh)
        shut = [bool(cv2.contourArea(e.opening) < OPEN_TARGET_EYE) for e in eyes]
        if all(shut):
            eyes = eyes if skin is None else [_drawn_eye(e, skin) for e in eyes]
        elif any(shut):  # a wink (ours): the shut eye opens with the open one's white and iris
            eye, other = eyes[shut.index(True)], eyes[shut.index(False)]
            eyes[shut.index(True)] = replace(eye, iris=other.iris, alpha=other.alpha, radius=other.radius,
                                             white=other.white, shadow=other.shadow)
        gap = float(lip_gap(mesh))
        return WarpTarget(image, mesh, mirrored.astype(np.float32), mirror_weight.astype(np.float32), shown,
                          head_pose(mesh_to_ibug68(mesh)), (eyes[0], eyes[1]), gap,
                          cavity=(CAVITY * lip_colour).astype(np.float32), skin=skin, outline=_silhouette(mesh),
                          jaw_split=_jaw_split(image, mesh[MESH_INNER_LIPS, :2]) if gap >= MOUTH_OPEN else None,
                          shut_image=_shut_mouth(image, mesh, gap) if gap >= MOUTH_OPEN else None)

    def render(self, driven_mesh: np.ndarray, mouth: DriverMouth | None = None) -> np.ndarray:
        """(478, 3) driven mesh in crop pixels -> (S, S, 3) uint8 frame; `mouth`: the driver's, shown
        where the driven mouth opens and no target shows an open mouth (else a drawn cavity)."""
        weights = self._blend_weights(head_pose(mesh_to_ibug68(driven_mesh)))
        main = self.targets[int(np.argmax(weights))]
        shown = self._shown(driven_mesh)
        # ours: what the main target cannot texture (a sliver stretched, a fold) is left to the smooth
        # field that carries the hair: no shards where a turn shows what the target hid
        index = self.coverage(driven_mesh, self._unshown(main, shown))
        outline = _silhouette(driven_mesh)
        frame = np.zeros((self.crop_size, self.crop_size, 3), np.float32)
        for k in np.flatnonzero(weights):
            frame += weights[k] * self._warp(self.targets[k], driven_mesh, index, outline, shown)
        for eye, opening, iris, brow, side in zip(main.eyes, MESH_EYE_OPENINGS, MESH_IRISES, MESH_BROWS, EYE_SIDES):
            self._draw_eye(frame, eye, _eye_frame(driven_mesh[opening, :2], side),
                           driven_mesh[opening, :2], driven_mesh[iris, :2], driven_mesh[brow, :2], main.skin)
        self._draw_mouth(frame, main, driven_mesh, mouth)
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    def render_batch(self, driven_meshes: np.ndarray, mouths: Sequence[DriverMouth | None] | None = None
                     ) -> np.ndarray:
        """(B, 478, 3) consecutive driven meshes (and their drivers' mouths) -> (B, S, S, 3) uint8,
        one render after another."""
        mouths = mouths if mouths is not None else [None] * len(driven_meshes)
        return np.stack([self.render(mesh, mouth) for mesh, mouth in zip(driven_meshes, mouths)])

    def folded_share(self, driven_mesh: np.ndarray) -> float:
        """Share of the face's drawn pixels (the driven mesh (478, 3), as `render` draws it) that take
        their texture from a part of the main target it shows folded or edge-on while the driven mesh
        shows it more (see `_unshown`): stretched from a sliver or through a fold, they tear. `render`
        leaves such triangles to the smooth field, so this is 0 since that fallback (the measure of
        tearing the hard-case report compares with earlier renderers)."""
        main = self.targets[int(np.argmax(self._weights if self._weights is not None else np.ones(len(self.targets))))]
        unshown = self._unshown(main, self._shown(driven_mesh))
        index = self.coverage(driven_mesh, unshown).ravel()
        face = index[index >= 0]
        return float(unshown[face].mean()) if len(face) else 0.0

    @staticmethod
    def _shown(driven_mesh: np.ndarray) -> np.ndarray:
        """(T,) each face triangle's area in the driven mesh (478, 3) per its area seen face on."""
        return signed_areas(driven_mesh[face_triangles(), :2]) / (_frontal_areas() * eye_span(driven_mesh) ** 2)

    @staticmethod
    def _unshown(target: WarpTarget, shown: np.ndarray) -> np.ndarray:
        """(T,) bool: face triangles `target` cannot texture for a driven mesh that shows them `shown`
        (T,): it shows them folded or edge-on (under FOLDED of their frontal area), the driven mesh
        more, and their mirror images cannot stand in. The openings of the mouth and eyes are
        redrawn, so never among them."""
        mirrored = _mirror_weights(target, shown)
        return (target.shown < FOLDED) & (shown > target.shown + 0.1) & (mirrored < 0.5) & ~_opening_triangles()

    def _blend_weights(self, pose: np.ndarray) -> np.ndarray:
        """(K,) weights of the targets for a frame of driven `pose`: nearest poses weigh most; the
        weights follow each frame's only gradually (FOLLOW), so the blend never jumps."""
        distance = np.array([float(np.abs(t.pose[:2] - pose[:2]).sum()) for t in self.targets])  # (K,) degrees
        now = np.exp(-0.5 * ((distance - distance.min()) / POSE_SIGMA) ** 2)
        now /= now.sum()
        self._weights = now if self._weights is None else self._weights + FOLLOW * (now - self._weights)
        kept = np.maximum(self._weights - WEIGHT_FLOOR, 0)  # continuous in the weights, unlike a cut-off
        return kept / kept.sum()

    def coverage(self, driven_mesh: np.ndarray, dropped: np.ndarray | None = None) -> np.ndarray:
        """(S, S) int32: the face triangle each pixel shows (-1: none). Triangles facing away and
        those `dropped` ((T,) bool) are left out, the rest painted far to near (MediaPipe z: smaller
        is nearer)."""
        triangles = face_triangles()
        corners = driven_mesh[triangles, :2]  # (T, 3, 2)
        facing = np.flatnonzero((signed_areas(corners) > 1e-3) & (True if dropped is None else ~dropped))
        depth = driven_mesh[triangles[facing], 2].mean(1)  # (F,)
        return _paint_index((self.crop_size, self.crop_size), corners, facing[np.argsort(-depth, kind="stable")])

    def _warp(self, target: WarpTarget, driven_mesh: np.ndarray, index: np.ndarray, outline: np.ndarray,
              shown: np.ndarray) -> np.ndarray:
        """One target warped onto the driven mesh: (S, S, 3) float32. Triangles that take their
        texture from their mirror image blend into it over a few pixels, not at a seam. `outline`:
        the driven mesh's silhouette (`_silhouette`); `shown` (T,): its triangles' areas per frontal area. A
        triangle takes its mirror's texture only where the driven mesh shows it more than the target."""
        size = self.crop_size
        map_x, map_y = self._field(target.outline, outline)  # (S·S,) each
        triangles = face_triangles()
        corners = driven_mesh[triangles, :2]
        flat = index.ravel()
        face = np.flatnonzero(flat >= 0)
        map_x[face], map_y[face] = self._affine_coords(face, _affine_maps(corners, target.mesh[triangles, :2])[flat[face]])
        own = cv2.remap(target.image, map_x.reshape(size, size), map_y.reshape(size, size), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if target.shut_image is not None:  # ours: an open mouth driven shut is drawn from the shut crop
            shut = float(np.clip((target.mouth_gap - lip_gap(driven_mesh)) / (target.mouth_gap - MOUTH_OPEN / 2), 0, 1))
            if shut > 0:
                lips = driven_mesh[MESH_OUTER_LIPS, :2]
                x0, y0, x1, y1 = _box(lips, int(0.2 * np.ptp(lips[:, 0])) + 2, size)
                ys, xs = map_y.reshape(size, size)[y0:y1, x0:x1], map_x.reshape(size, size)[y0:y1, x0:x1]
                shut_lips = cv2.remap(target.shut_image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                own[y0:y1, x0:x1] += (shut_lips - own[y0:y1, x0:x1]) * shut
        mirror_weight = _mirror_weights(target, shown)  # (T,)
        if not mirror_weight[flat[face]].any():
            return own
        weight = np.zeros(size * size, np.float32)
        weight[face] = mirror_weight[flat[face]]
        weight = cv2.GaussianBlur(weight.reshape(size, size), (0, 0), size / 128).ravel()
        blend = np.flatnonzero((flat >= 0) & (weight > 1e-3))  # face pixels near mirrored triangles
        map_x[blend], map_y[blend] = self._affine_coords(blend, _affine_maps(corners, target.mirrored)[flat[blend]])
        mirror = cv2.remap(target.image, map_x.reshape(size, size), map_y.reshape(size, size), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        return own + (mirror - own) * weight.reshape(size, size, 1)

    def _affine_coords(self, pixels: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source (x, y) of the output pixels with flat indices `pixels` (N,), each under its own
        affine map (N, 3, 2)."""
        return _mapped(maps, self._pixels[0, pixels], self._pixels[1, pixels])

    def _field(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates beyond the face, (S·S,) each: the silhouette's displacement (N, 2 points from
        `dst` in the output to `src` in the target) spread by the smooth field."""
        move = self._spread(src, dst).reshape(-1, 2)  # (S·S, 2)
        return (self._pixels[0] + move[:, 0]).astype(np.float32), (self._pixels[1] + move[:, 1]).astype(np.float32)

    def _draw_eye(self, frame: np.ndarray, eye: EyeTexture, frame_eye: np.ndarray, opening: np.ndarray,
                  iris: np.ndarray, brow: np.ndarray, skin: np.ndarray | None) -> None:
        """Redraw, in place, one driven eye (opening (N, 2), iris (5, 2): centre, rim; brow (5, 2)) of a target
        (`eye`; `skin`: its cheeks' colour or None): in the opening, the eye white, shaded under the
        lids, and the target's iris at the driven iris points. `frame_eye`: the driven eye's frame. An
        eye closing on a target whose eye is open gets a drawn closed lid (`_draw_closed_lid`)."""
        area = cv2.contourArea(opening.astype(np.float32))
        target_area = cv2.contourArea(eye.opening)  # eye units
        opened = area / (target_area * abs(np.linalg.det(frame_eye[:, :2])) + 1e-6)
        shut = float(np.clip((SHUT_LID[1] - opened) / (SHUT_LID[1] - SHUT_LID[0]), 0, 1))
        redraw = None
        if target_area < OPEN_TARGET_EYE:
            shut = 0.0  # the target's own closed lid is what the warp moved there
            # ... and stays while the driven eye is as good as shut: the opening is drawn in from the target's own
            # area to OPEN_TARGET_EYE, lit as an eye open DRAWN_OPENING would be (ours; drawn whites in a slit read open)
            units = area / (abs(np.linalg.det(frame_eye[:, :2])) + 1e-6)
            redraw = float(np.clip((units - target_area) / (OPEN_TARGET_EYE - target_area), 0, 1))
            opened = units / DRAWN_OPENING
        if area >= 1.0 and redraw != 0:
            self._draw_opening(frame, eye, frame_eye, opening, iris, opened, redraw)
        if shut > 0:
            self._draw_closed_lid(frame, eye, frame_eye, opening, brow, shut, skin)

    def _draw_opening(self, frame: np.ndarray, eye: EyeTexture, frame_eye: np.ndarray, opening: np.ndarray,
                      iris: np.ndarray, opened: float, redraw: float | None = None) -> None:
        """Redraw, in place, the eye white and iris in the driven opening (`opened`: its area over the
        target's own), by `redraw` (None: by how far the driven eye moved from the target's)."""
        x0, y0, x1, y1 = _box(opening, 3, self.crop_size)
        region = frame[y0:y1, x0:x1]
        mask = _polygon_mask((y1 - y0, x1 - x0), opening - np.array([x0, y0], np.float32))  # (h, w)
        # ours: the warped eye is kept as it is while the driven eye looks like the target's; the
        # redrawn one takes over as the iris moves within the lids or the opening changes size
        gaze = np.linalg.solve(frame_eye[:, :2], iris[0] - frame_eye[:, 2])
        change = max(np.abs(gaze - eye.gaze).max() / GAZE_REDRAW, abs(np.log(opened)) / 0.3)
        if redraw is None:
            redraw = float(np.clip(1.05 * change - 0.05, 0, 1))  # none for rounding-level changes
        if redraw == 0:
            return
        height = float(np.ptp(opening[:, 1]))
        shade = cv2.GaussianBlur(mask, (0, 0), max(height / 4, 0.5))  # darker near the lids
        # ours: the shadowed white up to the target's own opening, brightening to the lit one at 1.3 times it
        white = eye.shadow + (eye.white - eye.shadow) * float(np.clip((opened - 1) / 0.3, 0, 1))
        layer = white * (0.7 + 0.35 * shade)[..., None]
        radius = float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
        scale = float(np.clip(radius / eye.radius, 0.5, 2.0))
        half = (eye.iris.shape[0] - 1) / 2
        to_local = np.array([[scale, 0.0, iris[0, 0] - x0 - scale * half], [0.0, scale, iris[0, 1] - y0 - scale * half]])
        size = (x1 - x0, y1 - y0)
        iris_px = cv2.warpAffine(eye.iris, to_local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(eye.alpha, to_local, size, flags=cv2.INTER_LINEAR)[..., None]
        layer = layer * (1 - alpha) + iris_px * alpha
        region += (layer - region) * (redraw * mask[..., None])

    def _draw_closed_lid(self, frame: np.ndarray, eye: EyeTexture, frame_eye: np.ndarray, opening: np.ndarray,
                         brow: np.ndarray, shut: float, skin: np.ndarray | None) -> None:
        """Draw, in place and by `shut` (0..1), a closed lid over one driven eye: the skin around the
        eye carried over it (inpainted from the lid's surroundings, so the target's lashes stretched
        over the eye are gone), its middle lit towards the cheeks' luma (`skin`, their colour; None: not)
        as far as the skin around it is lit, with the fine detail of the skin under the eye (`LID_GRAIN`), and a line
        of the target's lash colour where the lids meet."""
        upper, lower = opening[UPPER_LID], opening[LOWER_LID]  # (7, 2) each, outer corner to inner
        line = np.concatenate([opening[:1], (upper + lower) / 2, opening[8:9]]).astype(np.float64)  # (9, 2) lids meet
        along = np.linspace(-0.5, 0.5, len(line))
        bell = 1 - (2 * along) ** 2  # 0 at the corners, 1 in the middle
        taper = (0.15 + 0.85 * bell)[:, None]  # (9, 1) the lid's reach from the line, of its middle's
        down, side = frame_eye[:, 1], frame_eye[:, 0]  # one eye width towards the chin, along the eye
        ends = np.array([-0.08, 0, 0, 0, 0, 0, 0, 0, 0.08])[:, None] * side  # the lid reaches past the corners
        to_brow = max(float(np.mean((line.mean(0) - brow) @ down)) / float(down @ down), 0.0)  # eye widths up to the brow
        top = line + ends - min(LID_SPAN[0], LID_TO_BROW * to_brow) * taper * down
        bottom = line + ends + LID_SPAN[1] * taper * down
        width = float(np.linalg.norm(side))
        x0, y0, x1, y1 = _box(np.concatenate([top, bottom]), int(0.15 * width) + 2, self.crop_size)
        origin = np.array([x0, y0])
        hard = _polygon_mask((y1 - y0, x1 - x0), np.concatenate([top, bottom[::-1]]) - origin) > 0.5
        if not hard.any():
            return
        region = frame[y0:y1, x0:x1]
        lid = cv2.inpaint(np.clip(region + 0.5, 0, 255).astype(np.uint8), hard.astype(np.uint8),
                          max(2.0, 0.08 * width), cv2.INPAINT_TELEA).astype(np.float32)  # (h, w, 3)
        if skin is not None:
            lit = _polygon_mask(region.shape[:2], np.concatenate([line - LID_LIT[0] * taper * down,
                                                                  (line - LID_LIT[1] * taper * down)[::-1]]) - origin)
            lit = cv2.GaussianBlur(lit, (0, 0), max(LID_EDGE * width, 0.5)) * hard  # (h, w)
            luma = region[~hard] @ LUMA  # (n,) around the lid, lashes and brows in it: its lighter half is skin
            light = float(np.median(luma[luma >= np.median(luma)])) if len(luma) >= 10 else float(skin @ LUMA)
            tone = min(float(skin @ LUMA), light)  # the cheeks' luma, no lighter than the skin around
            lid += ((tone - lid @ LUMA) * (LID_LIGHT * lit))[..., None]  # its luma only: the lid keeps its hue
        lid += _grain(frame, (x0, y0, x1, y1), LID_GRAIN[1] * down, LID_GRAIN[2] * width) * LID_GRAIN[0]
        soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), max(0.04 * width, 0.5))[..., None]
        region += (lid - region) * (shut * soft)
        thick = LASH_WIDTH * width * (0.3 + 0.7 * np.sqrt(bell))[:, None]  # (9, 1) thickest in the middle
        lash = _polygon_mask(region.shape[:2], np.concatenate([line - 0.3 * thick * down / width,
                                                               (line + 0.7 * thick * down / width)[::-1]]) - origin)
        lash = cv2.GaussianBlur(lash, (0, 0), max(0.01 * width, 0.4))[..., None]
        region += (eye.lash - region) * (0.9 * shut * lash)

    def _draw_mouth(self, frame: np.ndarray, main: WarpTarget, driven_mesh: np.ndarray,
                    mouth: DriverMouth | None) -> None:
        """Fill, in place, the opening between the driven inner lips, fading in as they part: a soft shaded
        cavity with the driver's teeth (`mouth`), lit as the target, fading in as the driver's lips part,
        and over them the interior of the target whose open mouth is nearest in shape, carried by its
        jaws (`_jaw_interior`); with an open-mouthed target, the driver's teeth show only in the cavity
        between its jaws, once the driven opening is wider than the target's (STRETCH)."""
        gap = float(lip_gap(driven_mesh))
        strength = float(np.clip(2 * gap / MOUTH_OPEN - 1, 0, 1))  # 0 up to half of MOUTH_OPEN, 1 from it
        if strength == 0:
            return
        ring = driven_mesh[MESH_INNER_LIPS, :2]  # (20, 2)
        blur = self.crop_size / 160  # a soft edge: no hard polygon outline
        x0, y0, x1, y1 = box = _box(ring, int(4 * blur) + 2, self.crop_size)
        origin = np.array([x0, y0], np.float32)
        mask = cv2.GaussianBlur(_polygon_mask((y1 - y0, x1 - x0), ring - origin), (0, 0), blur)[..., None]
        layer = self._cavity(main.cavity, main.eyes[0].shadow, ring - origin, mask[..., 0])  # teeth lit like the eyes
        open_ones = [t for t in self.targets if t.jaw_split is not None]
        source = min(open_ones, key=lambda t: _mouth_shape_distance(t.mesh, driven_mesh)) if open_ones else None
        if mouth is not None:  # ours: the driver's teeth, as much as its own lips are apart
            from_driver = float(np.clip(2 * mouth.gap / MOUTH_OPEN - 1, 0, 1))
            if source is not None:
                from_driver *= float(np.clip((gap / source.mouth_gap - STRETCH[0]) / (STRETCH[1] - STRETCH[0]), 0, 1))
            if from_driver > 0:
                interior = self._mouth_interior(mouth.image, mouth.ring, ring, box)
                teeth = cv2.GaussianBlur(_teeth(interior, mouth.skin), (0, 0), blur / 2)[..., None]  # (h, w, 1) soft
                layer += (_relit(interior, mouth.skin, main.skin) - layer) * (teeth * from_driver)
        if source is not None:  # over them, the target's own, carried by its jaws
            for part, cover in _jaw_interior(source.image, source.mesh[MESH_INNER_LIPS, :2], source.jaw_split, ring,
                                             box, blur):
                layer += (part - layer) * cover[..., None]
        region = frame[y0:y1, x0:x1]
        region += (layer - region) * (strength * mask)

    def _mouth_interior(self, image: np.ndarray, src_ring: np.ndarray, ring: np.ndarray,
                        box: tuple[int, int, int, int]) -> np.ndarray:
        """(h, w, 3) float32: the mouth interior of `image` inside its inner-lip ring `src_ring` (20, 2)
        warped into the driven ring (20, 2) in the crop's `box`, by a fan of triangles around their centres."""
        x0, y0, x1, y1 = box
        fan = np.array([[20, i, (i + 1) % 20] for i in range(20)])  # (20, 3); 20 = the centre
        dst = np.concatenate([ring, ring.mean(0, keepdims=True)])[fan]  # (20, 3, 2)
        src = np.concatenate([src_ring, src_ring.mean(0, keepdims=True)])[fan]
        maps = _affine_maps(dst, src)
        centre = ring.mean(0)
        wide = (dst - centre) * 1.5 + centre  # painted larger, so the mask's soft edge has a source too
        index = _paint_index((y1 - y0, x1 - x0), wide - np.array([x0, y0]), np.arange(len(fan)))
        ys, xs = np.mgrid[y0:y1, x0:x1]
        pixels = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64)  # (h, w, 3)
        coords = np.einsum("hwk,hwkc->hwc", pixels, maps[np.maximum(index, 0)]).astype(np.float32)
        return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    def _cavity(self, colour: np.ndarray, teeth: np.ndarray, ring: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 soft mouth cavity of `colour` for a ring (20, 2) in local pixels: darker
        towards its middle, with a blurred hint of upper teeth (of colour `teeth`) under the upper lip
        only when the lips are far apart."""
        # the lips' own gap and width, not the ring's extent (a rolled or down-turned mouth's is taller)
        mid_top, mid_bottom, left, right = ring[_LIP_GAP]
        gap, width = float(np.linalg.norm(mid_top - mid_bottom)), float(np.linalg.norm(right - left))
        depth = cv2.GaussianBlur((mask > 0.5).astype(np.float32), (0, 0), max(gap / 3, 0.7))  # 1 deep inside
        layer = colour * (1.1 - 0.7 * depth)[..., None]
        upper = ring[_UPPER_LIP]
        top = np.interp(np.arange(mask.shape[1], dtype=np.float32), *upper[np.argsort(upper[:, 0])].T)  # (w,)
        rows = np.arange(mask.shape[0], dtype=np.float32)[:, None]
        band = ((rows - top) < 0.25 * gap).astype(np.float32)
        hint = cv2.GaussianBlur(band, (0, 0), max(gap / 6, 0.7))[..., None]
        strength = 0.6 * float(np.clip((gap / width - 0.15) / 0.2, 0, 1))  # ours: only when wide open
        return layer + (0.8 * teeth - layer) * strength * hint


LIGHT_GAIN = (0.7, 1.4)  # ours: the most a driver's mouth is darkened or brightened, per channel, to the target's light


def _relit(image: np.ndarray, seen: np.ndarray | None, into: np.ndarray | None) -> np.ndarray:
    """(h, w, 3) float32 RGB seen beside skin of RGB colour `seen`, carried into the light of skin
    `into` (von Kries, half way): its channels scaled by the square root of the skins' ratios
    normalised to keep the luma (their colour cast; people's skins differ in hue, so half of it),
    then by the square root of the skins' luma ratio (half the exposure: skins differ in lightness,
    teeth less); each factor within LIGHT_GAIN; as it is where a skin is unmeasured."""
    if seen is None or into is None:
        return image
    ratio = into / np.maximum(seen, 1.0)  # (3,)
    cast = np.clip(np.sqrt(ratio / float(ratio @ LUMA)), *LIGHT_GAIN)
    exposure = float(np.clip(np.sqrt((into @ LUMA) / max(float(seen @ LUMA), 1.0)), *LIGHT_GAIN))
    return image * (cast * exposure).astype(np.float32)


TEETH_LIGHT = (0.45, 0.7)  # ours: a driver's mouth pixel is teeth from 0.45 of its skin's luma, wholly from 0.7 (teeth
#   in the mouth's shade: the demo driver's read 0.6-0.8 of its lit cheeks) ...
TEETH_PALE = (1.15, 0.75)  # ... and from 1.15 of its skin's saturation, wholly under 0.75 of it ((max - min) / max)


def _saturation(rgb: np.ndarray) -> np.ndarray:
    peak = rgb.max(-1)
    return (peak - rgb.min(-1)) / np.maximum(peak, 1.0)


def _teeth(image: np.ndarray, skin: np.ndarray | None) -> np.ndarray:
    """(h, w) float32 how much each pixel of an (h, w, 3) driver's mouth interior, seen beside skin
    of RGB colour `skin`, is teeth: as bright as that skin and paler. Only teeth are taken from a
    driver's mouth: its tongue and shadows are lip-coloured, and a face mesh reads lips drawn into an
    opening as a closed mouth (the driver's interior whole: 37 frames of one hard case re-detected
    shut where the driver's were open). No teeth without a measured skin."""
    if skin is None:
        return np.zeros(image.shape[:2], np.float32)
    bright = (image @ LUMA / max(float(skin @ LUMA), 1.0) - TEETH_LIGHT[0]) / (TEETH_LIGHT[1] - TEETH_LIGHT[0])
    pale = (TEETH_PALE[0] - _saturation(image) / max(float(_saturation(skin)), 0.05)) / (TEETH_PALE[0] - TEETH_PALE[1])
    return np.clip(bright, 0, 1) * np.clip(pale, 0, 1)


def _mirror_weights(target: WarpTarget, shown: np.ndarray) -> np.ndarray:
    """(T,) how much of each face triangle's texture comes from its mirror image in `target`, for a
    driven mesh that shows the triangles `shown` (T,): only where it shows them more than the target."""
    return target.mirror_weight * np.clip((shown - target.shown - 0.1) / 0.3, 0, 1)


def _shut_mouth(image: np.ndarray, mesh: np.ndarray, gap: float) -> np.ndarray:
    """(H, W, 3) uint8: an open-mouthed face's (H, W, 3) uint8 image, its (478, 3) mesh in its pixels and its lips'
    `gap`, as a mouth driven shut is drawn from it: its interior the dark of a seam (`SEAM`; its teeth squeezed
    between shut lips were a white line); a face mid-shout (`SHOUT`) with that interior, and the cavity and teeth
    between its inner and outer lips (`LIP_INSIDE`), filled from the lips around (inpainted) instead."""
    inner = _polygon_mask(image.shape[:2], mesh[MESH_INNER_LIPS, :2]) > 0.5
    band = (_polygon_mask(image.shape[:2], mesh[MESH_OUTER_LIPS, :2]) > 0.5) & ~inner
    if band.sum() < 10:
        return image
    pixels = image.astype(np.float32)
    luma, spread = pixels @ LUMA, pixels.max(2) - pixels.min(2)  # (H, W) each; spread: how far from grey
    seamed = pixels.copy()
    seamed[inner] = pixels[band][luma[band] <= np.quantile(luma[band], SEAM[0])].mean(0) * SEAM[1]
    shout = float(np.clip((gap - SHOUT[0]) / (SHOUT[1] - SHOUT[0]), 0, 1))
    if shout > 0:
        lips = pixels[band][luma[band] >= np.median(luma[band])]  # (n, 3) the lips' lighter half
        light, tint = float(np.median(lips @ LUMA)), float(np.median(lips.max(1) - lips.min(1)))
        inside = band & ((luma < LIP_INSIDE[0] * light) | ((luma > LIP_INSIDE[1] * light) & (spread < 0.6 * tint)))
        mask = cv2.dilate((inner | inside).astype(np.uint8), np.ones((3, 3), np.uint8))
        width = float(np.ptp(mesh[MESH_OUTER_LIPS, 0]))
        filled = cv2.inpaint(image, mask, max(2.0, 0.05 * width), cv2.INPAINT_TELEA).astype(np.float32)
        smooth = cv2.GaussianBlur(filled, (0, 0), max(0.08 * width, 1.0))  # no streaks from the hole's edge
        filled = np.where(cv2.erode(mask, np.ones((3, 3), np.uint8))[..., None] > 0, smooth, filled)
        seamed += (filled - seamed) * shout
    return np.clip(seamed + 0.5, 0, 255).astype(np.uint8)


def _mouth_axes(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, tuple, tuple]:
    """An inner-lip ring's (20, 2) frame: its left corner, the unit vectors along the mouth and towards
    the chin, its width in pixels, and its upper and lower inner lips as (u, v) curves: u the share of
    the way from corner to corner, v pixels towards the chin (each sorted by u, for np.interp)."""
    left = ring[0].astype(np.float64)
    along = ring[10].astype(np.float64) - left
    width = max(float(np.linalg.norm(along)), 1e-6)
    x = along / width
    n = np.array([-x[1], x[0]])
    rel = ring.astype(np.float64) - left
    u, v = rel @ x / width, rel @ n

    def curve(lip: list[int] | slice) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(u[lip])
        return u[lip][order], v[lip][order]

    return left, x, n, width, curve(_UPPER_LIP), curve(_LOWER_LIP)


def _jaw_split(image: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """(JAW_COLUMNS,) where an (H, W, 3) uint8 image's open mouth, inside its inner-lip ring (20, 2), splits
    into what its upper and lower jaws carry, as a share of the gap from the upper lip (1: all with the upper),
    at JAW_COLUMNS points evenly across the mouth (JAW_GAP; smoothed across by a running median)."""
    left, x, n, width, upper, lower = _mouth_axes(ring)
    us, ts = _JAW_ACROSS, np.linspace(0.05, 0.95, JAW_ROWS)
    top, bottom = np.interp(us, *upper), np.interp(us, *lower)
    v = top[None] + ts[:, None] * (bottom - top)[None]  # (R, C)
    points = (left + (us * width)[None, :, None] * x + v[..., None] * n).astype(np.float32)  # (R, C, 2)
    luma = cv2.remap(image, points[..., 0], points[..., 1], cv2.INTER_LINEAR).astype(np.float32) @ LUMA
    dark = cv2.GaussianBlur(luma, (0, 0), 0.7) < JAW_GAP[0] * np.percentile(luma, 90)  # (R, C)
    split = np.ones(JAW_COLUMNS)
    for c in range(JAW_COLUMNS):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], dark[:, c].astype(np.int8), [0]])))  # run starts, ends
        if len(edges):
            starts, ends = edges[::2], edges[1::2]
            longest = int(np.argmax(ends - starts))
            if ends[longest] - starts[longest] >= JAW_GAP[1] * JAW_ROWS:
                split[c] = ts[(starts[longest] + ends[longest] - 1) // 2]
    return np.array([np.median(split[max(c - 4, 0):c + 5]) for c in range(JAW_COLUMNS)])


def _jaw_interior(image: np.ndarray, src_ring: np.ndarray, split: np.ndarray, ring: np.ndarray,
                  box: tuple[int, int, int, int], blur: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """ours: a target's open mouth (`image`, its inner-lip ring `src_ring` (20, 2), `split` from `_jaw_split`)
    carried by its jaws into the driven ring (20, 2) over the crop's `box`: [(lower part, its cover), (upper
    part, its cover)], (h, w, 3) float32 and (h, w) each, to be laid in that order. Each part keeps its
    distance from its own lip at the mouths' scale (teeth keep their size), stretched up to JAW_FILL to meet
    the other where the driven opening is wider; an opening narrower than the target's draws the upper over
    the lower, as teeth close. `blur`: the covers' soft edge, in driven pixels."""
    x0, y0, x1, y1 = box
    s_left, s_x, s_n, s_width, s_upper, s_lower = _mouth_axes(src_ring)
    left, x, n, width, upper, lower = _mouth_axes(ring)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    rel = np.stack([xs, ys], -1) - left  # (h, w, 2)
    u, v = rel @ x / width, rel @ n  # (h, w) each: the driven mouth's own coordinates
    s_top, s_bottom = np.interp(u, *s_upper), np.interp(u, *s_lower)  # (h, w) the target's lips at u
    gap = np.maximum(s_bottom - s_top, 0)  # (h, w) the target's opening, its pixels
    top, bottom = np.interp(u, *upper), np.interp(u, *lower)
    scale = s_width / width
    scale = scale * np.clip(gap / np.maximum((bottom - top) * scale, 1e-3), 1 / JAW_FILL, 1)  # stretched to meet
    below, above = (v - top) * scale, (bottom - v) * scale  # (h, w) target pixels from each lip
    cut = np.interp(u, _JAW_ACROSS, split) * gap
    edge = max(scale.mean() * blur, 0.5)
    parts = []
    for source_v, room, depth in ((s_bottom - above, gap - cut, above), (s_top + below, cut, below)):
        points = (s_left + (u * s_width)[..., None] * s_x + source_v[..., None] * s_n).astype(np.float32)
        part = cv2.remap(image, points[..., 0], points[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        parts.append((part.astype(np.float32), np.clip((room - depth) / edge + 0.5, 0, 1).astype(np.float32)))
    return parts


def _mouth_shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Difference of two meshes' inner-lip rings, each centred and scaled by its mouth's width."""
    def shape(mesh: np.ndarray) -> np.ndarray:
        ring = mesh[MESH_INNER_LIPS, :2]
        return (ring - ring.mean(0)) / max(float(np.linalg.norm(ring[0] - ring[10])), 1e-6)

    return float(np.abs(shape(a) - shape(b)).sum())
