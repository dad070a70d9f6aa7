"""Device and precision choice (marionette.devices): absent devices fall back to the CPU with one
warning line; `auto` picks what is there; bf16 autocast stays close to fp32 on the CPU.

GPUs and Apple silicon are simulated by monkeypatching torch's availability checks: only the
resolution logic is tested that way, never a computation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from marionette import devices
from marionette.devices import Placement, native_bf16, placement
from marionette.model.config import model_config
from marionette.model.generator import Generator


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Pretend this machine has `cuda` CUDA devices (bf16 where `bf16`), MPS where `mps` and a CPU
    with native bf16 where `cpu_bf16`."""
    def make(cuda: int = 0, bf16: bool = True, mps: bool = False, cpu_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        real = devices.native_bf16
        monkeypatch.setattr(devices, "native_bf16",
                            lambda device: (cpu_bf16, "simulated") if device.type == "cpu" else real(device))
    return make


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("asked", ["cuda", "cuda:1", "mps"])
def test_an_absent_device_falls_back_to_the_cpu_with_one_warning(asked: str, machine,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    machine()
    assert placement(asked, "auto") == Placement(torch.device("cpu"), "fp32")
    said = warnings(caplog)
    assert len(said) == 1 and said[0].startswith(f"device={asked}: ") and "running on the CPU" in said[0], said
    assert "\n" not in said[0]


def test_a_missing_gpu_index_falls_back_naming_the_ones_there(machine, caplog: pytest.LogCaptureFixture) -> None:
    machine(cuda=2)
    assert placement("cuda:2", "auto").device == torch.device("cpu")
    assert warnings(caplog) == ["device=cuda:2: this machine has 2 CUDA device(s), cuda:0..cuda:1; running on the CPU"]
    assert placement("cuda:1", "auto") == Placement(torch.device("cuda:1"), "bf16")


@pytest.mark.parametrize("cuda, mps, cpu_bf16, device, precision", [
    (0, False, False, "cpu", "fp32"),  # a CPU without native bf16: fp32
    (0, False, True, "cpu", "bf16"),  # with it (AVX512-BF16, AMX): bf16, measured faster at the same scores
    (1, False, False, "cuda", "bf16"),
    (1, True, False, "cuda", "bf16"),  # CUDA first
    (0, True, False, "mps", "fp16"),
])
def test_auto_picks_the_best_device_there_and_its_precision(cuda: int, mps: bool, cpu_bf16: bool, device: str,
                                                            precision: str, machine,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    machine(cuda=cuda, mps=mps, cpu_bf16=cpu_bf16)
    assert placement("auto", "auto") == Placement(torch.device(device), precision)
    assert warnings(caplog) == []


def test_auto_is_the_cpu_in_bf16_where_it_has_native_bf16_on_this_machine() -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    native, why = native_bf16(torch.device("cpu"))
    assert placement() == Placement(torch.device("cpu"), "bf16" if native else "fp32"), why


def test_precisions_a_device_cannot_run_well_fall_back_with_one_warning(machine,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    machine(cuda=1, bf16=False)
    assert placement("cuda", "auto").precision == "fp16"  # auto: no warning
    assert warnings(caplog) == []
    assert placement("cuda", "bf16").precision == "fp16"
    assert placement("cpu", "fp16").precision == "fp32"
    said = warnings(caplog)
    assert said == ["precision=bf16: Old GPU has no bf16; running in fp16",
                    "precision=fp16: slow on CPUs (33x fp32's time, measured on an AVX-512 EPYC; bf16 is the fast "
                    "one there); running in fp32"], said
    caplog.clear()
    assert placement("cpu", "bf16") == Placement(torch.device("cpu"), "bf16")  # native or emulated: it runs
    assert placement("cuda", "fp32") == Placement(torch.device("cuda"), "fp32")
    assert warnings(caplog) == []


def test_mps_half_precision_needs_a_torch_with_mps_autocast(machine, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    machine(mps=True)
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.5.1"))
    assert placement("mps", "fp16").precision == "fp16" and warnings(caplog) == []
    assert placement("mps", "bf16").precision == "fp32"
    assert warnings(caplog) == ["precision=bf16: MPS autocast in bf16 needs torch >= 2.6 (this is 2.5.1); running in fp32"]
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.4.0"))
    caplog.clear()
    assert placement("auto", "auto") == Placement(torch.device("mps"), "fp32") and warnings(caplog) == []


def test_resolved_settings_resolve_to_themselves_silently(machine, caplog: pytest.LogCaptureFixture) -> None:
    machine()
    once = placement("cuda", "bf16")  # warns: no CUDA
    caplog.clear()
    assert placement(**once.settings()) == once and warnings(caplog) == []
    assert once.device == torch.device("cpu")


def test_channels_last_on_cuda_and_on_the_cpu_for_the_refiner_only() -> None:
    cuda, cpu = Placement(torch.device("cuda"), "bf16"), Placement(torch.device("cpu"), "fp32")
    assert cuda.channels_last(refiner=False) and cuda.channels_last(refiner=True)
    assert cpu.channels_last(refiner=True) and not cpu.channels_last(refiner=False)


def test_bf16_autocast_generator_output_is_close_to_fp32() -> None:
    """Measured (tiny preset, random weights, 4 seeds): max abs difference 0.07..0.09 and mean
    0.011 in [-1, 1]; a trained tiny generator (171 steps) 0.045 and 0.005."""
    torch.manual_seed(0)
    generator = Generator(model_config("tiny")).eval()
    s = generator.config.image_size
    images, landmarks = torch.rand(1, 2, 3, s, s) * 2 - 1, torch.rand(1, 2, 3, s, s) * 2 - 1  # (B, K, 3, H, W)
    driver = torch.rand(1, 3, s, s) * 2 - 1  # (B, 3, H, W)
    outs = {}
    for precision in ("fp32", "bf16"):
        with torch.inference_mode(), Placement(torch.device("cpu"), precision).autocast():
            outs[precision] = generator.generate(driver, generator.encode_targets(images, landmarks)).image
    assert outs["fp32"].dtype == torch.float32 and outs["bf16"].dtype == torch.bfloat16  # autocast ran
    error = (outs["bf16"].float() - outs["fp32"]).abs()
    assert error.max() <= 0.2 and error.mean() <= 0.025, (error.max(), error.mean())


def test_neural_renderer_in_bf16_draws_nearly_the_fp32_frame(hopper) -> None:
    from helpers import hopper_targets

    from marionette.inference.neural import NeuralRenderer

    crops, meshes = hopper_targets(hopper, 96)
    moved = meshes[0].copy()
    moved[:, 1] += 4
    frames = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        renderer = NeuralRenderer(Generator(model_config("tiny")), crop_size=96, precision=precision)
        renderer.prepare(crops, meshes)
        frames[precision] = renderer.render(moved).astype(int)
    error = np.abs(frames["bf16"] - frames["fp32"])
    # measured (random weights, 4 seeds): mean 1.2..1.8 grey levels, 99th percentile 5..7, max 9..14
    assert 0 < error.mean() <= 3 and np.percentile(error, 99) <= 12, (error.mean(), np.percentile(error, 99))
