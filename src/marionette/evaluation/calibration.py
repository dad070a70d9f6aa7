"""Calibrated identity score (ours): a raw identity cosine says little on its own (dlib's judge gives
~0.97 between two frames of one person and ~0.85 between different people, so every renderer
lands in 0.9..1). The score places the cosine between two references of the target's identity,
measured on the dataset with the same judge:

    same      = mean cosine between two real frames of the identity (distinct frames, any of its clips)
    different = mean cosine between the identity's frames and the frames of every other identity
    score     = clip((cosine - different) / (same - different), 0, 1)

so 1 means "as similar as two real frames of that person" and 0 "as similar as a stranger".
The references use `frames` evenly spaced frames of every clip of the dataset (all splits).

How well the score separates people is measured on the dataset itself (`separation`): the
frames of each clip alternate between a reference half (the references) and a test half; every
ordered pair (a, b) of distinct test frames is scored against b's identity; ROC AUC of same-person
vs different-person pairs (and with same-person pairs from different clips only, the harder
case). `python -m marionette.evaluation.calibration DATASET` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marionette.data.manifest import Manifest, clip_path
from marionette.data.store import ClipReader
from marionette.errors import InputError

FRAMES_PER_CLIP = 4  # frames of each clip embedded for the references


@dataclass(frozen=True)
class Reference:
    same: float  # mean cosine between two real frames of the identity
    different: float  # mean cosine between its frames and other identities' frames


def identity_score(cosine, same, different):
    """Where `cosine` falls between the `different`-person (0) and `same`-person (1) references,
    clipped to 0..1 (elementwise on arrays)."""
    return np.clip((cosine - different) / np.maximum(same - different, 1e-12), 0.0, 1.0)


@dataclass(frozen=True)
class FrameEmbedding:
    identity: str
    clip: str
    position: int  # index among the clip's evenly spaced frames (even: reference half, odd: test half)
    vector: np.ndarray  # (D,) unit-norm


def embed_dataset(data: Path, manifest: Manifest, embed, frames: int = FRAMES_PER_CLIP) -> list[FrameEmbedding]:
    """Embed `frames` evenly spaced frames of every clip; `embed(image, mesh, key)` -> (D,) or None
    (frames without a face are left out)."""
    found = []
    for entry in manifest.clips:
        info = entry.info
        reader = ClipReader(clip_path(data, info.clip_id))
        meshes = reader.mesh()  # (F, 478, 3)
        picks = np.unique(np.linspace(0, info.frames - 1, min(frames, info.frames)).round().astype(int))
        for position, (frame, image) in enumerate(zip(picks, reader.images(picks))):
            vector = embed(image, meshes[frame], f"{info.clip_id}#{frame}")
            if vector is not None:
                found.append(FrameEmbedding(info.identity, info.clip_id, position, vector))
    return found


def _cosines(found: list[FrameEmbedding]) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) cosines of the embeddings and (N,) identity labels."""
    vectors = np.stack([f.vector / np.linalg.norm(f.vector) for f in found])  # (N, D)
    return vectors @ vectors.T, np.array([f.identity for f in found])


def references(found: list[FrameEmbedding]) -> dict[str, Reference]:
    """Identity -> its same- and different-person references (identities with one frame get none)."""
    if not found:
        return {}
    cos, ids = _cosines(found)
    out = {}
    for identity in sorted(set(ids)):
        mine = ids == identity
        same = cos[np.ix_(mine, mine)][~np.eye(mine.sum(), dtype=bool)]
        different = cos[np.ix_(mine, ~mine)]
        if same.size and different.size:
            out[identity] = Reference(float(same.mean()), float(different.mean()))
    return out


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Separation:
    auc: float  # ROC AUC of the calibrated score, same- vs different-person pairs of the test half
    auc_cosine: float  # the same for the raw cosine
    auc_other_clip: float  # the score's AUC with same-person pairs from different clips only (nan: none)
    same_pairs: int
    same_pairs_other_clip: int
    different_pairs: int
    identities: int


def separation(found: list[FrameEmbedding]) -> Separation:
    """Score the test half's ordered pairs against references from the reference half."""
    refs = references([f for f in found if f.position % 2 == 0])
    test = [f for f in found if f.position % 2 == 1 and f.identity in refs]
    if len(test) < 2:
        raise InputError("too few frames with a face to measure how the identity score separates people")
    cos, ids = _cosines(test)
    clips = np.array([f.clip for f in test])
    pairs = ~np.eye(len(test), dtype=bool)
    same = (ids[:, None] == ids[None, :]) & pairs
    other_clip = same & (clips[:, None] != clips[None, :])
    different = (ids[:, None] != ids[None, :]) & pairs
    if not same.any() or not different.any():
        raise InputError("identity separation needs two identities, one with two test frames")
    same_ref = np.array([refs[i].same for i in ids])[None]  # (1, N): b's references
    different_ref = np.array([refs[i].different for i in ids])[None]
    score = identity_score(cos, same_ref, different_ref)  # (N, N): a's cosine to b against b's references
    auc_other_clip = roc_auc(score[other_clip], score[different]) if other_clip.any() else float("nan")
    return Separation(roc_auc(score[same], score[different]), roc_auc(cos[same], cos[different]), auc_other_clip,
                      int(same.sum()), int(other_clip.sum()), int(different.sum()), len(set(ids)))
