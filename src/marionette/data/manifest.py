"""The dataset manifest: every clip with its identity, frame count, source, size and split.

`manifest.json` is derived from the clip files themselves (their metadata), so it can always be
rebuilt: a killed run loses nothing that a rerun cannot recover.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from marionette.config import from_dict, to_dict
from marionette.data.config import PreprocessConfig
from marionette.data.store import ClipInfo, read_info
from marionette.errors import InputError
from marionette.media import atomic_path

FORMAT = "marionette-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipEntry:
    info: ClipInfo
    split: str  # train, val or test


@dataclass(frozen=True)
class Manifest:
    config: PreprocessConfig
    clips: tuple[ClipEntry, ...]

    def split(self, name: str) -> list[ClipEntry]:
        if name not in SPLITS and name != "all":
            raise ValueError(f"unknown split {name!r} (one of {', '.join(SPLITS)}, all)")
        return [c for c in self.clips if name in ("all", c.split)]

    def to_json(self) -> dict[str, Any]:
        clips = [{**asdict(c.info), "split": c.split} for c in self.clips]
        return {"format": FORMAT, "version": VERSION, "config": to_dict(self.config), "clips": clips}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} manifest")
        clips = tuple(ClipEntry(ClipInfo(**{k: v for k, v in c.items() if k != "split"}), c["split"])
                      for c in data["clips"])
        return cls(from_dict(PreprocessConfig, data["config"]), clips)

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Load `path` (a manifest.json or a dataset folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        if not path.is_file():
            raise InputError(f"{path}: no dataset manifest (run `marionette preprocess` first)")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: invalid manifest ({e})") from None


def assign_splits(identities: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Identity -> split, disjoint by construction. Identities are ordered by a seeded hash; the
    first ceil(n·test) go to test, the next ceil(n·val) to val, the rest (at least one) to train."""
    ranked = sorted(set(identities), key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())
    n = len(ranked)
    n_test = math.ceil(n * test_fraction)
    n_val = math.ceil(n * val_fraction)
    while n_test + n_val > max(n - 1, 0):  # keep at least one training identity
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    split = {i: "test" for i in ranked[:n_test]}
    split.update({i: "val" for i in ranked[n_test : n_test + n_val]})
    split.update({i: "train" for i in ranked[n_test + n_val :]})
    return split


def clip_path(root: Path, clip_id: str) -> Path:
    return root / "clips" / f"{clip_id}.safetensors"


def build_manifest(root: Path, config: PreprocessConfig) -> Manifest:
    """Scan `root/clips` and write `root/manifest.json` with identity-disjoint splits."""
    files = [p for p in (root / "clips").rglob("*.safetensors") if not p.name.startswith(".")]  # not temps
    infos = sorted((read_info(p) for p in files), key=lambda i: i.clip_id)
    split = assign_splits([i.identity for i in infos], config.val_fraction, config.test_fraction, config.split_seed)
    manifest = Manifest(config, tuple(ClipEntry(i, split[i.identity]) for i in infos))
    manifest.save(root / "manifest.json")
    return manifest
