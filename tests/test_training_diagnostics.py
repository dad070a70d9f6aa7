"""The training diagnostics in stats.jsonl: gradient norms per part of G (the warp-guided
correction's own parts apart: residual and mask, or the blend's painting head and mask) and of D,
each weighted term's gradient at the output (the blend's painted term at its painting), D's
accuracy and mean scores on real and generated frames; finite, on log steps only, and 0 for a
part that gets no gradient."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from marionette.config import override
from marionette.model.config import LossConfig, model_config
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator
from marionette.model.losses import DiscriminatorLosses, build_objective
from marionette.training.config import run_config
from marionette.training.diagnostics import (
    discriminator_scores,
    generator_gradient_norms,
    output_gradient_norms,
)
from marionette.training.loop import train

PARTS = ("driver_encoder", "target_encoder", "blender", "decoder")
CORRECTION = {"residual": ("correction_residual", "correction_mask"), "blend": ("correction_painted", "correction_mask")}
TERMS = ("adversarial", "feature_matching", "perceptual", "face_perceptual", "pixel", "painted")


@pytest.fixture(scope="module", params=list(CORRECTION))
def warp_guided_stats(request: pytest.FixtureRequest, train_dataset: Path, tmp_path_factory: pytest.TempPathFactory
                      ) -> tuple[str, list[dict]]:
    """(the correction, the stats lines of 4 steps logged every 2) of a tiny warp-guided run."""
    run = tmp_path_factory.mktemp("diagnostics") / "run"
    config = run_config("tiny", ["model.warp_guided=true", f"model.correction={request.param}",
                                 "loss.perceptual_weights=random", "loss.pixel_weight=10", "steps=4", "batch_size=2",
                                 "episodes.k_max=2", "log_every=2", "val_every=0", "checkpoint_every=100", "workers=0"])
    train(train_dataset, run, config, progress=False)
    return request.param, [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_diagnostics_are_logged_on_log_steps_and_finite(warp_guided_stats: tuple[str, list[dict]]) -> None:
    correction, lines = warp_guided_stats
    assert [s["step"] for s in lines] == [2, 4]  # log steps only
    for stats in lines:
        keys = ({f"grad/{p}" for p in (*PARTS, *CORRECTION[correction], "D")} | {f"grad_output/{t}" for t in TERMS}
                | {"D/real_acc", "D/fake_acc", "D/real_logit", "D/fake_logit", "correction/change", "correction/mask"})
        assert keys <= set(stats), keys - set(stats)
        assert not {key for key in stats if key.startswith("grad/correction_")} - keys  # no other correction's parts
        assert all(math.isfinite(stats[k]) for k in keys)
        for side, right in (("real", 1), ("fake", -1)):  # real frames score above 0, generated ones below
            accuracy, score = stats[f"D/{side}_acc"], right * stats[f"D/{side}_logit"]
            # a share of the batch's 2 frames; both right: the mean score is right too; both wrong: it is wrong
            assert accuracy in (0, 0.5, 1) and (accuracy < 1 or score > 0) and (accuracy > 0 or score <= 0), stats
        assert stats["correction/change"] > 0
        if correction == "residual":  # |output - warp| = mask · |residual|, with |residual| <= 2
            assert stats["correction/change"] <= 2 * stats["correction/mask"] + 1e-6
        # past the first update every part learns; D too; each weighted term pulls on what it is computed on
        assert all(stats[f"grad/{p}"] > 0 for p in (*PARTS, *CORRECTION[correction], "D")), stats
        assert all(stats[f"grad_output/{t}"] > 0 for t in ("adversarial", "feature_matching", "perceptual", "pixel"))
        assert stats["grad_output/face_perceptual"] == 0  # the face term is off
        assert (stats["grad_output/painted"] > 0) == (correction == "blend") == (stats["G/painted"] > 0)


@pytest.mark.parametrize("correction", list(CORRECTION))
def test_parts_cut_off_from_the_gradient_read_zero(correction: str, train_dataset: Path, tmp_path: Path) -> None:
    """At step 1 the output is exactly the warp. Residual: its zero residual passes nothing upstream,
    only its own filters learn. Blend: the painting's own term reaches every part, and the mask
    learns through painting - warp."""
    config = run_config("tiny", ["model.warp_guided=true", f"model.correction={correction}",
                                 "loss.perceptual_weights=random", "steps=1", "batch_size=2", "episodes.k_max=2",
                                 "log_every=1", "val_every=0", "workers=0"])
    train(train_dataset, tmp_path / "run", config, progress=False)
    first = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[0])
    assert first["correction/change"] == 0  # the output was exactly the warp
    if correction == "residual":
        assert first["grad/correction_residual"] > 0
        assert all(first[f"grad/{p}"] == 0 for p in (*PARTS, "correction_mask")), first
    else:
        assert all(first[f"grad/{p}"] > 0 for p in (*PARTS, *CORRECTION["blend"])), first


def test_a_frozen_part_reads_zero_and_the_others_do_not() -> None:
    torch.manual_seed(0)
    generator = Generator(model_config("tiny"))
    generator.blender.requires_grad_(False)
    images = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    generator(images, images, images[:, 0]).image.square().mean().backward()
    norms = generator_gradient_norms(generator)
    assert set(norms) == {f"grad/{p}" for p in PARTS}  # no correction in the faithful model
    assert norms["grad/blender"] == 0 and all(norms[f"grad/{p}"] > 0 for p in PARTS if p != "blender")
    expected = torch.cat([p.grad.flatten() for p in generator.driver_encoder.parameters()]).norm()
    assert norms["grad/driver_encoder"] == pytest.approx(float(expected), rel=1e-5)


def test_output_gradient_of_a_term_is_its_weighted_derivative() -> None:
    torch.manual_seed(0)
    config = model_config("tiny")
    objective = build_objective(override(LossConfig(), ["perceptual_weights=random", "pixel_weight=10",
                                                        "adversarial_weight=0"]), Discriminator(config))
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    fake = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    losses = objective.generator_step(fake, real, real)
    norms = output_gradient_norms(losses, objective.config, fake)
    # d(10 · mean|fake - real|)/d fake = 10 · sign / N everywhere: norm 10 / sqrt(N)
    assert norms["grad_output/pixel"] == pytest.approx(10 / math.sqrt(fake.numel()), rel=1e-5)
    assert norms["grad_output/adversarial"] == 0 and norms["grad_output/perceptual"] > 0
    losses.total.backward()  # the graph was kept for the step's own backward


def test_discriminator_accuracy_and_mean_scores() -> None:
    zero = torch.zeros(())
    losses = DiscriminatorLosses(zero, zero, zero, real_score=torch.tensor([1.0, -1.0, 2.0, 3.0]),
                                 fake_score=torch.tensor([0.5, -0.5, -2.0, 1.0]))
    assert discriminator_scores(losses) == {"D/real_acc": 0.75, "D/fake_acc": 0.5, "D/real_logit": 1.25,
                                            "D/fake_logit": -0.25}
