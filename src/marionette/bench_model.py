"""Cost of the generator on one device, printed as a markdown report: parameters, the same run's
ceilings (a large matmul's and a 3x3 convolution's GFLOP/s), and per preset, K, batch and
precision the GFLOPs per frame, ms to encode a target set, ms per generated frame with the
targets cached, the achieved GFLOP/s and its share of the convolution ceiling, the time against
FOMM's (issue 18) scaled to this machine, and the peak memory.

GFLOPs are counted by torch.utils.flop_counter.FlopCounterMode (convolutions, matrix products and
the fused attention product, 2 per multiply-add; grid_sample, softmax and norms are not counted).
A batch of B frames shares one target set (its cache expanded, as when a driver's frames are
rendered several per call); per-frame figures divide the batch's by B. bf16 and fp16 cast the
weights and inputs (no autocast). Frame timings are interleaved: every round times one call of
each configuration in a shuffled order, and the median over rounds is reported, so that other
processes sharing the machine slow every row alike. On a GPU the clock is read after
synchronizing, after warm-up calls. Peak memory: the rise of the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs, Linux) on CPU, torch.cuda.max_memory_allocated on CUDA,
while encoding the targets and generating one batch, weights excluded.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import random
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from marionette.devices import DTYPES
from marionette.errors import InputError
from marionette.model.config import PRESETS, model_config
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator, TargetCache

T = TypeVar("T")
# Aims of the issues: paper preset per-frame FLOPs at K=8 (half of FOMM's 110 GFLOPs) and time
# (half of FOMM's), cpu preset per-frame time at K=1, the cost an extra target adds to a frame
# relative to K=1, and a paper-preset frame (K=8, batch 1) on an H100/H200-class GPU.
PAPER_GFLOPS_AIM, PAPER_FOMM_AIM, CPU_MS_AIM, EXTRA_TARGET_AIM, GPU_MS_AIM = 55.0, 0.5, 40.0, 0.10, 3.0
# FOMM (keypoint detector + generator) as measured in issue 18 on an AVX-512 AMD EPYC with 2 cores
# (fp32, batch 1): ms per frame, GFLOPs per frame, and that machine's 3x3 convolution ceiling.
FOMM_MS, FOMM_GFLOPS, FOMM_CONV_CEILING = 395.0, 110.0, 470.0


@dataclass(frozen=True)
class Row:
    preset: str
    k: int
    batch: int
    precision: str
    gflops_frame: float
    ms_encode: float
    ms_frame: float
    peak_mb: float

    @property
    def gflops_per_s(self) -> float:
        return self.gflops_frame / self.ms_frame * 1000


@dataclass(frozen=True)
class Ceiling:
    precision: str
    matmul: float  # GFLOP/s of a large square matrix product
    conv: float  # GFLOP/s of a 3x3 convolution at a generator-like shape


def count_gflops(fn: Callable[[], T]) -> tuple[float, T]:
    """GFLOPs of the matrix products, convolutions and attention products `fn` runs, and its result.
    The fused attention kernel of the CPU is counted like the GPU ones (torch leaves it out)."""
    def sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:  # shapes, as FlopCounterMode passes them
        return sdpa_flop_count(query, key, value)

    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}) as counter:
        result = fn()
    return counter.get_total_flops() / 1e9, result


def machine(device: torch.device) -> str:
    """The CPU's `lscpu` model name, core count, torch threads; the GPU's name where one is used."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", text).group(1).strip()  # type: ignore[union-attr]
    except (OSError, subprocess.CalledProcessError, AttributeError):
        model = platform.processor() or platform.machine()
    cpu = f"{model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); host {cpu}"
    return f"Apple GPU (mps); host {cpu}" if device.type == "mps" else cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def _peak_mb(run: Callable[[], object], device: torch.device) -> float:
    """Rise of the peak memory over the current while `run` runs, MB (NaN where not measurable).
    CPU: freed heap is first returned to the system, so earlier runs do not hide this one's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if device.type != "cpu" or not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    run()
    return (_rss_kib("VmHWM") - before) / 1024


def _ceiling_calls(precision: str, device: torch.device) -> list[tuple[Callable[[], object], float]]:
    """The ceilings' calls and their GFLOPs: an n x n matrix product (n = 2048 on CPU, 8192 on a
    GPU) and a 3x3 convolution, 256 to 256 channels at 64x64 (batch 1 on CPU, 16 on a GPU)."""
    dtype, gpu = DTYPES[precision], device.type != "cpu"
    n, b, c, s = (8192, 16, 256, 64) if gpu else (2048, 1, 256, 64)
    a = torch.randn(n, n, device=device, dtype=dtype)
    x, w = torch.randn(b, c, s, s, device=device, dtype=dtype), torch.randn(c, c, 3, 3, device=device, dtype=dtype)
    return [(lambda: a @ a, 2 * n**3 / 1e9), (lambda: F.conv2d(x, w, padding=1), 2 * b * c * c * 9 * s * s / 1e9)]


@dataclass
class _Setup:
    """One (preset, K, batch, precision) configuration ready to time: its generator, inputs and cache."""

    preset: str
    k: int
    batch: int
    precision: str
    generator: Generator
    images: torch.Tensor  # (1, K, 3, H, W)
    landmarks: torch.Tensor  # (1, K, 3, H, W)
    driver: torch.Tensor  # (B, 3, H, W)
    cache: TargetCache | None = None

    def encode(self) -> TargetCache:
        return self.generator.encode_targets(self.images, self.landmarks)

    def frame(self) -> object:
        return self.generator.generate(self.driver, self.cache)

    def encode_and_frame(self) -> object:
        return self.generator.generate(self.driver, self.encode().repeat(self.batch))


def _setups(presets: list[str], ks: list[int], batches: list[int], precisions: list[str],
            device: torch.device) -> list[_Setup]:
    setups = []
    for preset in presets:
        config = model_config(preset)
        for precision in precisions:
            torch.manual_seed(0)
            s, dtype = config.image_size, DTYPES[precision]
            generator = Generator(config).eval().to(device=device, dtype=dtype)
            rand = lambda *shape, dtype=dtype: (torch.rand(*shape) * 2 - 1).to(device=device, dtype=dtype)  # noqa: E731
            for k in ks:
                images, landmarks = rand(1, k, 3, s, s), rand(1, k, 3, s, s)  # (1, K, 3, H, W)
                setups += [_Setup(preset, k, b, precision, generator, images, landmarks, rand(b, 3, s, s))
                           for b in batches]
    return setups


@torch.inference_mode()
def measure(presets: list[str], ks: list[int], batches: list[int], precisions: list[str], device: torch.device,
            rounds: int, encodes: int) -> tuple[list[Row], list[Ceiling]]:
    """Rows for every (preset, precision, K, batch) and the ceilings of fp32 and `precisions`:
    FLOPs and peak memory first (the warm-up), then encode timings, then `rounds` shuffled rounds
    of one timed call of each configuration and each ceiling's operation (so that the machine's
    other load weighs on both alike)."""
    setups = _setups(presets, ks, batches, precisions, device)
    ceiling_calls = {p: _ceiling_calls(p, device) for p in dict.fromkeys(["fp32", *precisions])}
    calls = [s.frame for s in setups] + [fn for pair in ceiling_calls.values() for fn, _ in pair]
    peaks, gflops, ms_encode = [], [], []
    for setup in setups:
        peaks.append(_peak_mb(setup.encode_and_frame, device))
        setup.cache = setup.encode().repeat(setup.batch)
        gflops.append(count_gflops(setup.frame)[0] / setup.batch)
        setup.frame()
        ms_encode.append(statistics.median(_seconds(setup.encode, device) for _ in range(encodes)) * 1000)
    for fn in calls[len(setups):]:
        fn(), fn()  # warm-up
    times: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for i in order:
            times[i].append(_seconds(calls[i], device))
    seconds = [statistics.median(t) for t in times]
    rows = [Row(s.preset, s.k, s.batch, s.precision, g, e, t * 1000 / s.batch, p)
            for s, g, e, t, p in zip(setups, gflops, ms_encode, seconds[:len(setups)], peaks, strict=True)]
    ceiling_seconds = iter(seconds[len(setups):])
    return rows, [Ceiling(p, *(g / next(ceiling_seconds) for _, g in pair)) for p, pair in ceiling_calls.items()]


def parameters(preset: str) -> tuple[float, float]:
    config = model_config(preset)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    return count(Generator(config)), count(Discriminator(config))


def fomm_ms(ceilings: list[Ceiling]) -> float:
    """FOMM's ms per frame scaled to this machine: its time times the ratio of the conv ceiling
    measured with it (470 GFLOP/s) to this run's fp32 conv ceiling."""
    fp32 = next(c for c in ceilings if c.precision == "fp32")
    return FOMM_MS * FOMM_CONV_CEILING / fp32.conv


