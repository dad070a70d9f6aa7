"""Training config: presets list only differences, overrides route to train / model. / loss., unknown
keys are errors, `--dry-run` prints the resolved config."""

from __future__ import annotations

import json

import pytest

from marionette.cli import main
from marionette.training.config import RunConfig, TrainConfig, run_config


def test_presets_and_overrides_route_to_their_section() -> None:
    config = run_config("tiny", ["steps=7", "model.channels=16", "loss.perceptual_weights=random", "betas=0,0.9"])
    assert config.train.steps == 7 and config.train.betas == (0.0, 0.9)
    assert config.model.channels == 16 and config.model.image_size == 64
    assert config.loss.perceptual_weights == "random"
    assert run_config("paper").train == TrainConfig()
    assert (TrainConfig.lr_g, TrainConfig.lr_d) == (5e-5, 2e-4)  # NeuralHead's TTUR
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


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
