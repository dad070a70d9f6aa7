"""Landmark transformer: the driver's expression and pose on the target's face shape (paper
§Proposed method, "Landmark transformer"; the MarioNETte+LT variant).

The driver's landmarks carry its identity (face shape); drawn as they are, the reenacted face takes
the driver's shape. The transformer keeps only the driver's expression and pose:
  1. Normalisation (paper): each 3D landmark set l = s·R·n + t, where n is l aligned to a mean shape
     by a similarity Procrustes fit; the pose (R, s, t) is kept apart.
  2. Decomposition (paper): n(c, t) = l_mean + l_id(c) + l_exp(c, t); a PCA basis b_exp of l_exp.
  3. Disentangler M (paper; ours: an MLP on the normalised landmarks) predicts a single frame's
     expression coefficients λ̂; l̂_exp = b_exp·λ̂ and l̂_id = n - l_mean - l̂_exp.
  4. Reenactment (paper): l_{x→y} = l_mean + mean_i l̂_id(y^i) + α·l̂_exp(x), re-posed with the
     driver's rotation and the target's scale and position (mode absolute). Ours, mode relative:
     the driver's change since its reference face (its normalised shape now minus then: exact,
     where one frame's λ̂ regresses to the mean) on the target with that face's expression (or the
     target's own), turned by the driver's rotation since then.
Ours: everything runs on the dense 478-point MediaPipe mesh (the warp renderer uses it); the
68-point layout the landmark renderer draws is its subset (`Reenacted.ibug68`). The normalised
frame is the Procrustes reference's: centred, frontal, eyes level, inter-ocular distance 1.
Fitting lives in landmark_transformer/fit.py. Files: FILE.safetensors (arrays and weights) and
FILE.json (config, fit statistics), never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scipy.spatial.transform import Rotation
from torch import nn

from marionette.config import from_dict, to_dict
from marionette.errors import InputError, check_finite
from marionette.landmark_transformer.config import EXPRESSIONS, MODES, LandmarkTransformerConfig
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.measures import eye_ratios, lip_gap, seen_eyes
from marionette.landmarks.openings import closed_lips, mirrored_lids, opened_lids, uncrossed
from marionette.media import atomic_path
from marionette.resources import asset

MESH_POINTS = 478
FORMAT = "marionette-landmark-transformer"
VERSION = 1
OPEN_EYE = 0.2  # ours: a target eye whose photo shows it at least this open (eye aspect ratio) may rest as open again
DEFAULT_PATH = asset("landmark_transformer.safetensors")  # fitted on the shared clips (docs/landmark_transformer.md)


@dataclass(frozen=True)
class Pose:
    """Similarity pose of landmark sets: points = scale · shape @ rotation.T + translation."""

    rotation: np.ndarray  # (..., 3, 3) camera <- normalised frame
    scale: np.ndarray  # (...,)
    translation: np.ndarray  # (..., 3)

    def apply(self, shapes: np.ndarray) -> np.ndarray:
        """(..., L, 3) normalised shapes -> (..., L, 3) posed points."""
        posed = np.einsum("...ij,...lj->...li", self.rotation, shapes)  # (..., L, 3)
        return self.scale[..., None, None] * posed + self.translation[..., None, :]


def nearest_rotation(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> the nearest proper rotations (Frobenius norm), via SVD."""
    u, _, vt = np.linalg.svd(matrices)
    flip = np.ones(u.shape[:-1])  # (..., 3)
    flip[..., -1] = np.sign(np.linalg.det(u @ vt))
    return (u * flip[..., None, :]) @ vt


def limit_turn(rotations: np.ndarray, limit: float) -> np.ndarray:
    """(..., 3, 3) rotations with their angles θ softly limited to `limit` degrees, about the same
    axes: limit·tanh(θ/limit) (small turns kept, large ones bent towards the limit, never past it)."""
    vectors = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec()  # (N, 3) axis · angle in radians
    angle = np.linalg.norm(vectors, axis=-1, keepdims=True)  # (N, 1)
    bound = np.radians(limit)
    scale = np.where(angle > 1e-9, bound * np.tanh(angle / bound) / np.maximum(angle, 1e-9), 1.0)
    return Rotation.from_rotvec(vectors * scale).as_matrix().reshape(rotations.shape)


