"""Where the neural renderer's generator runs and in what precision (ours).

`device`: auto (cuda if there is one, else mps, else cpu), cpu, cuda, cuda:N or mps. A device
asked for but absent falls back to the CPU with one warning line, so that one settings file works
on every machine. `precision`: auto, fp32, bf16 or fp16, run as `torch.autocast` (weights stay
fp32; only the ops autocast lists, such as convolutions and matrix products, run in half
precision), measured to be numerically safer than casting the weights, though slower (bf16 on the
`cpu` preset: mean error 0.018 vs 0.048 in [-1, 1], 0.81-0.84x vs 0.71-0.72x fp32's time). A
precision the device cannot run well falls back with one warning line too. The settings' rules
(DEVICE_RULE, PRECISION_RULE) live with the settings, in inference/config.py.

Measured on an AMD EPYC with AVX512-BF16, 1 thread, K = 1, interleaved medians
(tools/measure_precision.py, 2026-12-06): the generator in bf16 takes 0.76x fp32's time (the `cpu`
preset, random weights), 0.58x (`paper`) and 0.68-0.74x (the shipped generator, two runs; its
evaluation in bf16 moves by 0.002 at most); fp16 takes 33-34x (no fast fp16 kernels on this CPU);
channels-last: below.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` runs bf16 natively, and the evidence in words."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'lacks'} bf16"
    try:
        flags = {word for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                 for word in line.split(":", 1)[1].split()}
    except OSError:
        return False, "no /proc/cpuinfo to read the CPU's flags from"
    found = [f for f in BF16_FLAGS if f in flags]
    if found:
        return True, f"the CPU has {' and '.join(found)}"
    return False, f"this CPU has no native bf16 (neither {' nor '.join(BF16_FLAGS)} in /proc/cpuinfo's flags)"


@dataclass(frozen=True)
class Placement:
    """A resolved device and precision: what the generator runs on."""

    device: torch.device
    precision: str  # fp32, bf16 or fp16 (autocast dtype; fp32: autocast off)

    def channels_last(self, refiner: bool) -> bool:
        """Channels-last convolutions for a generator (`refiner`: one with the warp refiner, ours): the
        known good layout on CUDA; on the CPU for the refiner only, whose full-resolution convolutions
        of few channels it speeds up (the shipped generator: 0.85-0.91x fp32's time, 0.92-0.96x bf16's;
        its render stage 0.91x), where the presets without it gain little in fp32 (0.95-1.00x) and lose
        in bf16 (1.06-1.12x)."""
        return self.device.type == "cuda" or (self.device.type == "cpu" and refiner)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The context the generator's calls run in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def settings(self) -> dict[str, str]:
        """`device` and `precision` settings that resolve to this placement, without a warning:
        a command that builds several pipelines resolves once and passes these on."""
        return {"device": str(self.device), "precision": self.precision}

    def __str__(self) -> str:
        return f"{self.device}, {self.precision}"


def _cpu_build() -> str:
    return f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None else \
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU or driver"


def resolve_device(setting: str) -> torch.device:
    """The torch.device for a `device` setting; an absent device falls back to the CPU (one warning)."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if setting.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(setting.partition(":")[2] or 0)
        if count == 0:
            log.warning(f"device={setting}: no CUDA device here ({_cpu_build()}); running on the CPU")
            return torch.device("cpu")
        if index >= count:
            log.warning(f"device={setting}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; "
                        "running on the CPU")
            return torch.device("cpu")
        return torch.device(setting)
    if setting == "mps" and not torch.backends.mps.is_available():
        why = "needs Apple silicon and macOS 12.3+" if torch.backends.mps.is_built() else \
            f"torch {torch.__version__} is built without MPS"
        log.warning(f"device=mps: no MPS device here ({why}); running on the CPU")
        return torch.device("cpu")
    return torch.device(setting)


MPS_AUTOCAST = {"fp16": "2.5", "bf16": "2.6"}  # the first torch with MPS autocast in each precision


def _fallback(precision: str, device: torch.device) -> tuple[str, str] | None:
    """(the precision to run instead, why) where `device` cannot run `precision` well; else None."""
    if device.type == "cpu" and precision == "fp16":
        return "fp32", "slow on CPUs (33x fp32's time, measured on an AVX-512 EPYC; bf16 is the fast one there)"
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "fp16", f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type == "mps" and precision in MPS_AUTOCAST and torch.__version__ < MPS_AUTOCAST[precision]:
        return "fp32", f"MPS autocast in {precision} needs torch >= {MPS_AUTOCAST[precision]} (this is {torch.__version__})"
    return None


def resolve_precision(setting: str, device: torch.device) -> str:
    """fp32, bf16 or fp16 for a `precision` setting on `device`; a precision the device cannot
    run well falls back (one warning; `auto` picks one it can run, silently)."""
    if setting == "auto":
        # CPU: bf16 where it is native (the shipped generator in 0.74x fp32's time, its evaluation unchanged), else fp32
        cpu = "bf16" if device.type == "cpu" and native_bf16(device)[0] else "fp32"
        wanted = {"cuda": "bf16", "mps": "fp16"}.get(device.type, cpu)
        instead = _fallback(wanted, device)
        return instead[0] if instead else wanted
    instead = _fallback(setting, device)
    if instead is None:
        return setting
    log.warning(f"precision={setting}: {instead[1]}; running in {instead[0]}")
    return instead[0]


def placement(device: str = "auto", precision: str = "auto") -> Placement:
    """Resolve `device` and `precision` settings (values checked by inference.config's DEVICE_RULE and PRECISION_RULE)."""
    resolved = resolve_device(device)
    return Placement(resolved, resolve_precision(precision, resolved))
