"""Loose, square, VoxCeleb-style head crops that stay steady over a clip, and their inverse.

method.md (Preprocessing, ours): the crop holds hair and chin, is square, is smoothed over time so it
does not jitter, and its transform is kept so a result can be pasted back into the original frame.
Coordinates follow OpenCV: pixel centres at integer positions. CropConfig is how loose a crop is:
the dataset's crops are cut with it (PreprocessConfig.crop), and so are a generator's inference
crops, as its training crops were.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from marionette.config import Settings, between, setting


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned square in source pixels: centre (cx, cy) and side length."""

    cx: float
    cy: float
    side: float

    @classmethod
    def whole(cls, size: int) -> CropBox:
        """The box of a whole size x size image: its crop at `size` pixels is the image itself."""
        return cls((size - 1) / 2, (size - 1) / 2, float(size))

    def matrix(self, size: int) -> np.ndarray:
        """(2, 3) affine map from source pixels to the pixels of a size x size crop."""
        k = size / self.side
        x0, y0 = self.cx - self.side / 2, self.cy - self.side / 2
        # box edges x0 .. x0 + side map to crop edges -0.5 .. size - 0.5, so (cx, cy) lands on the
        # crop centre ((size - 1) / 2)
        return np.array([[k, 0.0, -k * x0 - 0.5], [0.0, k, -k * y0 - 0.5]])

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """(..., 2 or 3) source points -> crop points; z is scaled like x and y."""
        m = self.matrix(size)
        out = points.astype(np.float32, copy=True)
        out[..., :2] = points[..., :2] * m[0, 0] + m[:, 2]
        if points.shape[-1] > 2:
            out[..., 2] = points[..., 2] * m[0, 0]
        return out

    def to_source(self, points: np.ndarray, size: int) -> np.ndarray:
        """Inverse of `to_crop`."""
        m = self.matrix(size)
        out = points.astype(np.float32, copy=True)
        out[..., :2] = (points[..., :2] - m[:, 2]) / m[0, 0]
        if points.shape[-1] > 2:
            out[..., 2] = points[..., 2] / m[0, 0]
        return out

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.side], dtype=np.float32)


def head_box(mesh: np.ndarray, scale: float, shift_y: float) -> CropBox:
    """Loose head box around (478, 2+) mesh points: side = scale x the larger mesh extent, centre
    moved by shift_y x that extent (negative = up, towards the hair)."""
    lo, hi = mesh[:, :2].min(0), mesh[:, :2].max(0)
    extent = float((hi - lo).max())
    cx, cy = (lo + hi) / 2
    return CropBox(float(cx), float(cy + shift_y * extent), scale * extent)


@dataclass(frozen=True)
class CropConfig(Settings):
    scale: float = setting(1.8, "crop side / larger extent of the face mesh (loose: hair and chin inside)",
                           between(1, 4))
    shift: float = setting(-0.1, "vertical crop-centre shift / mesh extent (negative = up, towards hair)",
                           between(-1, 1))

    def box(self, mesh: np.ndarray) -> CropBox:
        """The head box of a (478, 2+) mesh (see head_box)."""
        return head_box(mesh, self.scale, self.shift)


def smooth_boxes(boxes: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Steady crops over a clip: (T, 3) boxes (cx, cy, side) with a (T,) validity mask ->
    (T, 3) boxes, missing frames interpolated, then a centred Gaussian of `sigma` frames (ours)."""
    t = np.arange(len(boxes))
    if not valid.any():
        raise ValueError("no valid box to smooth")
    filled = np.stack([np.interp(t, t[valid], boxes[valid, c]) for c in range(3)], axis=1)
    if sigma <= 0 or len(boxes) < 2:
        return filled.astype(np.float32)
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(filled, ((radius, radius), (0, 0)), mode="edge")
    out = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(3)], axis=1)
    return out.astype(np.float32)


def crop_image(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 crop; anti-aliased when shrinking; edges replicated."""
    m = box.matrix(size)
    shrink = box.side / size
    if shrink > 1.5:  # low-pass only the region we read, sigma as for image pyramids (ours)
        sigma = (shrink - 1) / 2
        pad = int(3 * sigma) + 2
        h, w = image.shape[:2]
        x0 = max(int(box.cx - box.side / 2) - pad, 0)
        y0 = max(int(box.cy - box.side / 2) - pad, 0)
        x1 = min(int(box.cx + box.side / 2) + pad + 1, w)
        y1 = min(int(box.cy + box.side / 2) + pad + 1, h)
        if x1 > x0 and y1 > y0:
            image = cv2.GaussianBlur(image[y0:y1, x0:x1], (0, 0), sigma)
            m = m.copy()
            m[:, 2] += m[:, :2] @ np.array([x0, y0])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class PasteBack:
    """Puts (S, S, 3) crops back into one (H, W, 3) source frame with a soft square edge
    (feather = blur width as a fraction of the crop). The mask and the region are computed once."""

    def __init__(self, frame_shape: tuple[int, ...], box: CropBox, size: int, feather: float = 0.08):
        h, w = frame_shape[:2]
        half = box.side / 2
        self.x0, self.y0 = max(int(np.floor(box.cx - half)) - 1, 0), max(int(np.floor(box.cy - half)) - 1, 0)
        self.x1, self.y1 = min(int(np.ceil(box.cx + half)) + 2, w), min(int(np.ceil(box.cy + half)) + 2, h)
        self.matrix = box.matrix(size)  # source -> crop
        self.matrix[:, 2] += self.matrix[:, :2] @ np.array([self.x0, self.y0])  # region -> crop
        region = (self.x1 - self.x0, self.y1 - self.y0)
        margin = max(int(feather * size), 1)
        mask = np.zeros((size, size), np.float32)
        mask[margin:-margin, margin:-margin] = 1.0
        mask = cv2.GaussianBlur(mask, (0, 0), margin / 2)
        self.mask = cv2.warpAffine(mask, self.matrix, region, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)  # (h, w)
        self.unmask = 1.0 - self.mask  # (h, w)

    def __call__(self, frame: np.ndarray, crop: np.ndarray) -> np.ndarray:
        region = (self.x1 - self.x0, self.y1 - self.y0)
        warped = cv2.warpAffine(crop, self.matrix, region, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        out = frame.copy()
        # the frame weighted 1 - mask, the crop mask, rounded to uint8 in one pass (1.3 ms for a 400-px box, 5.5 in numpy)
        out[self.y0 : self.y1, self.x0 : self.x1] = cv2.blendLinear(frame[self.y0 : self.y1, self.x0 : self.x1], warped,
                                                                    self.unmask, self.mask)
        return out


def paste_back(frame: np.ndarray, crop: np.ndarray, box: CropBox, feather: float = 0.08) -> np.ndarray:
    """Put a (S, S, 3) crop back into its (H, W, 3) source frame (see PasteBack)."""
    return PasteBack(frame.shape, box, crop.shape[0], feather)(frame, crop)