def _extra(row: Row, one: Row) -> tuple[float, float]:
    """Per-frame FLOPs and time that each target beyond the first adds, as fractions of K=1's."""
    return ((row.gflops_frame - one.gflops_frame) / (row.k - 1) / one.gflops_frame,
            (row.ms_frame - one.ms_frame) / (row.k - 1) / one.ms_frame)


def table(rows: list[Row], ceilings: list[Ceiling]) -> str:
    conv = {c.precision: c.conv for c in ceilings}
    fomm = fomm_ms(ceilings)
    lines = ["| network | K | batch | precision | GFLOPs/frame | ms encode | ms/frame | GFLOP/s | ÷ conv ceiling "
             "| ÷ FOMM time | per extra target: frame FLOPs, time | peak MB |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| FOMM (issue 18; time scaled to this machine) | | 1 | fp32 | {FOMM_GFLOPS:.1f} | | {fomm:.1f} | "
             f"{FOMM_GFLOPS / FOMM_MS * 1000:.0f} (there) | {FOMM_GFLOPS / FOMM_MS * 1000 / FOMM_CONV_CEILING:.2f} "
             "(there) | 1 | | |"]
    base = {(r.preset, r.batch, r.precision): r for r in rows if r.k == 1}
    for r in rows:
        one = base.get((r.preset, r.batch, r.precision))
        extra = "" if r.k == 1 or one is None else "{:+.1%}, {:+.1%}".format(*_extra(r, one))
        lines.append(f"| marionette `{r.preset}` | {r.k} | {r.batch} | {r.precision} | {r.gflops_frame:.2f} | "
                     f"{r.ms_encode:.1f} | {r.ms_frame:.2f} | {r.gflops_per_s:.1f} | "
                     f"{r.gflops_per_s / conv[r.precision]:.2f} | {r.ms_frame / fomm:.3f} | {extra} | "
                     f"{r.peak_mb:.0f} |")
    return "\n".join(lines)


