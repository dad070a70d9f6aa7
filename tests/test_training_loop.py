"""Training on a tiny dataset: 2 steps then resume equals an uninterrupted run, the run folder, keep
last N, the inference export (no pickle), and bad input (missing dataset, wrong crop size, corrupt
or mismatched checkpoint, a failed save), and bf16 autocast on a CPU only where asked and native."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from marionette.errors import InputError
from marionette.inference.export import load_generator
from marionette.provenance import verify
from marionette.training import checkpoint as checkpoint_module
from marionette.training import loop
from marionette.training.checkpoint import list_checkpoints, load_checkpoint, remove_partial, save_checkpoint
from marionette.training.config import TrainConfig, run_config
from marionette.training.loop import learning_rate_scale, train, training_autocast

BASE = ["loss.perceptual_weights=random", "batch_size=2", "episodes.k_max=2", "log_every=1", "val_every=0",
        "checkpoint_every=2", "keep_last=2", "workers=0"]


@pytest.fixture(scope="module")
def dataset(train_dataset: Path) -> Path:
    return train_dataset  # conftest: four GRID clips at 64 px, 12 frames each, one identity held out


@pytest.fixture(scope="module")
def uninterrupted(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "a"
    train(dataset, run, run_config("tiny", [*BASE, "steps=4", "val_every=4", "val_episodes=2"]), progress=False)
    return run


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_resumed_run_matches_uninterrupted_run(dataset: Path, uninterrupted: Path, tmp_path: Path) -> None:
    run = tmp_path / "b"
    train(dataset, run, run_config("tiny", [*BASE, "steps=2", "val_every=4", "val_episodes=2"]), progress=False)
    # Lines logged after the last checkpoint (here none) are dropped on resume; then training goes on.
    result = train(dataset, run, run_config("tiny", [*BASE, "steps=4", "val_every=4", "val_episodes=2"]),
                   progress=False)
    assert result.step == 4
    a = [s for s in stats(uninterrupted) if "G/total" in s or s["step"] == 4]  # losses, and the validation at 4
    b = [s for s in stats(run) if "G/total" in s or s["step"] == 4]  # (run b also validated at its end, step 2)
    assert [s["step"] for s in a] == [s["step"] for s in b] == [1, 2, 3, 4, 4]
    for x, y in zip(a, b, strict=True):
        for key in x:
            if "/" in key:
                assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), (x["step"], key)
    g_a = load_generator(uninterrupted / "export" / "generator.safetensors").generator.state_dict()
    g_b = load_generator(run / "export" / "generator.safetensors").generator.state_dict()
    assert all(torch.allclose(g_a[k], g_b[k], atol=1e-6) for k in g_a)


def test_learning_rate_decay_schedule() -> None:
    t = TrainConfig(steps=10, decay_steps=4)
    assert [learning_rate_scale(s, t) for s in range(10)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert {learning_rate_scale(s, TrainConfig(steps=10)) for s in range(10)} == {1.0}


def test_resume_may_start_a_decay_and_the_optimizers_follow_it(dataset: Path, uninterrupted: Path,
                                                               tmp_path: Path) -> None:
    run = tmp_path / "decay"
    shutil.copytree(uninterrupted, run)  # 4 steps at a constant rate; go on to 8, decaying over the last 4
    config = run_config("tiny", [*BASE, "steps=8", "decay_steps=4", "val_every=4", "val_episodes=2"])
    result = train(dataset, run, config, progress=False)
    assert [s["lr_scale"] for s in stats(run) if "lr_scale" in s] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert result.networks.opt_g.param_groups[0]["lr"] == pytest.approx(config.train.lr_g / 4)
    assert result.networks.opt_d.param_groups[0]["lr"] == pytest.approx(config.train.lr_d / 4)


def test_run_folder_and_export(dataset: Path, uninterrupted: Path) -> None:
    run = uninterrupted
    assert json.loads((run / "config.json").read_text())["config"]["preset"] == "tiny"
    assert (run / "revisions.txt").read_text().strip()
    assert [p.name for p in list_checkpoints(run)] == ["step_000000002", "step_000000004"]  # keep_last=2
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000000004.png"]
    sample = verify(run / "samples" / "step_000000004.png")  # a grid of synthetic frames: marked
    assert sample.tag is not None and sample.watermark.present, sample
    assert (run / "val_curve.png").stat().st_size > 0  # val L1 and PSNR against steps, with the baselines
    val = stats(run)[-1]
    assert {"val/l1", "val/psnr", "val/ssim", "copy_first/l1", "copy_nearest/psnr"} <= set(val)
    exported = load_generator(run / "export" / "generator.safetensors")
    assert exported.step == 4 and exported.model.image_size == 64 and exported.preprocess.size == 64
    assert not exported.generator.training
    with torch.no_grad():
        out = exported.generator(torch.zeros(1, 2, 3, 64, 64), torch.zeros(1, 2, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    assert out.image.shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="not a generator export"):
        load_generator(list_checkpoints(run)[-1] / "weights.safetensors")


def test_bad_input_is_a_one_line_error(dataset: Path, uninterrupted: Path, tmp_path: Path) -> None:
    config = run_config("tiny", [*BASE, "steps=4"])
    with pytest.raises(InputError, match="no dataset manifest"):
        train(tmp_path / "missing", tmp_path / "r0", config, progress=False)
    with pytest.raises(InputError, match="crops are 64 px"):
        train(dataset, tmp_path / "r1", run_config("cpu", [*BASE]), progress=False)
    run = tmp_path / "copy"
    shutil.copytree(uninterrupted, run)
    with pytest.raises(InputError, match="different config.*model.channels"):
        train(dataset, run, run_config("tiny", [*BASE, "steps=4", "model.channels=16"]), progress=False)
    last = list_checkpoints(run)[-1]
    data = (last / "weights.safetensors").read_bytes()
    (last / "weights.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(InputError, match="corrupt or mismatched checkpoint") as error:
        train(dataset, run, run_config("tiny", [*BASE, "steps=6", "val_every=4", "val_episodes=2"]), progress=False)
    assert "\n" not in str(error.value)


def test_mismatched_checkpoint_and_failed_save(dataset: Path, uninterrupted: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from marionette.model.discriminator import Discriminator
    from marionette.model.generator import Generator

    config = run_config("tiny", [*BASE, "model.channels=16"])
    g, d = Generator(config.model), Discriminator(config.model)
    nets = checkpoint_module.Networks(g, d, Generator(config.model), torch.optim.Adam(g.parameters()),
                                      torch.optim.Adam(d.parameters()))
    with pytest.raises(InputError, match="mismatched"):
        load_checkpoint(list_checkpoints(uninterrupted)[-1], nets)

    calls = []

    def failing_save(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        calls.append(filename)
        Path(filename).write_bytes(b"half")
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", failing_save)
    with pytest.raises(InputError, match="cannot save checkpoint.*No space left"):
        save_checkpoint(tmp_path, 3, config, nets, keep_last=2)
    assert list((tmp_path / "checkpoints").iterdir()) == []  # nothing half-written, no temporary left


def test_temporaries_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / ".step_000000004.x1").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / ".tmpAb12Cd").write_bytes(b"half")  # safetensors' own temporary
    (tmp_path / "export" / ".generator.safetensors.q1.safetensors").write_bytes(b"half")
    (tmp_path / ".stats.jsonl.z9.jsonl").write_text("")
    (tmp_path / "checkpoints" / "step_000000002").mkdir()
    assert len(remove_partial(tmp_path)) == 4
    assert [p.name for p in tmp_path.rglob(".*")] == [] and list_checkpoints(tmp_path)


def test_cpu_autocast_runs_bf16_only_where_the_cpu_has_it(train_dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    t = TrainConfig()
    assert training_autocast(t, cuda) and not training_autocast(dataclasses.replace(t, autocast=False), cuda)
    assert not training_autocast(t, cpu)  # off on a CPU unless asked
    on = dataclasses.replace(t, cpu_autocast=True)
    monkeypatch.setattr(loop, "native_bf16", lambda device: (False, "this CPU has no native bf16"))
    with caplog.at_level(logging.WARNING):
        assert not training_autocast(on, cpu)
    assert [r.getMessage() for r in caplog.records] == ["cpu_autocast: this CPU has no native bf16; training in fp32"]
    monkeypatch.setattr(loop, "native_bf16", lambda device: (True, "the CPU has avx512_bf16"))
    assert training_autocast(on, cpu)
    # a run with it trains with its convolutions in bf16 (autocast runs anywhere, natively or not)
    dtypes = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        run = tmp_path / "run"
        train(train_dataset, run, run_config("tiny", ["model.warp_guided=true", "loss.perceptual_weights=random",
                                                      "steps=2", "batch_size=2", "episodes.k_max=2", "val_every=0",
                                                      "workers=0", "cpu_autocast=true"]), progress=False)
    finally:
        hook.remove()
    assert torch.bfloat16 in dtypes
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    losses = [v for s in stats for k, v in s.items() if k.startswith("G/")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