def procrustes(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, Pose]:
    """Similarity Procrustes: (..., L, 3) points -> (..., L, 3) shapes aligned to the (L, 3) centred
    reference, and the pose with points = pose.apply(shapes) exactly."""
    translation = points.mean(-2)  # (..., 3)
    centred = points - translation[..., None, :]  # (..., L, 3)
    cross = np.einsum("lj,...lk->...jk", reference, centred)  # (..., 3, 3) Σ ref_l ⊗ p_l
    u, sigma, vt = np.linalg.svd(cross)
    flip = np.ones(sigma.shape)  # (..., 3) no reflections
    flip[..., -1] = np.sign(np.linalg.det(u @ vt))
    align = (u * flip[..., None, :]) @ vt  # (..., 3, 3) normalised <- camera
    scale = (sigma * flip).sum(-1) / (centred**2).sum((-2, -1))  # (...,) normalised / camera units
    shapes = scale[..., None, None] * np.einsum("...jk,...lk->...lj", align, centred)  # (..., L, 3)
    return shapes, Pose(np.swapaxes(align, -1, -2), 1.0 / scale, translation)


class Disentangler(nn.Module):
    """M: one frame's normalised landmarks -> its expression coefficients λ̂ (paper; ours: an MLP
    that predicts coefficients standardised by their training spread)."""

    def __init__(self, points: int, components: int, hidden: int, layers: int):
        super().__init__()
        widths = [points * 3] + [hidden] * layers
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.SiLU()]
        self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, components))
        self.register_buffer("mean_shape", torch.zeros(points, 3))  # l_mean
        self.register_buffer("input_scale", torch.ones(()))  # spread of n - l_mean
        self.register_buffer("coefficient_std", torch.ones(components))  # spread of each λ

    def forward(self, shapes: torch.Tensor) -> torch.Tensor:
        """(B, L, 3) normalised shapes -> (B, C) expression coefficients."""
        offsets = (shapes - self.mean_shape) / self.input_scale  # (B, L, 3)
        return self.mlp(offsets.flatten(1)) * self.coefficient_std  # (B, C)


@dataclass(frozen=True)
class TargetFace:
    """The K targets, prepared once: their identity shape, expression and mean pose."""

    identity: np.ndarray  # (L, 3) mean_i l̂_id(y^i)
    coefficients: np.ndarray  # (C,) mean_i λ̂(y^i), the start expression in relative mode
    pose: Pose  # mean rotation (projected to a rotation), mean scale and position
    uncrossing: np.ndarray  # (L, 3) what `uncrossed` moves on their own normalised face (0 where nothing crosses)
    eyes: np.ndarray  # (2,) the eye aspect ratios of their own normalised face (`eye_ratios`)
    open_eyes: np.ndarray  # (2,) bool: each eye shown at least OPEN_EYE open in every target's photo (`seen_eyes`)


@dataclass(frozen=True)
class DriverStart:
    """The driver's face relative mode measures motion from, prepared once per stream."""

    coefficients: np.ndarray  # (C,) its expression λ̂
    shape: np.ndarray  # (L, 3) its normalised shape
    pose: Pose  # its rotation, scale and position


@dataclass(frozen=True)
class Reenacted:
    mesh: np.ndarray  # (T, 478, 3) transformed landmarks, in the targets' pixels
    shapes: np.ndarray  # (T, 478, 3) the same in the normalised frame, before re-posing

    @property
    def ibug68(self) -> np.ndarray:
        """(T, 68, 3) the 68-point layout of the landmark renderer."""
        return mesh_to_ibug68(self.mesh)


