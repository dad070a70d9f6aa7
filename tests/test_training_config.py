"""Training config: presets list only differences, overrides route to train / model. / loss., unknown
keys are errors, `--dry-run` prints the resolved config."""

from __future__ import annotations

import json

import pytest

from marionette.cli import main
from marionette.config import SettingError
from marionette.model.config import LossConfig
from marionette.model.discriminator import Discriminator
from marionette.model.losses import build_objective
from marionette.training.config import EPISODE_PRESETS, LOSS_PRESETS, TRAIN_PRESETS, RunConfig, TrainConfig, run_config


def test_presets_and_overrides_route_to_their_section() -> None:
    config = run_config("tiny", ["steps=7", "model.channels=16", "loss.perceptual_weights=random", "betas=0,0.9"])
    assert config.train.steps == 7 and config.train.betas == (0.0, 0.9)
    assert config.model.channels == 16 and config.model.image_size == 64
    assert config.loss.perceptual_weights == "random"
    assert run_config("paper").train == TrainConfig()
    assert (TrainConfig.lr_g, TrainConfig.lr_d) == (5e-5, 2e-4)  # NeuralHead's TTUR
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_every_preset_resolves_and_warp_cpu_is_the_warp_refiner_without_a_discriminator() -> None:
    for presets, default in ((TRAIN_PRESETS, TrainConfig()), (LOSS_PRESETS, LossConfig())):
        for name, changes in presets.items():  # a preset lists only what it changes
            assert all(getattr(default, key) != value for key, value in changes.items()), name
    assert set(TRAIN_PRESETS) == set(LOSS_PRESETS) == set(EPISODE_PRESETS)
    for name in TRAIN_PRESETS:
        assert RunConfig.from_dict(json.loads(json.dumps(run_config(name).to_dict()))) == run_config(name)
    config = run_config("warp-cpu")
    assert config.model.warp_guided and config.model.correction == "refine" and config.model.image_size == 128
    assert config.loss.region_weight > 0 and config.episodes.k_max == 4
    assert not build_objective(config.loss, Discriminator(config.model)).uses_discriminator
    assert build_objective(run_config("cpu").loss, Discriminator(run_config("cpu").model)).uses_discriminator


@pytest.mark.parametrize("bad", ["nope=1", "model.nope=1", "optim.lr=1", "episodes.k_max=9", "steps", "decay_steps=-1"])
def test_bad_overrides_are_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        run_config("cpu", [bad])


def test_dry_run_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "cpu", "--data", "none", "--run", "none", "--dry-run", "--set", "lr_g=1e-4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["lr_g"] == 1e-4 and printed["model"]["image_size"] == 128
    assert printed["episodes"]["k_max"] == 8
    assert main(["train", "--config", "cpu", "--data", "none", "--run", "none", "--set", "bogus=1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # a one-line error
    with pytest.raises(SystemExit):  # the old spelling, KEY=VALUE words, is a clear usage error
        main(["train", "--config", "cpu", "--data", "none", "--run", "none", "steps=3"])
    assert "--set KEY=VALUE" in capsys.readouterr().err


def test_the_mouth_adversarial_term_needs_the_mouth_discriminator() -> None:
    with pytest.raises(SettingError, match="model.mouth_disc_channels"):
        run_config("warp-cpu", ["loss.mouth_adversarial_weight=0.5"])
    config = run_config("warp-cpu", ["loss.mouth_adversarial_weight=0.5", "model.mouth_disc_channels=16"])
    objective = build_objective(config.loss, Discriminator(config.model))
    assert objective.uses_discriminator and not objective.uses_image_discriminator