def aims(rows: list[Row], ceilings: list[Ceiling], device: torch.device) -> str:
    """The issues' aims that these rows measure, each marked met or NOT met."""
    by_key = {(r.preset, r.k, r.batch, r.precision): r for r in rows}
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = []
    if (paper8 := by_key.get(("paper", 8, 1, "fp32"))) is not None:
        ratio = paper8.ms_frame / fomm_ms(ceilings)
        lines += [f"- paper preset, K=8: {paper8.gflops_frame:.1f} GFLOPs per frame (aim <= {PAPER_GFLOPS_AIM:.0f}): "
                  f"{verdict(paper8.gflops_frame <= PAPER_GFLOPS_AIM)}",
                  f"- paper preset, K=8, fp32, batch 1: {ratio:.2f}x FOMM's scaled time (aim <= {PAPER_FOMM_AIM}): "
                  f"{verdict(ratio <= PAPER_FOMM_AIM)}"]
    if device.type == "cpu" and (cpu1 := by_key.get(("cpu", 1, 1, "fp32"))) is not None:
        lines.append(f"- cpu preset, K=1, fp32: {cpu1.ms_frame:.1f} ms per frame (aim <= {CPU_MS_AIM:.0f}): "
                     f"{verdict(cpu1.ms_frame <= CPU_MS_AIM)}")
    extras = [(_extra(r, by_key[(r.preset, 1, r.batch, r.precision)])[0], r) for r in rows
              if r.k > 1 and (r.preset, 1, r.batch, r.precision) in by_key]
    if extras:
        share, worst = max(extras, key=lambda item: item[0])
        lines.append(f"- each extra target adds at most {share:.1%} of the K=1 per-frame FLOPs ({worst.preset}, "
                     f"K={worst.k}) (aim <= {EXTRA_TARGET_AIM:.0%}): {verdict(share <= EXTRA_TARGET_AIM)}")
    if device.type == "cuda":
        for r in rows:
            if (r.preset, r.k, r.batch) == ("paper", 8, 1):
                lines.append(f"- paper preset, K=8, {r.precision}, batch 1 on this GPU: {r.ms_frame:.2f} ms per frame "
                             f"(aim on an H100/H200-class GPU <= {GPU_MS_AIM:.0f}): {verdict(r.ms_frame <= GPU_MS_AIM)}")
    return "\n".join(lines)


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda` or `mps`; an InputError naming the device when this machine lacks it."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise InputError(f"bench model: unknown device {name!r} (known: {', '.join(available)})")
    if not available[name]:
        raise InputError(f"bench model: device {name!r} is not available on this machine (torch sees no {name} device)")
    return torch.device(name)


def report(presets: list[str], ks: list[int], batches: list[int] = (1,), precisions: list[str] = ("fp32",),
           device: str = "cpu", rounds: int = 15, encodes: int = 3) -> str:
    """Measure the ceilings and every (preset, K, batch, precision); return the markdown report."""
    dev = resolve_device(device)
    for names, known, what in ((precisions, DTYPES, "precision"), (presets, PRESETS, "preset")):
        if unknown := sorted(set(names) - set(known)):
            raise InputError(f"bench model: unknown {what} {unknown[0]!r} (known: {', '.join(known)})")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the fastest convolution algorithms for these fixed shapes
    rows, ceilings = measure(list(presets), list(ks), list(batches), list(precisions), dev, rounds, encodes)
    params = "\n".join(f"| {p} | {model_config(p).image_size} | {g:.2f} | {d:.2f} |"
                       for p in presets for g, d in [parameters(p)])
    ceiling_rows = "\n".join(f"| {c.precision} | {c.matmul:.0f} | {c.conv:.0f} |" for c in ceilings)
    return "\n\n".join([
        "# Model cost benchmark",
        f"Machine: {machine(dev)}; device {dev.type}.",
        "| preset | px | G params (M) | D params (M) |\n|---|---:|---:|---:|\n" + params,
        "Ceilings, measured in this run, in the same interleaved rounds as the frames (GFLOP/s): a large "
        "square matrix product and a 3x3 convolution (256 to 256 channels, 64x64).\n\n"
        "| precision | matmul | 3x3 conv |\n|---|---:|---:|\n" + ceiling_rows,
        f"Frames: median of {rounds} interleaved rounds; encode: median of {encodes} calls. "
        f"÷ conv ceiling: achieved GFLOP/s over this run's 3x3 conv ceiling at the row's precision. "
        f"÷ FOMM time: ms/frame over FOMM's {FOMM_MS:.0f} ms ({FOMM_GFLOPS:.0f} GFLOPs, fp32, batch 1, on an "
        f"AVX-512 AMD EPYC with 2 cores whose 3x3 conv ceiling was {FOMM_CONV_CEILING:.0f} GFLOP/s; issue 18) "
        "scaled by the ratio of that ceiling to this run's fp32 conv ceiling, so that it compares across machines.",
        table(rows, ceilings),
        aims(rows, ceilings, dev),
    ])
