"""Data configuration: how videos become a dataset, and how episodes are drawn from it."""

from __future__ import annotations

from dataclasses import dataclass

from marionette.config import MAX_SHOTS, Settings, at_least, between, text
from marionette.landmarks.crop import CropConfig

SPLITS = ("train", "val", "test")  # a dataset's identity splits


@dataclass(frozen=True)
class PreprocessConfig(Settings):
    size: int = 256  # side of the square face crop, pixels
    crop_scale: float = CropConfig.scale  # crop side / larger extent of the face mesh (loose: hair and chin inside)
    crop_shift: float = CropConfig.shift  # vertical crop-centre shift / mesh extent (negative = up, towards hair)
    smooth_sigma: float = 4.0  # temporal Gaussian smoothing of crop boxes, frames (0 = per-frame crops)
    max_frames: int = 32  # frames kept per clip, evenly spaced over the clip
    min_face: int = 48  # smallest accepted face (mesh width), source pixels
    min_face_fraction: float = 0.5  # a clip needs a face in at least this fraction of its frames
    min_decoded_fraction: float = 0.9  # a video decoding fewer of the frames its container reports is truncated
    max_faces: int = 2  # faces tracked per frame; the largest is kept
    jpeg_quality: int = 95  # stored crops are JPEG at this quality
    identity_level: int = 0  # path component under SRC_DIR naming the identity (VoxCeleb: id/video/clip)
    split: str = "shipped"  # identity split: "shipped" (the package's held-out list), a JSON file like it, or "hash"
    val_fraction: float = 0.1  # split=hash: share of identities held out for validation
    test_fraction: float = 0.1  # split=hash: share of identities held out for testing
    split_seed: int = 0  # split=hash: seed of the identity split

    RULES = dict(size=between(32, 1024), crop_scale=CropConfig.RULES["scale"], crop_shift=CropConfig.RULES["shift"],
                 smooth_sigma=between(0, 100), max_frames=at_least(1), min_face=at_least(1),
                 min_face_fraction=between(0, 1), min_decoded_fraction=between(0, 1), max_faces=between(1, 16),
                 jpeg_quality=between(1, 100), identity_level=at_least(0), split=text(), val_fraction=between(0, 1),
                 test_fraction=between(0, 1), split_seed=at_least(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.val_fraction + self.test_fraction < 1, "test_fraction",
                     f"val_fraction + test_fraction must be below 1 (val_fraction={self.val_fraction})")

    @property
    def crop(self) -> CropConfig:
        """crop_scale and crop_shift as the crop takes them (flat here: the keys of manifests, exports
        and `--set` stay crop_scale and crop_shift)."""
        return CropConfig(self.crop_scale, self.crop_shift)


@dataclass(frozen=True)
class EpisodeConfig(Settings):
    k_min: int = 1  # fewest targets in an episode (K is drawn per batch in [k_min, k_max])
    k_max: int = 8  # most targets in an episode; clips need k_max + 1 frames
    flip: bool = True  # mirror a whole episode with probability 1/2 (training augmentation)
    colour_jitter: float = 0.0  # strength of one random colour transform applied to a whole episode (ours; 0 = off)
    cross_identity: bool = False  # driver from a clip of another identity (evaluation; no ground truth)
    warp: bool = False  # also draw the warp renderer's image of the driver from the targets (ours: warp-guided model)
    hard_drivers: float = 0.0  # share of self-mode drivers drawn from their clip's closed-eye or wide-mouth frames (ours; 0: uniform, as the paper)
    seed: int = 0  # seed of frame choice, flips and driver choice

    RULES = dict(k_min=between(1, MAX_SHOTS), k_max=between(1, MAX_SHOTS), colour_jitter=between(0, 1), hard_drivers=between(0, 1),
                 seed=at_least(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.k_min <= self.k_max, "k_min", f"must not exceed k_max={self.k_max}")
