"""`train --init EXPORT`: a new run's generator and EMA start from a generator export, also one made
at another image size; an export of another model config, or a file that is no export, is a
one-line error that leaves no run folder; a run folder that resumes ignores --init (saying so) and
stays exact; a narrower refiner learns the export's images (distill_weight). Validation scores a
generator of another size as the neural renderer uses it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from marionette.cli import main
from marionette.data.config import EpisodeConfig, PreprocessConfig
from marionette.data.episodes import EpisodeDataset
from marionette.errors import InputError
from marionette.inference.export import export_generator, load_generator
from marionette.model.config import model_config
from marionette.model.generator import Generator
from marionette.training.checkpoint import list_checkpoints
from marionette.training.config import run_config
from marionette.training.loop import load_init, train
from marionette.training.validation import Validator

BASE = ["loss.perceptual_weights=random", "batch_size=2", "episodes.k_max=2", "log_every=1", "val_every=0",
        "checkpoint_every=2", "workers=0"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_generator(path).generator.state_dict()


def export(run: Path) -> Path:
    return run / "export" / "generator.safetensors"


@pytest.fixture(scope="module")
def source(train_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export of a 2-step run, stored in half precision as a shipped one would be."""
    run = tmp_path_factory.mktemp("init") / "source"
    train(train_dataset, run, run_config("tiny", [*BASE, "steps=2", "lr_g=1e-2"]), progress=False)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(export(run)), framework="pt") as f:
        half = {k: f.get_tensor(k).half() for k in f.keys()}
        metadata = f.metadata()
    save_file(half, str(run / "half.safetensors"), metadata=metadata)
    return run / "half.safetensors"


def test_a_new_run_starts_from_the_export(train_dataset: Path, source: Path, tmp_path: Path) -> None:
    # a learning rate too small to move anything: after one step the EMA export is the initial weights
    config = run_config("tiny", [*BASE, "steps=1", "lr_g=1e-9"])
    train(train_dataset, tmp_path / "init", config, progress=False, init=source)
    train(train_dataset, tmp_path / "fresh", config, progress=False)
    start, init, fresh = weights(source), weights(export(tmp_path / "init")), weights(export(tmp_path / "fresh"))
    assert all(torch.allclose(init[k], start[k], atol=1e-5) for k in start)
    assert not all(torch.allclose(fresh[k], start[k], atol=1e-3) for k in start)
    saved = json.loads((tmp_path / "init" / "config.json").read_text())
    assert saved["init"] == {"export": str(source), "step": 2}
    assert f"init={source} (its step 2)" in (tmp_path / "init" / "revisions.txt").read_text()