class LandmarkTransformer:
    """Driver landmarks + K targets' landmarks + α -> the driver's expression and pose on the target."""

    def __init__(self, reference: np.ndarray, mean_shape: np.ndarray, expression_basis: np.ndarray,
                 disentangler: Disentangler, config: LandmarkTransformerConfig, stats: dict[str, Any]):
        assert reference.shape == mean_shape.shape == (MESH_POINTS, 3), (reference.shape, mean_shape.shape)
        assert expression_basis.shape[1:] == (MESH_POINTS, 3), expression_basis.shape
        self.reference = reference.astype(np.float64)  # (L, 3) Procrustes target: the normalised frame
        self.mean_shape = mean_shape.astype(np.float64)  # (L, 3) l_mean
        self.expression_basis = expression_basis.astype(np.float64)  # (C, L, 3) b_exp, orthonormal
        self.disentangler = disentangler.eval()
        self.config = config
        self.stats = stats  # how it was fitted (dataset, frames, variance explained, errors)
        self._rest: tuple[TargetFace, DriverStart, str, np.ndarray] | None = None  # rest_face's last (per stream)

    @property
    def components(self) -> int:
        return len(self.expression_basis)

    def normalize(self, points: np.ndarray) -> tuple[np.ndarray, Pose]:
        """(..., L, 3) landmarks -> (..., L, 3) normalised shapes and their pose."""
        assert points.shape[-2:] == (MESH_POINTS, 3), f"expected (..., {MESH_POINTS}, 3), got {points.shape}"
        return procrustes(points.astype(np.float64), self.reference)

    def expression(self, shapes: np.ndarray) -> np.ndarray:
        """(N, L, 3) normalised shapes -> (N, C) λ̂ predicted by the disentangler, frame by frame."""
        with torch.no_grad():
            return self.disentangler(torch.from_numpy(shapes).float()).double().numpy()

    def project(self, coefficients: np.ndarray) -> np.ndarray:
        """(..., C) expression coefficients -> (..., L, 3) l̂_exp = b_exp·λ̂."""
        return np.einsum("...c,clk->...lk", coefficients, self.expression_basis)

    def prepare_targets(self, targets: np.ndarray) -> TargetFace:
        """(K, L, 3) target landmarks -> their identity, expression and pose (order-free)."""
        shapes, pose = self.normalize(targets)  # (K, L, 3)
        coefficients = self.expression(shapes)  # (K, C)
        identity = shapes - self.mean_shape - self.project(coefficients)  # (K, L, 3) l̂_id(y^i)
        mean_pose = Pose(nearest_rotation(pose.rotation.mean(0)), pose.scale.mean(0), pose.translation.mean(0))
        own = self.mean_shape + identity.mean(0) + self.project(coefficients.mean(0))  # (L, 3)
        shown_open = seen_eyes(targets).all(0) & (eye_ratios(targets) >= OPEN_EYE).all(0)  # (2,)
        return TargetFace(identity.mean(0), coefficients.mean(0), mean_pose, uncrossed(own) - own,
                          eye_ratios(uncrossed(own)), shown_open)

    def prepare_start(self, first_frame: np.ndarray) -> DriverStart:
        """(L, 3) the driver frame relative mode measures motion from -> its expression and pose."""
        return self.prepare_reference(first_frame[None], first_frame[None])

    def prepare_reference(self, expression_frames: np.ndarray, pose_frames: np.ndarray) -> DriverStart:
        """What relative mode measures motion from: the mean expression λ̂ of (E, L, 3) driver frames
        and the mean pose (rotation projected to a rotation) of (P, L, 3) driver frames."""
        shapes = self.normalize(expression_frames)[0]  # (E, L, 3)
        _, poses = self.normalize(pose_frames)
        pose = Pose(nearest_rotation(poses.rotation.mean(0)), poses.scale.mean(0), poses.translation.mean(0))
        return DriverStart(self.expression(shapes).mean(0), shapes.mean(0), pose)

    def rest_face(self, target: TargetFace, start: DriverStart, expression: str) -> np.ndarray:
        """(L, 3) relative mode's rest face, the driver's change since `start` is added to: the targets'
        identity with the driver's reference expression (`expression="driver"`) or their own. The same for
        every frame of a stream: the last one made is kept (its target set and reference compared by identity)."""
        kept = self._rest
        if kept is not None and kept[0] is target and kept[1] is start and kept[2] == expression:
            return kept[3]
        rest = target.coefficients if expression == "target" else start.coefficients  # (C,)
        face = self.mean_shape + target.identity + self.project(rest)  # (L, 3)
        if expression == "driver":  # ours: lips or lids that the driver's expression, regressed onto the
            # target's identity, presses through each other would swallow that much of every opening;
            # they are brought to meet (what the target's own face crosses is left as it is)
            face = uncrossed(face) - target.uncrossing
            # and lips that it leaves apart where the driver's rest lips are closer (a target photographed
            # mid-word keeps some of its open mouth in its identity) are brought as close: at the driver's
            # rest the output's mouth is as shut as the driver's
            face = closed_lips(face, max(float(lip_gap(face) - lip_gap(start.shape)), 0.0))
            # and lids that it opens wider than both the target's own and the driver's rest lids (a target's
            # squint read as expression, the driver's lids regressed towards the mean: a squinting target
            # stared) are as open as the driver's at its rest; those of an eye the targets show open that it
            # shuts further than both, as open as the narrower of the two (a wide-eyed target looked sleepy;
            # opened, the near eye of a low-resolution profile, nearly shut in its photo, was a dark patch)
            now, rest = eye_ratios(face), eye_ratios(start.shape)  # (2,) each
            narrower = np.minimum(target.eyes, rest)
            wanted = np.where(now > np.maximum(target.eyes, rest), rest,
                              np.where(target.open_eyes & (now < narrower), narrower, now))
            face = opened_lids(face, wanted)
        self._rest = (target, start, expression, face)
        return face

    def drive(self, driver: np.ndarray, target: TargetFace, *, alpha: float, mode: str,
              start: DriverStart | None = None, expression: str = "driver", max_turn: float = 0.0) -> Reenacted:
        """(T, L, 3) driver landmarks -> (T, L, 3) on the target, with expression strength α, in
        `mode` (relative or absolute). `start` is the driver's face relative mode measures motion
        from (default driver[0]; a stream prepares its own once). `expression` (relative mode): the
        driver's own (on the target's identity, as the paper's transformer does) or the target's
        (kept, and moved by the driver's change). `max_turn` (degrees, 0: off; ours): how far the
        output may turn from the targets' own pose, a soft limit (see `limit_turn`)."""
        if mode not in MODES:
            raise InputError(f"landmark transformer mode {mode!r}: expected one of {', '.join(MODES)}")
        if expression not in EXPRESSIONS:
            raise InputError(f"landmark transformer expression {expression!r}: expected one of {', '.join(EXPRESSIONS)}")
        shapes, pose = self.normalize(driver)  # (T, L, 3)
        if mode == "absolute":  # paper: α·l̂_exp(x), the driver's rotation, the target's scale and position
            out_shapes = self.mean_shape + target.identity + self.project(alpha * self.expression(shapes))  # l_{x→y}
            t = len(driver)
            out_pose = Pose(pose.rotation, np.full(t, target.pose.scale), np.tile(target.pose.translation, (t, 1)))
        else:  # ours: the target moved by the driver's change since its reference face
            start = self.prepare_start(driver[0]) if start is None else start
            ref_pose = start.pose
            # the change of the driver's own normalised shape is its expression's, identity-free and
            # unshrunk (a single frame's λ̂ regresses to the mean: half a wide mouth, no blinks)
            face = self.rest_face(target, start, expression)  # (L, 3)
            # a turned-away eye of the driver moves as the one it shows (ours: its lids are the face mesh's guess)
            out_shapes = face + alpha * mirrored_lids(shapes - start.shape, seen_eyes(driver))
            turn = pose.rotation @ ref_pose.rotation.T  # (T, 3, 3) driver's rotation since its reference
            zoom = target.pose.scale / ref_pose.scale  # target pixels per driver pixel
            out_pose = Pose(turn @ target.pose.rotation, zoom * pose.scale,
                            target.pose.translation + zoom * (pose.translation - ref_pose.translation))
        if max_turn > 0:
            turn = limit_turn(out_pose.rotation @ target.pose.rotation.T, max_turn)  # (T, 3, 3)
            out_pose = Pose(turn @ target.pose.rotation, out_pose.scale, out_pose.translation)
        return Reenacted(out_pose.apply(out_shapes).astype(np.float32), out_shapes.astype(np.float32))

    def __call__(self, driver: np.ndarray, targets: np.ndarray, *, alpha: float, mode: str) -> Reenacted:
        """(T, L, 3) driver landmarks and (K, L, 3) target landmarks -> (T, L, 3) transformed."""
        return self.drive(driver, self.prepare_targets(targets), alpha=alpha, mode=mode)

    def save(self, path: str | Path) -> None:
        """Write FILE.safetensors (arrays, weights) and FILE.json (config, statistics), atomically."""
        path = Path(path).with_suffix(".safetensors")
        tensors = {
            "reference": torch.from_numpy(self.reference),  # float64: a round trip changes nothing
            "mean_shape": torch.from_numpy(self.mean_shape),
            "expression_basis": torch.from_numpy(self.expression_basis),
            **{f"disentangler.{k}": v.contiguous() for k, v in self.disentangler.state_dict().items()},
        }
        meta = {"format": FORMAT, "version": VERSION, "components": self.components,
                "config": to_dict(self.config), "stats": self.stats}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> LandmarkTransformer:
        """Read a fitted transformer (FILE.safetensors + FILE.json; either names the pair); InputError
        naming the file given, or the bad one of the pair."""
        given = Path(path)
        if given.suffix not in ("", ".safetensors", ".json"):
            raise InputError(f"{given}: not a landmark transformer (give the FILE.safetensors that "
                             "`marionette fit-landmarks` writes, with its FILE.json beside it)")
        path = given.with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        for p in (path, meta_path):
            if not p.is_file():
                missing = "no such file" if p == given else f"{p.name} is missing beside it"
                raise InputError(f"{given}: {missing} (fit one with `marionette fit-landmarks`)")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} v{VERSION} file")
            config = from_dict(LandmarkTransformerConfig, meta["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{meta_path}: invalid landmark transformer description ({e})") from None
        try:
            tensors = load_file(str(path))
            check_finite(tensors, path)
            weights = {k.removeprefix("disentangler."): v for k, v in tensors.items() if k.startswith("disentangler.")}
            disentangler = Disentangler(MESH_POINTS, int(meta["components"]), config.hidden, config.layers)
            disentangler.load_state_dict(weights)
            return cls(tensors["reference"].numpy(), tensors["mean_shape"].numpy(),
                       tensors["expression_basis"].numpy(), disentangler, config, meta.get("stats", {}))
        except (SafetensorError, OSError, KeyError, RuntimeError, AssertionError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{path}: invalid landmark transformer weights ({reason})") from None
