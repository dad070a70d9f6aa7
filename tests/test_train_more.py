"""tools/train_more.sh on CPU with the tiny preset and a budget of seconds: with nothing shipped the
bar is the warp renderer; a sitting better than the shipped generator replaces it (fp16, the
sitting recorded in its header) and renders its model card; a sitting that ties it (a learning
rate too small to move anything) replaces nothing, and warm-starts from the shipped weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from marionette.data.config import PreprocessConfig
from marionette.errors import InputError
from marionette.inference.export import export_generator, load_generator
from marionette.model.config import model_config
from marionette.model.generator import Generator
from marionette.training.promote import average, decide, sittings

REPO = Path(__file__).resolve().parents[1]
# the tiny warp-guided model; lr_g=1e-9: a sitting that moves nothing, so the verdicts do not depend on luck
SETTINGS = ["loss.perceptual_weights=random", "batch_size=2", "episodes.k_max=2", "lr_g=1e-9", "val_episodes=2",
            "val_every=100000", "sample_every=100000", "checkpoint_every=100000"]


def train_more(tmp_path: Path, data: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "DATA": str(data), "PRESET": "tiny", "MINUTES": "0.03",
           "ASSET": str(tmp_path / "assets" / "generator.safetensors"), "OUT": str(tmp_path / "runs"),
           "VAL_KS": "2", "VAL_EPISODES": "4", "LOADERS": "0", "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run([str(REPO / "tools" / "train_more.sh"), *SETTINGS], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_more_replaces_the_shipped_generator_only_when_better(train_dataset: Path, tmp_path: Path) -> None:
    asset, card = tmp_path / "assets" / "generator.safetensors", tmp_path / "assets" / "generator.md"
    # nothing shipped: the new weights (the warp, give or take nothing) must beat the warp renderer: they tie
    done = train_more(tmp_path, train_dataset)
    assert "kept" in done.stdout and "warp renderer" in done.stdout and "tie or worse" in done.stdout
    assert not asset.exists() and not card.exists()

    # a shipped generator worse than the warp (a uniform colour cast); a sitting from scratch beats it
    torch.manual_seed(0)
    config = model_config("tiny", ["warp_guided=true"])
    bad = Generator(config)
    with torch.no_grad():
        bad.decoder.correction.head.bias[:3] = 0.5
    export_generator(asset, bad, config, PreprocessConfig(size=64), step=7)
    done = train_more(tmp_path, train_dataset, INIT="scratch")
    assert "replaced" in done.stdout, done.stdout
    with safe_open(str(asset), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    record = sittings(asset)
    assert [s["from"] for s in record] == ["unknown", "scratch"]  # the file shipped before had no record
    assert record[-1]["val"]["psnr"] > record[-1]["before"]["psnr"] and record[-1]["minutes"] > 0
    exported = load_generator(asset)
    assert exported.model == config and exported.step == record[-1]["steps"] > 0
    text = card.read_text()
    assert "2 sitting(s)" in text and "research use only" in text and f"{record[-1]['val']['psnr']:.4f}" in text
    assert record[-1]["settings"] == SETTINGS and "`lr_g=1e-9`" in text  # what the sitting was given

    # a sitting warm-started from it that moves nothing ties it: both files stay as they were
    before = asset.read_bytes(), card.read_text()
    done = train_more(tmp_path, train_dataset)
    assert "kept" in done.stdout and "shipped export" in done.stdout, done.stdout
    assert (asset.read_bytes(), card.read_text()) == before
    run = sorted((tmp_path / "runs").iterdir())[-1]
    assert json.loads((run / "config.json").read_text())["init"]["export"] == str(asset)
    assert json.loads((run / "sitting.json").read_text())["replaced"] is False


@pytest.mark.parametrize("candidate, replaced", [((30.02, 0.0299), True), ((30.005, 0.0299), False),
                                                 ((30.0, 0.0299), False), ((30.5, 0.0300), False),
                                                 ((29.0, 0.0200), False)])
def test_decide_needs_a_psnr_gain_and_a_lower_l1(candidate: tuple[float, float], replaced: bool) -> None:
    psnr, l1 = candidate
    assert decide({"psnr": psnr, "l1": l1}, {"psnr": 30.0, "l1": 0.0300}, min_gain_db=0.01)[0] is replaced


def test_decide_refuses_a_lower_mouth_psnr_at_any_k() -> None:
    shipped = {"psnr": 30.0, "l1": 0.0300, "psnr_mouth_k1": 25.0, "psnr_mouth_k8": 28.0}
    better = {"psnr": 30.05, "l1": 0.0299, "psnr_mouth_k1": 25.2, "psnr_mouth_k8": 28.0}
    assert decide(better, shipped, min_gain_db=0.01)[0] is True
    replaced, why = decide({**better, "psnr_mouth_k8": 27.9}, shipped, min_gain_db=0.01)
    assert replaced is False and "mouth PSNR is lower (K = 8: 27.9000 vs 28.0000 dB)" in why


def test_decide_refuses_a_lower_psnr_at_any_k() -> None:
    """A sitting that trades one K for another (the mean PSNR up, K = 8 down) replaces nothing."""
    shipped = {"psnr": 30.0, "l1": 0.0300, "psnr_k1": 28.0, "psnr_k8": 32.0}
    replaced, why = decide({"psnr": 30.03, "l1": 0.0299, "psnr_k1": 28.08, "psnr_k8": 31.98}, shipped, min_gain_db=0.01)
    assert replaced is False and "the PSNR is lower (K = 8: 31.9800 vs 32.0000 dB)" in why


def test_the_average_of_two_exports_is_their_mean_in_the_sittings_header(tmp_path: Path) -> None:
    config = model_config("tiny", ["warp_guided=true"])
    torch.manual_seed(0)
    start, sitting = Generator(config), Generator(config)
    export_generator(tmp_path / "start.safetensors", start, config, PreprocessConfig(size=64), step=3)
    export_generator(tmp_path / "sitting.safetensors", sitting, config, PreprocessConfig(size=64), step=9)
    average(tmp_path / "start.safetensors", tmp_path / "sitting.safetensors", tmp_path / "mean.safetensors", 0.25)
    mean = load_generator(tmp_path / "mean.safetensors")
    assert mean.step == 9 and mean.model == config
    a, b = start.state_dict(), sitting.state_dict()
    for key, value in mean.generator.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[key] + 0.25 * b[key], atol=1e-6), key
    # a model of other widths (grown in the sitting) has no average with the one it started from
    for name, widths in (("refiner", ["refine_channels=8", "refine_channels=12"]), ("model", ["channels=8", "channels=16"])):
        for i, width in enumerate(widths):
            grown = model_config("tiny", ["warp_guided=true", "correction=refine", width])
            export_generator(tmp_path / f"{name}{i}.safetensors", Generator(grown), grown, PreprocessConfig(size=64), step=1)
        with pytest.raises(InputError, match="not averaged"):
            average(tmp_path / f"{name}0.safetensors", tmp_path / f"{name}1.safetensors", tmp_path / "no.safetensors", 0.5)
    assert not (tmp_path / "no.safetensors").exists()