def test_an_export_of_another_model_or_no_export_is_a_one_line_error(train_dataset: Path, source: Path,
                                                                      tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model config differs.*channels: 8 in the export, 16 in the run") as error:
        train(train_dataset, tmp_path / "wider", run_config("tiny", [*BASE, "steps=1", "model.channels=16"]),
              progress=False, init=source)
    assert "\n" not in str(error.value) and not (tmp_path / "wider").exists()
    with pytest.raises(InputError, match=r"model config differs.*warp_guided"):
        train(train_dataset, tmp_path / "warp", run_config("tiny", [*BASE, "steps=1", "model.warp_guided=true"]),
              progress=False, init=source)
    checkpoint = list_checkpoints(source.parent)[-1] / "weights.safetensors"
    with pytest.raises(InputError, match="not a generator export"):
        train(train_dataset, tmp_path / "ckpt", run_config("tiny", [*BASE, "steps=1"]), progress=False, init=checkpoint)
    assert main(["train", "--config", "tiny", "--data", str(train_dataset), "--run", str(tmp_path / "cli"),
                 "--init", str(tmp_path / "missing.safetensors"), "--quiet"]) == 2
    assert not (tmp_path / "cli").exists()


def test_a_run_may_widen_or_narrow_the_refiner_of_its_export(tmp_path: Path) -> None:
    refine = ["model.warp_guided=true", "model.correction=refine", "model.refine_channels=4"]
    generator = Generator(run_config("tiny", refine).model)
    export_generator(tmp_path / "g.safetensors", generator, generator.config, PreprocessConfig(), step=3)
    for width in (6, 2):  # the run grows or shrinks it (test_warp_guided)
        run = run_config("tiny", [*refine, f"model.refine_channels={width}"])
        assert load_init(tmp_path / "g.safetensors", run).model.refine_channels == 4
    with pytest.raises(InputError, match="correction: refine in the export, blend in the run"):
        load_init(tmp_path / "g.safetensors", run_config("tiny", [*refine, "model.correction=blend"]))
    # the discriminator starts fresh, so its sizes are the run's own (a mouth D added to a run from the export)
    mouth = run_config("tiny", [*refine, "model.mouth_disc_channels=8", "model.disc_channels=4",
                                "loss.mouth_adversarial_weight=1"])
    assert load_init(tmp_path / "g.safetensors", mouth).model.mouth_disc_channels == 0


@pytest.mark.slow
def test_a_narrower_refiner_learns_to_draw_what_its_export_draws(train_dataset: Path, tmp_path: Path) -> None:
    # loss.distill_weight alone (ours): the export is a frozen teacher, the run's refiner half as wide
    refine = [*BASE, "model.warp_guided=true", "model.correction=refine", "loss.adversarial_weight=0",
              "loss.feature_matching_weight=0", "loss.perceptual_weight=0", "loss.distill_weight=1", "lr_g=3e-3"]
    torch.manual_seed(0)
    teacher = Generator(run_config("tiny", [*refine, "model.refine_channels=4"]).model).eval()
    with torch.no_grad():  # a correction of its own, every refiner weight moved
        for p in teacher.decoder.correction.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    export_generator(tmp_path / "teacher.safetensors", teacher, teacher.config, PreprocessConfig(size=64), step=5)
    student = run_config("tiny", [*refine, "model.refine_channels=2", "steps=48"])
    with pytest.raises(InputError, match="distill_weight > 0 needs --init") as error:
        train(train_dataset, tmp_path / "alone", student, progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "alone").exists()
    train(train_dataset, tmp_path / "run", student, progress=False, init=tmp_path / "teacher.safetensors")

    episodes = EpisodeDataset(train_dataset, "train", EpisodeConfig(k_min=2, k_max=2, flip=False, warp=True))
    batch = default_collate([episodes[i] for i in range(len(episodes))])
    inputs = (batch.target_images, batch.target_landmark_images, batch.driver_landmark_image, batch.warp_image)
    start = Generator(student.model).eval()
    start.start_from(teacher)  # the run's first weights: the teacher's most read refiner channels
    with torch.no_grad():
        drawn = teacher(*inputs).image
        before, after = ((g(*inputs).image - drawn).abs().mean() for g in (start, load_generator(export(tmp_path / "run")).generator))
    assert after < 0.9 * before, (after, before)  # 0.107 -> 0.088 here


def test_a_resumed_run_ignores_init_and_stays_exact(train_dataset: Path, source: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    config = lambda steps: run_config("tiny", [*BASE, f"steps={steps}"])  # noqa: E731
    train(train_dataset, tmp_path / "whole", config(4), progress=False, init=source)
    train(train_dataset, tmp_path / "parts", config(2), progress=False, init=source)
    with caplog.at_level(logging.WARNING):  # resumed with another export given: it is not used
        train(train_dataset, tmp_path / "parts", config(4), progress=False, init=export(tmp_path / "whole"))
    assert "--init" in caplog.text and "is ignored" in caplog.text
    whole, parts = weights(export(tmp_path / "whole")), weights(export(tmp_path / "parts"))
    assert all(torch.allclose(whole[k], parts[k], atol=1e-6) for k in whole)
    assert json.loads((tmp_path / "parts" / "config.json").read_text())["init"]["export"] == str(source)


@pytest.fixture(scope="module")
def dataset_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GRID clips as 128 px crops, 4 frames each, one identity held out as val."""
    from marionette.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("train128")
    config = PreprocessConfig(size=128, max_frames=4, split="hash", val_fraction=0.25, test_fraction=0.0)
    preprocess(Path(__file__).resolve().parents[1] / "assets" / "videos", root, config, workers=1, progress=False)
    return root


def test_a_run_at_another_size_starts_from_the_export(dataset_128: Path, source: Path, tmp_path: Path) -> None:
    config = run_config("tiny", [*BASE, "steps=1", "lr_g=1e-9", "model.image_size=128"])
    train(dataset_128, tmp_path / "128", config, progress=False, init=source)
    start, init = weights(source), weights(export(tmp_path / "128"))
    assert load_generator(export(tmp_path / "128")).model.image_size == 128
    assert all(torch.allclose(init[k], start[k], atol=1e-5) for k in start)


def test_validation_scores_a_generator_of_another_size_as_the_renderer_uses_it(dataset_128: Path) -> None:
    # a 64-px warp-guided generator is exactly its input warp at initialisation: on 128-px episodes its
    # correction (zero) resized back onto the full-size warp must leave the warp's scores as they are
    generator = Generator(model_config("tiny", ["warp_guided=true", "correction=refine"])).eval()
    validator = Validator(dataset_128, "val", 4, 2, 0, 4)
    scores = validator(generator, torch.device("cpu"))
    assert scores["val/psnr"] == pytest.approx(scores["warp/psnr"], abs=1e-9)
    assert scores["val/psnr_mouth"] == pytest.approx(scores["warp/psnr_mouth"], abs=1e-9)
    # the mouth box holds fewer pixels than the frame: its PSNR differs from the whole frame's
    assert abs(scores["warp/psnr_mouth"] - scores["warp/psnr"]) > 0.1
    with torch.no_grad():  # a correction that is not zero moves the scores
        generator.decoder.correction.head.bias.add_(0.1)
    moved = validator(generator, torch.device("cpu"))
    assert moved["val/psnr"] < scores["warp/psnr"] - 0.1 and moved["val/psnr_mouth"] < scores["warp/psnr_mouth"] - 0.1


def test_validation_measures_what_the_generator_draws_from_its_targets(dataset_128: Path) -> None:
    # a warp-guided generator whose correction ignores the targets (zero at initialisation, then a
    # constant colour shift) gains nothing from their pixels; one that paints from them (the paper's) does
    guided = Generator(model_config("tiny", ["warp_guided=true", "correction=refine", "image_size=128"])).eval()
    validator = Validator(dataset_128, "val", 4, 2, 0, 4, target_use=True)
    assert validator(guided, torch.device("cpu"))["val/psnr_from_targets"] == 0.0
    with torch.no_grad():
        guided.decoder.correction.head.bias.add_(0.1)
    assert validator(guided, torch.device("cpu"))["val/psnr_from_targets"] == 0.0
    torch.manual_seed(0)
    painter = Generator(model_config("tiny", ["image_size=128"])).eval()
    assert abs(validator(painter, torch.device("cpu"))["val/psnr_from_targets"]) > 0.01
    assert "val/psnr_from_targets" not in Validator(dataset_128, "val", 4, 2, 0, 4)(painter, torch.device("cpu"))


def test_the_discriminator_warms_up_alone_then_the_generator_learns(train_dataset: Path, source: Path,
                                                                    tmp_path: Path) -> None:
    """d_warmup_steps (ours): a run from an export with the mouth's patch D; during the warm-up D's
    losses are logged and G keeps the export's weights; after it G moves."""
    mouth = ["model.mouth_disc_channels=4", "loss.mouth_adversarial_weight=1", "d_warmup_steps=2", "lr_g=1e-2"]
    run = tmp_path / "warm"
    train(train_dataset, run, run_config("tiny", [*BASE, *mouth, "steps=2"]), progress=False, init=source)
    start, warmed = weights(source), weights(export(run))
    assert all(torch.allclose(warmed[k], start[k], atol=1e-5) for k in start)
    train(train_dataset, run, run_config("tiny", [*BASE, *mouth, "steps=3"]), progress=False)
    lines = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [("D/mouth_fake" in line, "G/total" in line) for line in lines] == [(True, False), (True, False),
                                                                               (True, True)]
    moved = weights(export(run))
    assert not all(torch.allclose(moved[k], start[k], atol=1e-5) for k in start)
