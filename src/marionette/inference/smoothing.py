"""Causal smoothing of tracked landmarks for streaming drivers: the One-Euro filter.

ours: Casiez et al.'s One-Euro filter (CHI 2012) per coordinate: a low-pass whose cut-off rises
with speed, so still faces stop jittering while fast motion keeps little lag. `boost` raises the
cut-off of some coordinates: the lids and lips, whose blinks and syllables last 2-4 frames
(at the face's cut-off a 2-frame blink kept under half its depth).
"""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    def __init__(self, fps: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0,
                 boost: np.ndarray | float = 1.0):
        """`boost`: the cut-offs' factor, a number or an array that broadcasts to the samples."""
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff, self.boost = min_cutoff, beta, d_cutoff, boost
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter one sample (any shape); off when min_cutoff <= 0."""
        if self.min_cutoff <= 0:
            return x
        if self._x is None:
            self._x, self._dx = x.astype(np.float64), np.zeros(x.shape)
            return x
        dx = (x - self._x) / self.dt
        self._dx = self._dx + self._alpha(self.d_cutoff) * (dx - self._dx)
        a = self._alpha(self.boost * (self.min_cutoff + self.beta * np.abs(self._dx)))
        self._x = self._x + a * (x - self._x)
        return self._x.astype(x.dtype)
