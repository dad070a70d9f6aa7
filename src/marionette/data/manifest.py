"""The dataset manifest: every clip with its identity, frame count, source, size and split.

`manifest.json` is derived from the clip files themselves (their metadata), so it can always be
rebuilt: a killed run loses nothing that a rerun cannot recover, and the clip folders of several
`preprocess --shard I/N` runs merge by copying them together and rebuilding.

Splits are by identity. By default (`split=shipped`) they come from a fixed list of held-out
identities shipped with the package (assets/held_out.json: val and test identities of
../shared/data/train and ../shared/data/videos, every other identity is train), so the held-out
faces stay the same whatever else is added to a dataset; `split=PATH` reads another list of that
form, `split=hash` orders identities by a seeded hash instead (val_fraction, test_fraction).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from marionette.config import from_dict, to_dict
from marionette.data.config import SPLITS, PreprocessConfig
from marionette.data.store import ClipInfo, read_info
from marionette.errors import InputError
from marionette.media import atomic_path

FORMAT = "marionette-dataset"
VERSION = 1
HELD_OUT_FORMAT = "marionette-held-out"
HELD_OUT_ASSET = "held_out.json"


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
        # manifests written before `split` existed were split by hash
        return cls(from_dict(PreprocessConfig, {"split": "hash", **data["config"]}), clips)

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


def read_held_out(source: str) -> dict[str, str]:
    """Held-out identity -> "val" or "test", from the shipped list ("shipped") or a JSON file of
    its form: {"format": "marionette-held-out", "version": 1, "val": [...], "test": [...]}."""
    if source == "shipped":
        name, text = HELD_OUT_ASSET, (importlib.resources.files("marionette") / "assets" / HELD_OUT_ASSET).read_text()
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: split file not found (split= takes shipped, hash or a JSON file)")
        name, text = str(path), path.read_text()
    try:
        data = json.loads(text)
        if data.get("format") != HELD_OUT_FORMAT or data.get("version") != 1:
            raise ValueError(f"not a {HELD_OUT_FORMAT} v1 file")
        val, test = list(data["val"]), list(data["test"])
        if not all(isinstance(i, str) for i in val + test):
            raise ValueError("identities must be texts")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{name}: invalid split file ({e})") from None
    both = sorted(set(val) & set(test))
    if both:
        raise InputError(f"{name}: identity {both[0]} is both val and test")
    return {**{i: "val" for i in val}, **{i: "test" for i in test}}


def split_identities(identities: list[str], config: PreprocessConfig) -> dict[str, str]:
    """Identity -> split as `config.split` says (see the module docstring)."""
    if config.split == "hash":
        return assign_splits(identities, config.val_fraction, config.test_fraction, config.split_seed)
    held_out = read_held_out(config.split)
    return {i: held_out.get(i, "train") for i in identities}


def clip_path(root: Path, clip_id: str) -> Path:
    return root / "clips" / f"{clip_id}.safetensors"


def build_manifest(root: Path, config: PreprocessConfig) -> Manifest:
    """Scan `root/clips` and write `root/manifest.json` with identity-disjoint splits."""
    files = [p for p in (root / "clips").rglob("*.safetensors") if not p.name.startswith(".")]  # not temps
    infos = sorted((read_info(p) for p in files), key=lambda i: i.clip_id)
    split = split_identities([i.identity for i in infos], config)
    manifest = Manifest(config, tuple(ClipEntry(i, split[i.identity]) for i in infos))
    manifest.save(root / "manifest.json")
    return manifest
