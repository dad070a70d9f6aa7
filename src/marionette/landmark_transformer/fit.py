"""Fitting the landmark transformer on landmarks alone (CPU, minutes): `marionette fit-landmarks`.

Paper §Proposed method, "Landmark transformer": normalise every frame, decompose
n(c, t) = l_mean + l_id(c) + l_exp(c, t) with l_mean the mean over all frames of all clips and
l_id(c) the clip's mean minus l_mean, fit the PCA expression basis b_exp on l_exp, and train the
disentangler M to predict each frame's coefficients λ = b_exp^T·l_exp from that frame alone.
Ours: the Procrustes reference comes from generalised Procrustes analysis (a few align-and-average
rounds), made frontal, eyes level, with inter-ocular distance 1 (with a free scale per frame the
average of aligned shapes is ~1% smaller, so l_mean is kept as its own array); M's loss is the squared error of
l̂_exp in that frame (|λ̂ - λ|², the basis being orthonormal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm import tqdm

from marionette.data.manifest import Manifest, clip_path
from marionette.data.store import ClipReader
from marionette.errors import InputError
from marionette.landmark_transformer.config import LandmarkTransformerConfig
from marionette.landmark_transformer.model import MESH_POINTS, Disentangler, LandmarkTransformer, procrustes
from marionette.landmarks.layout import MESH_MIRROR, inter_ocular, mesh_to_ibug68
from marionette.landmarks.pose import face_rotation

PROCRUSTES_ROUNDS = 5  # generalised Procrustes: align to the mean, re-average (converges in 2-3)


@dataclass(frozen=True)
class LandmarkClips:
    points: np.ndarray  # (N, L, 3) landmarks of every frame, crop pixels
    clip: np.ndarray  # (N,) index of each frame's clip in `names`
    names: tuple[str, ...]  # clip ids ("~mirror" appended for mirrored copies)
    identities: int  # distinct people


@dataclass(frozen=True)
class Decomposition:
    """Paper: n(c, t) = l_mean + l_id(c) + l_exp(c, t), exactly."""

    mean: np.ndarray  # (L, 3) l_mean, over all frames of all clips
    identity: np.ndarray  # (clips, L, 3) l_id(c): clip mean - l_mean
    expression: np.ndarray  # (N, L, 3) l_exp(c, t): the rest


def mirror_mesh(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 3) mesh -> its horizontal mirror image (x negated, left and right relabelled)."""
    out = mesh[..., MESH_MIRROR, :].copy()
    out[..., 0] = -out[..., 0]
    return out


def load_clips(root: Path, split: str, flip: bool) -> LandmarkClips:
    """The dense landmarks of every frame of one split of a preprocessed dataset."""
    manifest = Manifest.load(root)
    entries = manifest.split(split)
    if len({c.info.identity for c in entries}) < 2:
        raise InputError(f"{root}: split {split!r} needs clips of at least two identities to fit on")
    meshes, names = [], []
    for entry in entries:
        path = clip_path(root, entry.info.clip_id)
        try:
            mesh = ClipReader(path).mesh().astype(np.float64)  # (F, L, 3)
        except (OSError, ValueError, SafetensorError) as e:  # a damaged clip file: name it, in one line
            raise InputError(f"{path}: cannot read clip ({type(e).__name__})") from None
        meshes.append(mesh)
        names.append(entry.info.clip_id)
        if flip:
            meshes.append(mirror_mesh(mesh))
            names.append(entry.info.clip_id + "~mirror")
    clip = np.concatenate([np.full(len(m), i) for i, m in enumerate(meshes)])
    return LandmarkClips(np.concatenate(meshes), clip, tuple(names), len({c.info.identity for c in entries}))


def fit_reference(points: np.ndarray) -> np.ndarray:
    """(N, L, 3) landmarks -> (L, 3) generalised-Procrustes mean shape, made centred, frontal, eyes
    level (face frame of landmarks/pose.py) and of inter-ocular distance 1: the normalised frame."""
    reference = points[0] - points[0].mean(0)  # (L, 3)
    for _ in range(PROCRUSTES_ROUNDS):
        shapes, _ = procrustes(points, reference)  # (N, L, 3), centred
        reference = shapes.mean(0)
        reference = reference @ face_rotation(mesh_to_ibug68(reference))  # face axes become x, y, z
        reference = reference / inter_ocular(mesh_to_ibug68(reference))
    return reference


