"""A face mesh's openings, the lips and the lids, kept possible (ours): shared by the driving and the
landmark transformer, which add a change of expression to a face whose own expression may have been
misread or regressed towards the mean.

- `uncrossed`: no lower lid or lip above its upper one;
- `closed_lips`: the lips brought together, what lies below them raised with them;
- `opened_lids`: each eye's lids opened or closed to a given eye aspect ratio;
- `mirrored_lids`: a turned-away eye's lids moved as the shown one's.
"""

from __future__ import annotations

import numpy as np

from marionette.landmarks.layout import LOWER_LID, MESH_EYE_OPENINGS, MESH_INNER_LIPS, MESH_MIRROR, UPPER_LID
from marionette.landmarks.measures import CLOSED_MOUTH, eye_ratios

LID_PAIRS = [(opening[UPPER_LID], opening[LOWER_LID]) for opening in MESH_EYE_OPENINGS]  # (upper, lower) (7,) each, from the outer corner
LID_STEPS = 4  # opened_lids' secant steps at most: within 1e-4 of the ratio asked for, 0.5x to 2x the mesh's own (tests)
LIP_PAIRS = (MESH_INNER_LIPS[1:10], MESH_INNER_LIPS[19:10:-1])  # inner lips: upper, lower (9,) each, corner to corner


def _down(mesh: np.ndarray) -> np.ndarray:
    """(478, 3) mesh -> (2,) unit vector from between its eyes' outer corners to its mouth, in the image."""
    eyes = (mesh[MESH_EYE_OPENINGS[0, 0], :2] + mesh[MESH_EYE_OPENINGS[1, 0], :2]) / 2
    down = (mesh[MESH_INNER_LIPS[0], :2] + mesh[MESH_INNER_LIPS[10], :2]) / 2 - eyes
    return down / max(float(np.linalg.norm(down)), 1e-6)


def closed_lips(mesh: np.ndarray, by: float) -> np.ndarray:
    """(478, 3) mesh -> the same face with its inner lips brought together by `by` of the mouth's
    width (each column of the lips at most until it is CLOSED_MOUTH apart): what lies below them (the
    lower lip, the chin) is raised by its nearest lip columns' share (interpolated across the mouth,
    none beyond its corners), what lies between them by its share of the way down (ours: a neutral
    face's lips meet)."""
    upper, lower = mesh[LIP_PAIRS[0], :2], mesh[LIP_PAIRS[1], :2]  # (9, 2) each, corner to corner
    left, right = mesh[MESH_INNER_LIPS[0], :2], mesh[MESH_INNER_LIPS[10], :2]
    width = max(float(np.linalg.norm(right - left)), 1e-6)
    across, down = (right - left) / width, _down(mesh)  # (2,) each
    top, bottom = upper @ down, lower @ down  # (9,) heights of the lips along the face's down axis
    excess = np.clip(bottom - top - CLOSED_MOUTH * width, 0, by * width)  # (9,)
    if excess.max() == 0:
        return mesh
    columns = np.concatenate([[0.0], ((upper + lower) / 2 - left) @ across / width, [1.0]])  # (11,) across the mouth
    columns = np.maximum.accumulate(columns)  # increasing, as np.interp needs, even on a mesh misread at a turn
    where = (mesh[:, :2] - left) @ across / width  # (478,) position of each vertex across the mouth
    rise = np.interp(where, columns, np.concatenate([[0.0], excess, [0.0]]), left=0.0, right=0.0)  # (478,)
    at_top = np.interp(where, columns[1:-1], top)
    at_bottom = np.interp(where, columns[1:-1], bottom)
    share = np.clip((mesh[:, :2] @ down - at_top) / np.maximum(at_bottom - at_top, 1e-6), 0, 1)  # (478,)
    out = mesh.copy()
    out[:, :2] -= (rise * share)[:, None] * down
    return out


def opened_lids(mesh: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """(478, 3) mesh -> the same face with each eye's lids moved across the line through the eye's
    corners (in the image), all by one factor per eye, until its eye aspect ratio (`eye_ratios`) is
    `ratios` (2,): the subject's right, then left eye. Nothing else moves."""
    out = mesh.copy()
    for eye, (opening, wanted) in enumerate(zip(MESH_EYE_OPENINGS, ratios)):
        outer, inner = mesh[opening[0], :2], mesh[opening[8], :2]
        along = (inner - outer) / max(float(np.linalg.norm(inner - outer)), 1e-6)  # (2,)
        lids = np.concatenate([opening[UPPER_LID], opening[LOWER_LID]])  # (14,)
        offset = mesh[lids, :2] - outer
        across = offset - (offset @ along)[:, None] * along  # (14, 2) each lid point's offset from the corner line
        k0, f0 = 1.0, float(eye_ratios(mesh)[eye])  # a factor and the eye's ratio with it
        k1 = float(wanted) / max(f0, 1e-6)  # in proportion first, then secant steps: the ratio is nearly linear in it
        for _ in range(1 + LID_STEPS):
            out[lids, :2] = mesh[lids, :2] + (k1 - 1) * across
            f1 = float(eye_ratios(out)[eye])
            if abs(f1 - wanted) < 1e-6 or f1 == f0:
                break
            k0, k1, f0 = k1, max(k1 + (wanted - f1) * (k1 - k0) / (f1 - f0), 0.0), f1
    return out


def mirrored_lids(change: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """(T, 478, 3) displacements of a face, in a frame whose x runs across it (the landmark transformer's
    normalised frame), and (T, 2) whether each eye is shown (`seen_eyes`) -> the same, with the opening
    (lids and corners) of an eye not shown where the other is moved as the other's, mirrored (ours: a
    turned-away eye's lids are the face mesh's guess, which opened or shut one eye of the output alone)."""
    out = change.copy()
    for eye in (0, 1):
        frames = np.flatnonzero(~shown[:, eye] & shown[:, 1 - eye])  # (n,)
        opening = MESH_EYE_OPENINGS[eye]  # (16,)
        out[np.ix_(frames, opening)] = change[np.ix_(frames, MESH_MIRROR[opening])] * np.array([-1.0, 1.0, 1.0])
    return out


def uncrossed(mesh: np.ndarray) -> np.ndarray:
    """(478, 3) mesh whose lips and lids never cross: where a lower point lies above its upper one
    (along the face's eyes-to-mouth axis, in the image), both move to their middle. A change of
    expression added to a face whose own expression was misread can push them through each other."""
    down = _down(mesh)  # (2,)
    out = mesh
    for upper, lower in (*LID_PAIRS, LIP_PAIRS):
        overlap = np.minimum((out[lower, :2] - out[upper, :2]) @ down, 0)  # (P,) <= 0
        if overlap.min() < 0:
            out = out.copy() if out is mesh else out
            out[upper, :2] += 0.5 * overlap[:, None] * down
            out[lower, :2] -= 0.5 * overlap[:, None] * down
    return out
