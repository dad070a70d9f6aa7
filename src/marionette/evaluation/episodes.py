"""Deterministic evaluation episodes, saved as CSV so that every run (and every renderer) scores
the same ones.

Paper (§Experiments): 1- and 8-shot test sets; self-reenactment takes the targets and the driver
from one video of a held-out identity (the driver frame is the ground truth); reenacting a
different identity takes the driver from another identity. ours: episode i of a mode draws its
clip(s) round-robin over the split's clips (cross: the driver's clip from the other identities),
then 8 target frames and a driver frame distinct from them; the K-shot episode i uses the first K
of those targets, so 1-shot and 8-shot episodes share drivers and are paired. With `hard` (ours,
`drivers=hard`), the drivers are instead the split's closed-eye and wide-mouth frames, taken
round-robin over the clips (self: episode i drives its own clip with the i-th of them; cross: with
the first of them from i on that is another identity's), at most one episode per such frame.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, zip_longest
from pathlib import Path

import numpy as np

from marionette.data.config import SPLITS
from marionette.data.manifest import ClipEntry, Manifest
from marionette.errors import InputError
from marionette.media import atomic_path

MAX_SHOTS = 8
FIELDS = ("mode", "shots", "episode", "target_clip", "target_frames", "driver_clip", "driver_frame")


@dataclass(frozen=True)
class EvalEpisode:
    mode: str  # self or cross
    shots: int  # K
    episode: int  # index within (mode, shots); equal indices share driver and first targets
    target_clip: str
    target_frames: tuple[int, ...]  # K frame positions in the target clip
    driver_clip: str
    driver_frame: int  # frame position in the driver clip (the ground truth in self mode)

    @property
    def name(self) -> str:
        """How files of this episode are named: <mode>_k<K>_e<i>."""
        return f"{self.mode}_k{self.shots}_e{self.episode}"


def make_episodes(manifest: Manifest, split: str, modes: tuple[str, ...], shots: tuple[int, ...],
                  count: int, seed: int, hard: Callable[[str], np.ndarray] | None = None) -> list[EvalEpisode]:
    """`count` episodes per (mode, shots) from the clips of `split`; with `hard` (a clip id -> the
    indices of its hard frames), at most one per hard frame, driven by them."""
    if any(not 1 <= k <= MAX_SHOTS for k in shots):
        raise InputError(f"shots {shots}: each must be in 1..{MAX_SHOTS}")
    held = manifest.split(split)
    if not held:
        where = [s for s in SPLITS if manifest.split(s)]
        if not where:
            raise InputError("the dataset has no clips")
        raise InputError(f"split {split!r} has no clips: this dataset's identities are {'all ' * (len(where) == 1)}in "
                         f"{' and '.join(where)}; use split=all" + "".join(f" or split={s}" for s in where if s != "train"))
    clips = sorted((c for c in held if c.info.frames > MAX_SHOTS), key=lambda c: c.info.clip_id)
    if not clips:
        raise InputError(f"split {split!r}: no clip has more than {MAX_SHOTS} frames (an episode takes {MAX_SHOTS} "
                         f"targets and a driver frame); preprocess with max_frames above {MAX_SHOTS}")
    drivers: list[tuple[ClipEntry, int]] = []  # hard: (clip, frame), round-robin over the clips
    if hard is not None:
        per_clip = ([(clip, int(f)) for f in hard(clip.info.clip_id)] for clip in clips)
        drivers = [d for d in chain.from_iterable(zip_longest(*per_clip)) if d is not None]
        if not drivers:
            raise InputError(f"split {split!r}: no frame has closed eyes or a wide-open mouth (drivers=hard)")
        count = min(count, len(drivers))
    episodes = []
    for mode in modes:
        if mode == "cross" and len({c.info.identity for c in clips}) < 2:
            raise InputError(f"cross-identity episodes need two identities in split {split!r}")
        for i in range(count):
            rng = np.random.default_rng([seed, ("self", "cross").index(mode), i])
            target = clips[i % len(clips)]
            if mode == "self" and drivers:
                target = driver = drivers[i][0]
                driver_frame = drivers[i][1]
                targets = rng.choice(np.delete(np.arange(target.info.frames), driver_frame), size=MAX_SHOTS,
                                     replace=False)
            elif mode == "self":
                driver = target
                frames = rng.choice(target.info.frames, size=MAX_SHOTS + 1, replace=False)
                targets, driver_frame = frames[:MAX_SHOTS], int(frames[MAX_SHOTS])
            elif drivers:
                others = [d for d in drivers[i:] + drivers[:i] if d[0].info.identity != target.info.identity]
                if not others:
                    raise InputError(f"split {split!r}: no other identity has a hard frame to drive "
                                     f"{target.info.clip_id} (drivers=hard)")
                driver, driver_frame = others[0]
                targets = rng.choice(target.info.frames, size=MAX_SHOTS, replace=False)
            else:
                others = [c for c in clips if c.info.identity != target.info.identity]
                driver = others[rng.integers(len(others))]
                targets = rng.choice(target.info.frames, size=MAX_SHOTS, replace=False)
                driver_frame = int(rng.integers(driver.info.frames))
            episodes += [EvalEpisode(mode, k, i, target.info.clip_id, tuple(int(f) for f in targets[:k]),
                                     driver.info.clip_id, driver_frame) for k in shots]
    return episodes


def save_episodes(path: Path, episodes: list[EvalEpisode]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for e in episodes:
            writer.writerow([e.mode, e.shots, e.episode, e.target_clip, " ".join(map(str, e.target_frames)),
                             e.driver_clip, e.driver_frame])


def load_episodes(path: Path) -> list[EvalEpisode]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return [EvalEpisode(r["mode"], int(r["shots"]), int(r["episode"]), r["target_clip"],
                            tuple(int(x) for x in r["target_frames"].split()), r["driver_clip"], int(r["driver_frame"]))
                for r in rows]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not an episode list ({e})") from None
