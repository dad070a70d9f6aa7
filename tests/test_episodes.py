"""Episode dataset: shapes, determinism, flips consistent across the episode, K per batch, cross mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from marionette.data.config import EpisodeConfig, PreprocessConfig
from marionette.data.episodes import EpisodeBatchSampler, EpisodeDataset, flip_landmarks, jitter_colours
from marionette.data.preprocess import preprocess
from marionette.errors import InputError
from marionette.landmarks.layout import IBUG68_MIRROR

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "videos"
SIZE = 64


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    config = PreprocessConfig(size=SIZE, max_frames=10, split="hash", test_fraction=0.0, val_fraction=0.0)
    preprocess(ASSETS, root, config, workers=1, progress=False)
    return root


def test_episode_shapes_and_range(dataset_root: Path) -> None:
    ds = EpisodeDataset(dataset_root, "train", EpisodeConfig(k_max=8))
    ep = ds[(0, 3, 7)]
    assert ep.target_images.shape == (3, 3, SIZE, SIZE)
    assert ep.target_landmark_images.shape == (3, 3, SIZE, SIZE)
    assert ep.target_landmarks.shape == (3, 68, 3)
    assert ep.driver_image.shape == ep.driver_landmark_image.shape == (3, SIZE, SIZE)
    assert ep.driver_landmarks.shape == (68, 3)
    for t in (ep.target_images, ep.driver_image):  # uint8 crops scaled to [-1, 1]: a face's shadows and highlights
        assert t.dtype == torch.float32 and -1.0 <= t.min() < -0.5 and 0.5 < t.max() <= 1.0
    landmarks = ep.driver_landmark_image
    assert landmarks.dtype == torch.float32 and landmarks.min() == -1.0 and landmarks.max() > 0  # black canvas, ink
    assert ep.target_clip == ep.driver_clip  # self mode: driver from the targets' clip


def test_driver_is_not_a_target_and_is_ground_truth(dataset_root: Path) -> None:
    ds = EpisodeDataset(dataset_root, "train", EpisodeConfig(k_max=8, flip=False))
    for seed in range(5):
        ep = ds[(1, 8, seed)]
        diffs = (ep.target_images - ep.driver_image[None]).abs().flatten(1).amax(1)
        assert (diffs > 0).all(), "the driver frame must differ from every target frame"


def test_deterministic_under_seed(dataset_root: Path) -> None:
    a = EpisodeDataset(dataset_root, "train", EpisodeConfig(seed=3))
    b = EpisodeDataset(dataset_root, "train", EpisodeConfig(seed=3))
    c = EpisodeDataset(dataset_root, "train", EpisodeConfig(seed=4))
    same = [torch.equal(x, y) for x, y in zip(a[(2, 4, 11)][:6], b[(2, 4, 11)][:6])]
    assert all(same)
    assert not torch.equal(a[(2, 4, 11)].target_landmarks, c[(2, 4, 11)].target_landmarks)


def test_flip_is_consistent_over_the_episode(dataset_root: Path) -> None:
    plain = EpisodeDataset(dataset_root, "train", EpisodeConfig(flip=False))
    flipping = EpisodeDataset(dataset_root, "train", EpisodeConfig(flip=True))
    flipped_any = False
    for seed in range(8):
        p, f = plain[(0, 2, seed)], flipping[(0, 2, seed)]
        if torch.equal(p.target_images, f.target_images):
            assert torch.equal(p.driver_image, f.driver_image)
            continue
        flipped_any = True
        # every image of the episode is mirrored, and landmarks with left/right relabelled
        assert torch.equal(f.target_images, p.target_images.flip(-1))
        assert torch.equal(f.driver_image, p.driver_image.flip(-1))
        assert torch.allclose(f.driver_landmarks, torch.from_numpy(flip_landmarks(p.driver_landmarks.numpy(), SIZE)))
        # rendered landmark images mirror too (anti-aliasing may differ by a grey level)
        assert (f.driver_landmark_image - p.driver_landmark_image.flip(-1)).abs().mean() < 0.02
    assert flipped_any


def test_colour_jitter_is_one_affine_transform_per_episode(dataset_root: Path) -> None:
    plain = EpisodeDataset(dataset_root, "train", EpisodeConfig(flip=False))
    jittered = EpisodeDataset(dataset_root, "train", EpisodeConfig(flip=False, colour_jitter=0.3))
    p, j = plain[(0, 3, 5)], jittered[(0, 3, 5)]
    assert torch.equal(p.target_landmarks, j.target_landmarks) and torch.equal(p.driver_landmark_image,
                                                                               j.driver_landmark_image)
    assert (p.target_images - j.target_images).abs().mean() > 0.02  # the colours did change
    # one affine colour map explains every pixel of all targets and the driver (up to rounding and clipping)
    def pixels(e):  # (K·S·S + S·S, 3)
        return torch.cat([e.target_images.permute(0, 2, 3, 1).reshape(-1, 3), e.driver_image.permute(1, 2, 0).reshape(-1, 3)])

    before, after = pixels(p), pixels(j)
    inside = ((after > -0.98) & (after < 0.98)).all(dim=1)
    a = torch.cat([before[inside], torch.ones(int(inside.sum()), 1)], dim=1).double()  # (N, 4)
    fit = torch.linalg.lstsq(a, after[inside].double()).solution  # (4, 3)
    assert (a @ fit - after[inside]).abs().max() < 0.02  # 2.5 grey levels: uint8 rounding only
    # the same pixel gets the same colour wherever it is; strength 0 is the identity
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    first, second = jitter_colours(rng, 0.3, image, image.copy())
    assert np.array_equal(first, second)
    assert np.array_equal(jitter_colours(rng, 0.0, image)[0], image)


def test_flip_landmarks_is_an_involution() -> None:
    pts = np.random.default_rng(0).uniform(0, SIZE - 1, (68, 3)).astype(np.float32)
    assert np.allclose(flip_landmarks(flip_landmarks(pts, SIZE), SIZE), pts)
    assert (IBUG68_MIRROR[IBUG68_MIRROR] == np.arange(68)).all()


def test_batch_sampler_one_k_per_batch_any_k(dataset_root: Path) -> None:
    config = EpisodeConfig(k_min=1, k_max=8, seed=0)
    ds = EpisodeDataset(dataset_root, "train", config)
    sampler = EpisodeBatchSampler(len(ds), 2, config)
    seen = set()
    for epoch in range(12):
        sampler.set_epoch(epoch)
        for batch in DataLoader(ds, batch_sampler=sampler):
            k = batch.target_images.shape[1]
            assert batch.target_images.shape == (len(batch.target_clip), k, 3, SIZE, SIZE)
            seen.add(k)
    assert len(seen) >= 5 and seen <= set(range(1, 9))


def test_batch_sampler_ranks_partition_the_epoch() -> None:
    config = EpisodeConfig()
    ranks = [EpisodeBatchSampler(10, 2, config, num_replicas=2, rank=r) for r in range(2)]
    keys = [[key for batch in s for key in batch] for s in ranks]
    assert len(keys[0]) == len(keys[1]) == 5
    assert sorted(k[0] for k in keys[0] + keys[1]) == list(range(10))
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]]
    assert [b[0][1] for b in ranks[0]] == [b[0][1] for b in ranks[1]]  # same K on every rank


def test_cross_identity_mode(dataset_root: Path) -> None:
    ds = EpisodeDataset(dataset_root, "train", EpisodeConfig(cross_identity=True))
    for i in range(len(ds)):
        ep = ds[i]
        assert ep.target_clip != ep.driver_clip
        assert ep.target_images.shape[0] == 8


def test_clips_too_short_or_missing_are_reported(dataset_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no clip in split 'test'"):
        EpisodeDataset(dataset_root, "test", EpisodeConfig())  # the fixture holds out no identity
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.mp4").symlink_to(ASSETS / "grid_brbk7n.mp4")
    preprocess(src, tmp_path / "ds", PreprocessConfig(size=SIZE, max_frames=4), workers=1, progress=False)
    assert len(EpisodeDataset(tmp_path / "ds", "train", EpisodeConfig(k_max=3))) == 1
    with pytest.raises(InputError, match="5 frames an episode needs"):
        EpisodeDataset(tmp_path / "ds", "train", EpisodeConfig(k_max=4))
    with pytest.raises(InputError, match="no dataset manifest"):
        EpisodeDataset(tmp_path / "nothing", "train")


def test_hard_drivers_draw_closed_eyes_and_wide_mouths_and_off_changes_nothing(dataset_root: Path) -> None:
    uniform = EpisodeDataset(dataset_root, "train", EpisodeConfig(k_max=4, flip=False))
    hard = EpisodeDataset(dataset_root, "train", EpisodeConfig(k_max=4, flip=False, hard_drivers=1.0))
    clips = [i for i in range(len(hard)) if len(hard._hard_frames(hard.clips[i].info.clip_id))]
    assert clips and len(clips) < len(hard)  # the bundled clips: some with a wide mouth or a blink, some without
    for i in range(len(hard)):
        frames, ibug68 = hard._hard_frames(hard.clips[i].info.clip_id), hard._reader(hard.clips[i].info.clip_id).ibug68
        for seed in range(4):
            ep = hard[(i, 4, seed)]
            driver = [j for j in range(len(ibug68)) if np.array_equal(ibug68[j], ep.driver_landmarks.numpy())]
            targets = [j for j in range(len(ibug68)) for t in ep.target_landmarks.numpy() if np.array_equal(ibug68[j], t)]
            assert len(driver) == 1 and driver[0] not in targets and len(set(targets)) == 4
            if len(frames):
                assert driver[0] in frames
            else:  # a clip without one: drawn as without the option, the same episode
                assert torch.equal(ep.driver_image, uniform[(i, 4, seed)].driver_image)
