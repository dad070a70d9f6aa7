"""One clip on disk: a safetensors file of JPEG crops, 3D landmarks, poses and crop boxes.

Layout of `clips/<clip_id>.safetensors` (F = frames kept, S = crop size):
  jpeg (N,) uint8        the F JPEG-encoded RGB crops, concatenated
  jpeg_offsets (F+1,)    byte offsets of each crop in `jpeg`
  frame_index (F,)       index of each kept frame in the source clip
  mesh (F, 478, 3)       MediaPipe mesh in crop pixels (z scaled like x)
  ibug68 (F, 68, 3)      the 68-point layout in crop pixels
  pose (F, 3)            yaw, pitch, roll in degrees
  boxes (F, 3)           crop boxes (cx, cy, side) in source pixels, for pasting back
Metadata (strings): clip_id, identity, source, fps, source_frames, source_width, source_height, size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from safetensors import safe_open

from marionette.media import write_safetensors


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str  # path of the clip under the source root, without extension
    identity: str  # person id (a path component, see PreprocessConfig.identity_level)
    source: str  # source file or folder, relative to the source root
    frames: int  # frames kept
    size: int  # crop side, pixels
    fps: float  # source frame rate (0 if unknown)
    source_frames: int  # frames decoded from the source
    source_width: int
    source_height: int


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (N,) uint8 JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.reshape(-1)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """(N,) uint8 JPEG bytes -> (H, W, 3) uint8 RGB."""
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def write_clip(path: Path, info: ClipInfo, jpegs: list[np.ndarray], arrays: dict[str, np.ndarray]) -> None:
    """Write one clip file atomically (a kill leaves either the old state or the whole file) and
    reproducibly (the same clip gives the same bytes)."""
    offsets = np.cumsum([0] + [len(j) for j in jpegs]).astype(np.int64)
    tensors = {"jpeg": np.concatenate(jpegs), "jpeg_offsets": offsets, **arrays}
    write_safetensors(path, tensors, {k: json.dumps(v) for k, v in asdict(info).items()})


def read_info(path: Path) -> ClipInfo:
    """Only the metadata of a clip file (no tensors are read)."""
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    return ClipInfo(**{k: json.loads(v) for k, v in meta.items()})


class ClipReader:
    """Random access to one clip file: small arrays in memory, crops decoded on demand."""

    def __init__(self, path: Path):
        self.path = path
        with safe_open(str(path), framework="np") as f:
            self.info = ClipInfo(**{k: json.loads(v) for k, v in f.metadata().items()})
            self.offsets = f.get_tensor("jpeg_offsets")
            self.ibug68 = f.get_tensor("ibug68")  # (F, 68, 3)
            self.pose = f.get_tensor("pose")  # (F, 3)
            self.boxes = f.get_tensor("boxes")  # (F, 3)

    def __len__(self) -> int:
        return self.info.frames

    def images(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """(n,) frame positions -> (n, S, S, 3) uint8 RGB crops."""
        with safe_open(str(self.path), framework="np") as f:
            data = f.get_slice("jpeg")
            return np.stack([decode_jpeg(data[int(self.offsets[i]) : int(self.offsets[i + 1])]) for i in indices])

    def mesh(self) -> np.ndarray:
        """(F, 478, 3) dense landmarks in crop pixels."""
        with safe_open(str(self.path), framework="np") as f:
            return f.get_tensor("mesh")