def decompose(shapes: np.ndarray, clip: np.ndarray) -> Decomposition:
    """(N, L, 3) normalised shapes of frames of clips `clip` (N,) -> the paper's decomposition."""
    mean = shapes.mean(0)  # (L, 3)
    clip_means = np.stack([shapes[clip == c].mean(0) for c in range(clip.max() + 1)])  # (clips, L, 3)
    return Decomposition(mean, clip_means - mean, shapes - clip_means[clip])


def expression_basis(expression: np.ndarray, explained_variance: float) -> tuple[np.ndarray, float]:
    """(N, L, 3) l_exp -> (C, L, 3) orthonormal PCA basis with the fewest components explaining
    `explained_variance` of l_exp's variance, and the share they explain. l_exp has zero mean per
    clip, so it is not re-centred."""
    flat = expression.reshape(len(expression), -1)  # (N, L*3)
    _, sigma, vt = np.linalg.svd(flat, full_matrices=False)
    shares = np.cumsum(sigma**2) / np.sum(sigma**2)
    components = int(np.searchsorted(shares, explained_variance) + 1)
    return vt[:components].reshape(components, *expression.shape[1:]), float(shares[components - 1])


def train_disentangler(shapes: np.ndarray, coefficients: np.ndarray, mean: np.ndarray,
                       config: LandmarkTransformerConfig, progress: bool) -> tuple[Disentangler, float]:
    """Fit M on (N, L, 3) normalised shapes -> (N, C) coefficients; returns M and the last epoch's
    mean loss |λ̂ - λ|² (inter-ocular units squared, summed over points' coordinates)."""
    torch.manual_seed(config.seed)
    n, components = coefficients.shape
    model = Disentangler(MESH_POINTS, components, config.hidden, config.layers)
    model.mean_shape.copy_(torch.from_numpy(mean))
    model.input_scale.fill_(float((shapes - mean).std()))
    model.coefficient_std.copy_(torch.from_numpy(coefficients.std(0)))
    x = torch.from_numpy(shapes).float()  # (N, L, 3)
    y = torch.from_numpy(coefficients).float()  # (N, C)
    steps_per_epoch = max(n // config.batch_size, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    epoch_loss = float("nan")
    for _ in tqdm(range(config.epochs), desc="disentangler", unit="epoch", disable=not progress):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = (model(x[batch]) - y[batch]).square().sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        epoch_loss = total / steps_per_epoch
    return model.eval(), epoch_loss


def fit_landmark_transformer(dataset: str | Path, config: LandmarkTransformerConfig = LandmarkTransformerConfig(),
                             progress: bool = True) -> LandmarkTransformer:
    """Fit normalisation, decomposition, expression basis and disentangler on one dataset split."""
    start = time.perf_counter()
    clips = load_clips(Path(dataset), config.split, config.flip)
    reference = fit_reference(clips.points)  # (L, 3)
    shapes, _ = procrustes(clips.points, reference)  # (N, L, 3)
    parts = decompose(shapes, clips.clip)
    basis, explained = expression_basis(parts.expression, config.explained_variance)  # (C, L, 3)
    coefficients = np.einsum("nlk,clk->nc", parts.expression, basis)  # (N, C) λ
    model, loss = train_disentangler(shapes, coefficients, parts.mean, config, progress)
    stats = {
        "dataset": Path(dataset).resolve().name,
        "split": config.split,
        "clips": [name for name in clips.names if not name.endswith("~mirror")],
        "identities": clips.identities,
        "frames": int(len(shapes)),
        "components": int(len(basis)),
        "explained_variance": round(explained, 4),
        "identity_rms": round(float(np.sqrt((parts.identity**2).sum(-1).mean())), 5),  # per point, IOD units
        "expression_rms": round(float(np.sqrt((parts.expression**2).sum(-1).mean())), 5),
        "final_loss": round(loss, 6),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return LandmarkTransformer(reference, parts.mean, basis, model, config, stats)
