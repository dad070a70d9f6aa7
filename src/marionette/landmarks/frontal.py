"""The frontal mean face mesh: MediaPipe's 478 points of the average face of the shared clips, seen
face on, centred, eyes level, inter-ocular distance 1 (the landmark transformer's normalised frame,
x right, y down). The warp measures how foreshortened a face triangle is against it. A package
asset (assets/frontal_mesh.json, written by tools/derive_frontal_mesh.py from the shipped landmark
transformer's Procrustes reference)."""

from __future__ import annotations

import functools
import json

import numpy as np

from marionette.resources import asset

FRONTAL_MESH = "frontal_mesh.json"  # package asset


@functools.cache
def frontal_mesh() -> np.ndarray:
    """(478, 3) float64 frontal mean mesh, in inter-ocular units."""
    return np.array(json.loads(asset(FRONTAL_MESH).read_text()), np.float64)
