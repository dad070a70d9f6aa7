"""One dataset from several source folders, split by the shipped held-out identities; sharded
preprocessing whose clip folders merge into the same dataset as one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from marionette.cli import build_parser
from marionette.data.config import PreprocessConfig
from marionette.data.manifest import Manifest, assign_splits, clip_path, read_held_out, split_identities
from marionette.data.preprocess import find_clips, preprocess
from marionette.errors import InputError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "videos"
GRID = sorted(p.stem for p in ASSETS.glob("*.mp4"))


def test_shipped_held_out_list():
    held_out = read_held_out("shipped")
    val = {i for i, s in held_out.items() if s == "val"}
    test = {i for i, s in held_out.items() if s == "test"}
    assert len(test) >= 12 and len(val) >= 6 and set(held_out.values()) == {"val", "test"}
    # drawn across sources: identity names start with their source (grid_, lp_, vox2_, pcavs_, ...)
    families = {i.split("_")[0] for i in held_out}
    assert len({i.split("_")[0] for i in test}) >= 8 and len({i.split("_")[0] for i in val}) >= 5, families
    # one person under two names is never split across train and held out
    assert "obama" not in held_out and "obama_weekly_address_256" not in held_out


def test_shipped_identities_exist_in_both_folders(shared_data):
    train_ids = {p.name for p in (shared_data / "train").iterdir() if p.is_dir()}
    video_ids = {j.identity for j in find_clips(shared_data / "videos", 0)}
    held_out = read_held_out("shipped")
    assert set(held_out) <= train_ids | video_ids
    for ids in (train_ids, video_ids):  # both folders contribute val and test identities
        assert {held_out[i] for i in ids if i in held_out} == {"val", "test"}
    identities = sorted(train_ids | video_ids)
    split = split_identities(identities, PreprocessConfig())
    assert sum(s == "train" for s in split.values()) == len(identities) - len(held_out)


def test_split_settings(tmp_path):
    ids = ["grid_lwbsza", "grid_swiz3n", "alice", "bob"]
    assert split_identities(ids, PreprocessConfig()) == {"grid_lwbsza": "test", "grid_swiz3n": "val",
                                                         "alice": "train", "bob": "train"}
    hashed = PreprocessConfig(split="hash", val_fraction=0.25, test_fraction=0.25, split_seed=4)
    assert split_identities(ids, hashed) == assign_splits(ids, 0.25, 0.25, 4)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"format": "marionette-held-out", "version": 1, "val": ["bob"], "test": []}))
    assert split_identities(ids, PreprocessConfig(split=str(mine)))["bob"] == "val"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "marionette-held-out", "version": 1, "val": ["bob"], "test": ["bob"]}))
    with pytest.raises(InputError, match="bob is both val and test"):
        split_identities(ids, PreprocessConfig(split=str(bad)))
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="invalid split file"):
        split_identities(ids, PreprocessConfig(split=str(bad)))
    with pytest.raises(InputError, match="split file not found"):  # checked before any clip is processed
        preprocess(ASSETS, tmp_path / "ds", PreprocessConfig(split=str(tmp_path / "none.json")), progress=False)
    assert not (tmp_path / "ds").exists()


def test_old_manifest_keeps_its_hash_split(dataset):
    data = dataset.manifest.to_json()
    del data["config"]["split"]  # written before the setting existed
    assert Manifest.from_json(data).config.split == "hash"


def test_default_dataset_uses_the_shipped_split(dataset):
    assert {c.info.identity: c.split for c in dataset.manifest.clips} == {
        "grid_brbk7n": "train", "grid_lbax4n": "train", "grid_lwbsza": "test", "grid_swiz3n": "val"}


def test_shards_and_a_second_source_merge_into_one_dataset(dataset, tmp_path):
    out = tmp_path / "merged"
    manifest, _ = preprocess(ASSETS, out, dataset.config, workers=1, progress=False, shard=(1, 2))
    assert [c.info.clip_id for c in manifest.clips] == GRID[1::2]  # only this shard's clips
    for clip_id in GRID[0::2]:  # the other shard's clip files, made elsewhere, copied in
        clip_path(out, clip_id).write_bytes(clip_path(dataset.root, clip_id).read_bytes())
    second = tmp_path / "people" / "alice"
    second.mkdir(parents=True)
    shutil.copy(ASSETS / f"{GRID[0]}.mp4", second / "take1.mp4")
    manifest, failures = preprocess(second.parent, out, dataset.config, workers=1, progress=False)
    assert failures == {}
    by_id = {c.info.clip_id: c for c in manifest.clips}
    assert sorted(by_id) == sorted(GRID + ["alice/take1"])
    assert by_id["alice/take1"].info.identity == "alice" and by_id["alice/take1"].split == "train"
    assert [by_id[c.info.clip_id] for c in dataset.manifest.clips] == list(dataset.manifest.clips)
    for clip_id in GRID[1::2]:  # a shard's clip file is the same bytes as the whole run's
        assert clip_path(out, clip_id).read_bytes() == clip_path(dataset.root, clip_id).read_bytes()


def test_shard_option():
    parser = build_parser()
    assert parser.parse_args(["preprocess", "a", "b", "--shard", "2/5"]).shard == (2, 5)
    assert parser.parse_args(["preprocess", "a", "b"]).shard == (0, 1)
    for bad in ("5/5", "1", "a/2", "-1/2"):
        with pytest.raises(SystemExit):
            parser.parse_args(["preprocess", "a", "b", "--shard", bad])
    with pytest.raises(InputError, match="0 <= I < N"):
        preprocess(ASSETS, Path("unused"), PreprocessConfig(), shard=(3, 2))
