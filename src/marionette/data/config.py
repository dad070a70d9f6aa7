"""Data configuration: how videos become a dataset, and how episodes are drawn from it."""

from __future__ import annotations

from dataclasses import dataclass

from marionette.config import MAX_SHOTS, Settings, at_least, between, rule_of, setting, text
from marionette.landmarks.crop import CropConfig

SPLITS = ("train", "val", "test")  # a dataset's identity splits


@dataclass(frozen=True)
class PreprocessConfig(Settings):
    size: int = setting(256, "side of the square face crop, pixels", between(32, 1024))
    crop_scale: float = setting(CropConfig.scale,
                                "crop side / larger extent of the face mesh (loose: hair and chin inside)",
                                rule_of(CropConfig, "scale"))
    crop_shift: float = setting(CropConfig.shift,
                                "vertical crop-centre shift / mesh extent (negative = up, towards hair)",
                                rule_of(CropConfig, "shift"))
    smooth_sigma: float = setting(4.0, "temporal Gaussian smoothing of crop boxes, frames (0 = per-frame crops)",
                                  between(0, 100))
    max_frames: int = setting(32, "frames kept per clip, evenly spaced over the clip", at_least(1))
    min_face: int = setting(48, "smallest accepted face (mesh width), source pixels", at_least(1))
    min_face_fraction: float = setting(0.5, "a clip needs a face in at least this fraction of its frames",
                                       between(0, 1))
    min_decoded_fraction: float = setting(0.9,
                                          "a video decoding fewer of the frames its container reports is truncated",
                                          between(0, 1))
    max_faces: int = setting(2, "faces tracked per frame; the largest is kept", between(1, 16))
    jpeg_quality: int = setting(95, "stored crops are JPEG at this quality", between(1, 100))
    identity_level: int = setting(0, "path component under SRC_DIR naming the identity (VoxCeleb: id/video/clip)",
                                  at_least(0))
    split: str = setting("shipped",
                         'identity split: "shipped" (the package\'s held-out list), a JSON file like it, or "hash"',
                         text())
    val_fraction: float = setting(0.1, "split=hash: share of identities held out for validation", between(0, 1))
    test_fraction: float = setting(0.1, "split=hash: share of identities held out for testing", between(0, 1))
    split_seed: int = setting(0, "split=hash: seed of the identity split", at_least(0))

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
    k_min: int = setting(1, "fewest targets in an episode (K is drawn per batch in [k_min, k_max])",
                         between(1, MAX_SHOTS))
    k_max: int = setting(8, "most targets in an episode; clips need k_max + 1 frames", between(1, MAX_SHOTS))
    flip: bool = setting(True, "mirror a whole episode with probability 1/2 (training augmentation)")
    colour_jitter: float = setting(0.0,
                                   "strength of one random colour transform applied to a whole episode (ours; 0 = off)",
                                   between(0, 1))
    cross_identity: bool = setting(False, "driver from a clip of another identity (evaluation; no ground truth)")
    warp: bool = setting(False,
                         "also draw the warp renderer's image of the driver from the targets (ours: warp-guided model)")
    hard_drivers: float = setting(0.0,
                                  "share of self-mode drivers drawn from their clip's closed-eye or"
                                  " wide-mouth frames (ours; 0: uniform, as the paper)",
                                  between(0, 1))
    warp_one_target: float = setting(0.0,
                                     "share of episodes whose warp image is drawn from one random target of"
                                     " their K (ours: what that warp lacks, only the other targets can give)",
                                     between(0, 1))
    seed: int = setting(0, "seed of frame choice, flips and driver choice", at_least(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.k_min <= self.k_max, "k_min", f"must not exceed k_max={self.k_max}")
