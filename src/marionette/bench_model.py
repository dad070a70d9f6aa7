"""Cost of the generator on this machine's CPU, printed as a markdown table: parameters, GFLOPs
per frame, ms to encode a target set, ms per generated frame with the targets cached, and peak
memory, for K = 1, 2, 4, 8 at each preset, in fp32 and bf16 (autocast).

GFLOPs are counted by torch.utils.flop_counter.FlopCounterMode (convolutions and matrix
products, 2 per multiply-add; grid_sample, softmax and norms are not counted). Timings are wall
clock at batch 1 with torch's default threads, the median of several calls; peak memory is the
rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over the RSS before
encoding the targets and generating one frame, weights excluded (Linux).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from marionette.model import Discriminator, Generator, model_config

# Aims of the issue: paper preset per-frame cost at K=8 (half of FOMM's 110 GFLOPs), cpu preset
# per-frame time at K=1, and the cost an extra target adds to a frame relative to K=1.
T = TypeVar("T")
PAPER_GFLOPS_AIM, CPU_MS_AIM, EXTRA_TARGET_AIM = 55.0, 40.0, 0.10


@dataclass(frozen=True)
class Row:
    preset: str
    k: int
    dtype: str
    gflops_frame: float
    gflops_encode: float
    ms_encode: float
    ms_frame: float
    peak_mb: float


def machine() -> str:
    """`lscpu` model name, core count, torch threads."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", text).group(1).strip()  # type: ignore[union-attr]
    except (OSError, subprocess.CalledProcessError, AttributeError):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def _peak_mb(run: Callable[[], object]) -> float:
    """Rise of the peak RSS over the current RSS while `run` runs, MB (freed heap is first
    returned to the system, so earlier runs do not hide this one's allocations)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    run()
    return (_rss_kib("VmHWM") - before) / 1024


def _ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, ms (the median resists the other processes sharing the
    cores; the peak-memory and FLOP-count runs before it are the warm-up)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _gflops(fn: Callable[[], T]) -> tuple[float, T]:
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return counter.get_total_flops() / 1e9, result


@torch.inference_mode()
def measure(preset: str, k: int, bf16: bool, frames: int, encodes: int) -> Row:
    config = model_config(preset)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    s = config.image_size
    images, landmarks = torch.rand(1, k, 3, s, s) * 2 - 1, torch.rand(1, k, 3, s, s) * 2 - 1  # (B, K, 3, H, W)
    driver = torch.rand(1, 3, s, s) * 2 - 1  # (B, 3, H, W)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        peak = _peak_mb(lambda: generator.generate(driver, generator.encode_targets(images, landmarks)))
        gflops_encode, cache = _gflops(lambda: generator.encode_targets(images, landmarks))
        gflops_frame, _ = _gflops(lambda: generator.generate(driver, cache))
        ms_encode = _ms(lambda: generator.encode_targets(images, landmarks), encodes)
        ms_frame = _ms(lambda: generator.generate(driver, cache), frames)
    return Row(preset, k, "bf16" if bf16 else "fp32", gflops_frame, gflops_encode, ms_encode, ms_frame, peak)


def parameters(preset: str) -> tuple[float, float]:
    config = model_config(preset)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    return count(Generator(config)), count(Discriminator(config))


def _extra(row: Row, one: Row) -> tuple[float, float]:
    """Per-frame FLOPs and time that each target beyond the first adds, as fractions of K=1's."""
    return ((row.gflops_frame - one.gflops_frame) / (row.k - 1) / one.gflops_frame,
            (row.ms_frame - one.ms_frame) / (row.k - 1) / one.ms_frame)


def table(rows: list[Row]) -> str:
    lines = ["| preset | K | dtype | GFLOPs/frame | GFLOPs encode | ms encode | ms/frame "
             "| per extra target: frame FLOPs, time | peak MB (encode + 1 frame) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    base = {(r.preset, r.dtype): r for r in rows if r.k == 1}
    for r in rows:
        one = base.get((r.preset, r.dtype))
        extra = "" if r.k == 1 or one is None else "{:+.1%}, {:+.1%}".format(*_extra(r, one))
        lines.append(f"| {r.preset} | {r.k} | {r.dtype} | {r.gflops_frame:.2f} | {r.gflops_encode:.2f} | "
                     f"{r.ms_encode:.1f} | {r.ms_frame:.1f} | {extra} | {r.peak_mb:.0f} |")
    return "\n".join(lines)


def aims(rows: list[Row]) -> str:
    """The issue's aims, each marked met or NOT met."""
    by_key = {(r.preset, r.k, r.dtype): r for r in rows}
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = []
    if (paper8 := by_key.get(("paper", 8, "fp32"))) is not None:
        lines.append(f"- paper preset, K=8: {paper8.gflops_frame:.1f} GFLOPs per frame (aim <= {PAPER_GFLOPS_AIM:.0f}): "
                     f"{verdict(paper8.gflops_frame <= PAPER_GFLOPS_AIM)}")
    if (cpu1 := by_key.get(("cpu", 1, "fp32"))) is not None:
        lines.append(f"- cpu preset, K=1, fp32: {cpu1.ms_frame:.1f} ms per frame (aim <= {CPU_MS_AIM:.0f}): "
                     f"{verdict(cpu1.ms_frame <= CPU_MS_AIM)}")
    extras = [(_extra(r, by_key[(r.preset, 1, r.dtype)])[0], r) for r in rows
              if r.k > 1 and (r.preset, 1, r.dtype) in by_key]
    if extras:
        share, worst = max(extras, key=lambda item: item[0])
        lines.append(f"- each extra target adds at most {share:.1%} of the K=1 per-frame FLOPs ({worst.preset}, "
                     f"K={worst.k}) (aim <= {EXTRA_TARGET_AIM:.0%}): {verdict(share <= EXTRA_TARGET_AIM)}")
    return "\n".join(lines)


def report(presets: list[str], ks: list[int], bf16_presets: set[str]) -> str:
    """Measure every (preset, K, dtype), printing each row as it is done; return the markdown report."""
    measure("tiny", 1, False, frames=2, encodes=1)  # warm the process up (library init, allocator); discarded
    rows = []
    for preset in presets:
        for bf16 in (False, True) if preset in bf16_presets else (False,):
            small = preset == "tiny" or (preset == "cpu" and not bf16)
            for k in ks:
                rows.append(measure(preset, k, bf16, frames=20 if small else 3, encodes=5 if small else 1))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    params = "\n".join(f"| {p} | {model_config(p).image_size} | {g:.2f} | {d:.2f} |"
                       for p in presets for g, d in [parameters(p)])
    return "\n\n".join([
        "# Model cost benchmark",
        f"Machine: {machine()}.",
        "| preset | px | G params (M) | D params (M) |\n|---|---:|---:|---:|\n" + params,
        table(rows),
        aims(rows),
    ])
