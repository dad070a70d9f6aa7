"""`marionette bench train` on the tiny preset in seconds: one row per configuration with every
phase, the G losses split by forward hooks, episodes/s and the dominant phase; bf16 rows only where
the CPU has native bf16 (else the report says so); the synthetic clips load as episodes; a dataset
of another size is a one-line error. Timings are printed, never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from marionette.bench_train import COLUMNS, BenchTrainConfig, report, synthetic_dataset
from marionette.cli import main
from marionette.config import SettingError, override
from marionette.data.config import EpisodeConfig
from marionette.data.episodes import EpisodeDataset
from marionette.devices import native_bf16
from marionette.errors import InputError


def rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert len(lines[1].strip("|").split("|")) == len(head)  # the separator has a cell per column
    return [dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def test_bench_train_times_every_phase_of_each_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train", "--set", "presets=tiny", "--set", "sizes=64", "--set", "batches=1",
                 "--set", "ks=1,2", "--set", "rounds=1", "--set", "threads=1"]) == 0
    text = capsys.readouterr().out
    table = rows(text)
    bf16, why = native_bf16(torch.device("cpu"))
    assert [(r["K"], r["precision"]) for r in table] == [("1", "fp32"), ("1", "bf16"), ("2", "fp32"), ("2", "bf16")][
        :: 1 if bf16 else 2]
    assert why in text and ("not measured" in text) != bf16
    assert "synthetic clips" in text and "Load average" in text
    for row in table:
        phases = {c: float(row[f"{c} ms"]) for c in COLUMNS}
        # one round: the phases are the whole step (each cell rounded to 1 ms)
        assert abs(sum(phases.values()) - float(row["step ms"])) <= (len(phases) + 1) / 2, row
        assert phases["other G losses"] >= 0  # what G's losses took beyond the parts timed inside them
        assert all(phases[c] > 0 for c in ("loader", "G forward", "D step", "D on output (adversarial + FM)",
                                           "D on truth (FM)", "VGG (perceptual)", "G backward"))
        seconds = float(row["step ms"]) / 1000
        assert float(row["episodes/s"].strip("*")) == pytest.approx(int(row["batch"]) / seconds, rel=0.02), row
        assert phases[row["dominant phase"].rsplit(" (", 1)[0]] == max(phases.values()), row


def test_synthetic_clips_make_warp_episodes(tmp_path: Path) -> None:
    root = synthetic_dataset(tmp_path / "data", 64, clips=2, frames=5)
    episode = EpisodeDataset(root, "train", EpisodeConfig(k_max=2, warp=True))[(1, 2, 3)]
    assert episode.target_images.shape == (2, 3, 64, 64) and episode.warp_image.shape == (3, 64, 64)
    # the warp moved the mesh's pixels (the textures do not follow the mesh: only the cost is a real one's)
    assert not torch.equal(episode.warp_image, episode.target_images[0])
    assert not torch.equal(episode.warp_image, episode.target_images[1])


def test_bad_settings_and_a_dataset_of_another_size_are_one_line_errors(train_dataset: Path) -> None:
    with pytest.raises(SettingError, match="sizes=100"):
        override(BenchTrainConfig(), ["sizes=100"])
    with pytest.raises(SettingError, match="precisions"):
        override(BenchTrainConfig(), ["precisions=fp16"])
    with pytest.raises(InputError, match="crops are 64 px; bench train needs --set sizes=64"):
        report(override(BenchTrainConfig(), ["presets=tiny", "sizes=128", "rounds=1"]), train_dataset)
