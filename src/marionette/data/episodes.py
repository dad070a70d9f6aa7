"""Episodes for meta-training and evaluation: K target frames and one driver frame.

Paper (Training): an episode takes K targets and a driver from one video, so the driver frame is
the ground truth. K is fixed within a batch (any K in [k_min, k_max]): `EpisodeBatchSampler` draws
it per batch and hands the dataset (index, K, episode seed) keys. A cross-identity mode (targets of
one identity, driver from another identity's clip) serves evaluation. Landmark images are rendered
at load time from the stored 3D landmarks, after the (episode-wide) flip. With `warp` on (ours,
for the warp-guided model and the validation's warp baseline), the training-free warp renderer
(marionette/warp.py, through its public prepare/render) draws the driver's mesh from the K target
crops and meshes, before the flip and colour jitter, which then apply to it like to every image;
with `warp_one_target` (ours, training) a share of episodes draws it from one random target only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from marionette.data.config import EpisodeConfig
from marionette.data.manifest import ClipEntry, Manifest, clip_path
from marionette.data.store import ClipReader
from marionette.errors import InputError
from marionette.landmarks.layout import IBUG68_MIRROR
from marionette.landmarks.measures import hard_frames
from marionette.landmarks.render import render_landmarks
from marionette.tensors import to_tensor
from marionette.warp import WarpRenderer


class Episode(NamedTuple):
    """One episode (batched by the DataLoader: a leading B on every tensor). Pixels in [-1, 1]."""

    target_images: torch.Tensor  # (K, 3, S, S)
    target_landmark_images: torch.Tensor  # (K, 3, S, S)
    target_landmarks: torch.Tensor  # (K, 68, 3) crop pixels
    driver_image: torch.Tensor  # (3, S, S): the ground truth in self mode
    driver_landmark_image: torch.Tensor  # (3, S, S)
    driver_landmarks: torch.Tensor  # (68, 3) crop pixels
    target_clip: str
    driver_clip: str
    warp_image: torch.Tensor  # (3, S, S) the warp renderer's image of the driver; empty (0,) unless config.warp


def jitter_colours(rng: np.random.Generator, strength: float, *images: np.ndarray) -> list[np.ndarray]:
    """One random affine colour transform (a 3x3 mix near the identity plus an offset, both scaled by
    `strength`) applied to every image of an episode (uint8, (..., 3)). Ours: with few training
    identities the generator could memorise their colours; re-colouring targets and driver alike
    makes the targets the only source of appearance, which is what meta-learning is meant to teach."""
    mix = np.eye(3) + strength * rng.normal(size=(3, 3)) / 2  # (3, 3)
    offset = strength * 64 * rng.normal(size=3)  # (3,) in 0..255 units
    return [np.clip(im.astype(np.float32) @ mix.T.astype(np.float32) + offset, 0, 255).astype(np.uint8)
            for im in images]


def flip_landmarks(points: np.ndarray, size: int) -> np.ndarray:
    """Mirror (..., 68, 3) crop-pixel landmarks horizontally, relabelling left and right."""
    out = points[..., IBUG68_MIRROR, :].copy()
    out[..., 0] = size - 1 - out[..., 0]
    return out


class EpisodeDataset(Dataset):
    """Episodes from one split of a preprocessed dataset.

    Keys: an int i (K = k_max, seed from i) or a tuple (i, K, episode_seed) from the batch sampler.
    Item i is the i-th usable clip of the split (the targets' clip). Deterministic in (seed, key).
    """

    def __init__(self, root: str | Path, split: str, config: EpisodeConfig = EpisodeConfig()):
        self.root = Path(root)
        self.config = config
        manifest = Manifest.load(self.root)
        need = config.k_max if config.cross_identity else config.k_max + 1
        clips = manifest.split(split)
        self.clips: list[ClipEntry] = [c for c in clips if c.info.frames >= need]
        self.skipped = len(clips) - len(self.clips)  # clips too short for k_max (+ 1) frames
        if not self.clips:
            raise InputError(f"{self.root}: no clip in split {split!r} has the {need} frames an episode needs")
        self.size = manifest.config.size
        self._warp: WarpRenderer | None = None  # made on first use, in the worker process
        if config.cross_identity and len({c.info.identity for c in self.clips}) < 2:
            raise InputError(f"{self.root}: cross-identity episodes need two identities in split {split!r}")

    def __len__(self) -> int:
        return len(self.clips)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one dataset per process, alive as long as it; per worker)
    def _reader(self, clip_id: str) -> ClipReader:
        return ClipReader(clip_path(self.root, clip_id))

    @functools.lru_cache(maxsize=None)  # noqa: B019 (as _reader's)
    def _hard_frames(self, clip_id: str) -> np.ndarray:
        """Indices of the clip's frames with closed eyes or a wide-open mouth (its stored meshes)."""
        return hard_frames(self._reader(clip_id).mesh())  # mesh (N, 478, 3)

    def __getitem__(self, key: int | tuple[int, int, int]) -> Episode:
        index, k, episode_seed = (key, self.config.k_max, key) if isinstance(key, int) else key
        rng = np.random.default_rng([self.config.seed, index, episode_seed])
        target = self.clips[index]
        reader = self._reader(target.info.clip_id)
        if self.config.cross_identity:
            others = [c for c in self.clips if c.info.identity != target.info.identity]
            driver = others[rng.integers(len(others))]
            driver_reader = self._reader(driver.info.clip_id)
            target_idx = rng.choice(len(reader), size=k, replace=False)
            driver_idx = rng.integers(len(driver_reader))
        else:
            driver, driver_reader = target, reader
            hard = self._hard_frames(target.info.clip_id) if self.config.hard_drivers else ()
            if len(hard) and rng.random() < self.config.hard_drivers:  # ours: what the warp cannot draw, more often
                driver_idx = rng.choice(hard)
                target_idx = rng.choice(np.delete(np.arange(len(reader)), driver_idx), size=k, replace=False)
            else:
                picked = rng.choice(len(reader), size=k + 1, replace=False)
                target_idx, driver_idx = picked[:k], picked[k]
        target_images = reader.images(target_idx)  # (K, S, S, 3) uint8
        driver_image = driver_reader.images([driver_idx])[0]  # (S, S, 3)
        target_lmk = reader.ibug68[target_idx]  # (K, 68, 3)
        driver_lmk = driver_reader.ibug68[driver_idx]  # (68, 3)
        warp_from = np.arange(k)  # the targets the warp image is drawn from
        # off (0), no number is drawn, so every other episode stays as it was
        if self.config.warp and k > 1 and self.config.warp_one_target and rng.random() < self.config.warp_one_target:
            warp_from = rng.integers(k, size=1)
        warp = self._warp_image(reader, target_idx[warp_from], target_images[warp_from], driver_reader,
                                driver_idx)  # (S, S, 3) or (0,)
        if self.config.flip and rng.random() < 0.5:
            target_images, driver_image = target_images[:, :, ::-1], driver_image[:, ::-1]
            target_lmk, driver_lmk = flip_landmarks(target_lmk, self.size), flip_landmarks(driver_lmk, self.size)
            warp = warp[:, ::-1] if warp.size else warp
        if self.config.colour_jitter > 0:
            target_images, driver_image, jittered = jitter_colours(
                rng, self.config.colour_jitter, target_images, driver_image, warp.reshape(-1, 3))
            warp = jittered.reshape(warp.shape)
        target_r = np.stack([render_landmarks(p, self.size) for p in target_lmk])  # (K, S, S, 3)
        driver_r = render_landmarks(driver_lmk, self.size)  # (S, S, 3)
        return Episode(
            to_tensor(target_images), to_tensor(target_r), torch.from_numpy(np.ascontiguousarray(target_lmk)),
            to_tensor(driver_image), to_tensor(driver_r), torch.from_numpy(np.ascontiguousarray(driver_lmk)),
            target.info.clip_id, driver.info.clip_id,
            to_tensor(warp) if warp.size else torch.empty(0),
        )

    def _warp_image(self, reader: ClipReader, target_idx: np.ndarray, target_images: np.ndarray,
                    driver_reader: ClipReader, driver_idx: int) -> np.ndarray:
        """The warp renderer's (S, S, 3) uint8 image of the driver's mesh from the given targets, or an
        empty array when `warp` is off."""
        if not self.config.warp:
            return np.zeros((0,), np.uint8)
        if self._warp is None:
            self._warp = WarpRenderer(self.size)
        self._warp.prepare(target_images, reader.mesh()[target_idx])  # (K, S, S, 3), (K, 478, 3)
        return self._warp.render(driver_reader.mesh()[driver_idx])


class EpisodeBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches of (index, K, episode_seed) keys with one K per batch, drawn in [k_min, k_max].

    Shuffled per epoch (call `set_epoch`); with `num_replicas` > 1 each rank takes its own share
    (the same K sequence on every rank, so DDP ranks stay in step)."""

    def __init__(self, dataset_len: int, batch_size: int, config: EpisodeConfig, shuffle: bool = True,
                 drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        self.dataset_len, self.batch_size, self.config = dataset_len, batch_size, config
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, self.epoch])
        order = rng.permutation(self.dataset_len) if self.shuffle else np.arange(self.dataset_len)
        per_rank = -(-len(order) // self.num_replicas)
        order = np.resize(order, per_rank * self.num_replicas)  # pad by wrapping so ranks get equal shares
        return order[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n = -(-self.dataset_len // self.num_replicas)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        indices = self._indices()
        k_rng = np.random.default_rng([self.config.seed, self.epoch, 1])
        for b in range(len(self)):
            chunk = indices[b * self.batch_size : (b + 1) * self.batch_size]
            k = int(k_rng.integers(self.config.k_min, self.config.k_max + 1))
            yield [(int(i), k, self.epoch * self.dataset_len + int(i)) for i in chunk]
