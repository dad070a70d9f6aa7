"""Measure the neural renderer's precision and memory-layout choices on this machine's CPU, the
figures behind marionette.devices' CPU defaults (README, Measured).

1. The generator alone (targets cached, K = 1; a preset's random weights, or with `--shipped` the
   shipped generator's, given a warp image where it is warp-guided): ms per frame in fp32, bf16
   and fp16 autocast, channels-last (fp32, bf16) and weights cast to bf16 (no autocast), and each
   variant's largest and mean difference from fp32's image in [-1, 1].
2. The neural renderer's render stage (landmark image, generator, colour matching) on real driven
   meshes (the bundled portrait driven by a video), fp32 vs bf16 through ReenactPipeline, and how
   far the bf16 frames are from the fp32 ones in grey levels.

Variants are interleaved (one call of each in turn, the order reversed every round) in one
process and the medians reported, so that other load on the machine hits all of them alike.

    .venv/bin/python tools/measure_precision.py --presets cpu,paper --rounds 30,9 \\
        --driver ../shared/data/videos/lp_d3.mp4       # about 5 minutes on 2 shared cores
    .venv/bin/python tools/measure_precision.py --presets "" --shipped --rounds 30 --fp16-presets "" \\
        --driver ../shared/data/videos/lp_d3.mp4 --frames 60   # the shipped generator: about 2 minutes
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from marionette.bench_model import machine
from marionette.data.config import PreprocessConfig
from marionette.devices import Placement
from marionette.inference.export import export_generator, load_generator
from marionette.inference.io import open_driver
from marionette.inference.pipeline import ReenactConfig, ReenactPipeline
from marionette.model.config import model_config
from marionette.model.generator import Generator
from marionette.resources import SAMPLE_TARGET, SHIPPED_GENERATOR, asset

CPU = torch.device("cpu")


def interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each, measured in turn (order reversed every other round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def generator_variants(generator: Generator, fp16: bool) -> dict[str, Callable[[], torch.Tensor]]:
    """name -> a call generating one frame (targets cached) in that variant."""
    torch.manual_seed(0)
    generator = generator.eval()
    s = generator.config.image_size
    images, landmarks = torch.rand(1, 1, 3, s, s) * 2 - 1, torch.rand(1, 1, 3, s, s) * 2 - 1  # (B, K, 3, H, W)
    driver = torch.rand(1, 3, s, s) * 2 - 1  # (B, 3, H, W)
    warp = torch.rand(1, 3, s, s) * 2 - 1 if generator.config.warp_guided else None  # (B, 3, H, W)
    variants = [("fp32", "fp32", False), ("bf16", "bf16", False), ("channels_last fp32", "fp32", True),
                ("channels_last bf16", "bf16", True)] + ([("fp16", "fp16", False)] if fp16 else [])
    calls = {}
    for name, precision, channels_last in variants:
        model, where = copy.deepcopy(generator), Placement(CPU, precision)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=layout)
        with torch.inference_mode(), where.autocast():
            cache = model.encode_targets(images, landmarks)

        def call(model: Generator = model, where: Placement = where, cache=cache,
                 frame: torch.Tensor = driver.contiguous(memory_format=layout),
                 warp: torch.Tensor | None = None if warp is None else warp.contiguous(memory_format=layout)
                 ) -> torch.Tensor:
            with torch.inference_mode(), where.autocast():
                return model.generate(frame, cache, warp).image.float()  # (1, 3, s, s)
        calls[name] = call
    cast = copy.deepcopy(generator).to(torch.bfloat16)
    with torch.inference_mode():
        cast_cache = cast.encode_targets(images.bfloat16(), landmarks.bfloat16())

    def cast_call() -> torch.Tensor:
        with torch.inference_mode():
            return cast.generate(driver.bfloat16(), cast_cache, None if warp is None else warp.bfloat16()).image.float()
    calls["bf16 weights"] = cast_call
    return calls


def measure_generator(title: str, generator: Generator, rounds: int, fp16: bool) -> None:
    calls = generator_variants(generator, fp16)
    reference = calls["fp32"]()
    errors = {name: (call() - reference).abs() for name, call in calls.items()}
    medians = interleaved(calls, rounds)
    print(f"\n{title}, K = 1, generator only ({rounds} rounds)\n\n"
          "| variant | ms/frame | x fp32 | max abs diff | mean abs diff |\n|---|---:|---:|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / medians['fp32']:.2f} | "
              f"{errors[name].max():.3f} | {errors[name].mean():.4f} |")


def preset_export(preset: str, folder: Path) -> Path:
    """An inference export of `preset` with random weights (seed 0), written into `folder`."""
    export = folder / "generator.safetensors"
    torch.manual_seed(0)
    config = model_config(preset)
    export_generator(export, Generator(config), config, PreprocessConfig(), step=0)
    return export


def measure_render(title: str, checkpoint: Path, driver: str, frames: int) -> None:
    """fp32 vs bf16 render stage of the `checkpoint` export on `frames` driven meshes of `driver`."""
    pipelines = {p: ReenactPipeline(ReenactConfig(device="cpu", precision=p), checkpoint=checkpoint)
                 for p in ("fp32", "bf16")}
    for pipeline in pipelines.values():
        pipeline.set_targets([str(asset(SAMPLE_TARGET))])
    run = itertools.islice(pipelines["fp32"].render_frames(open_driver(driver)), frames)
    meshes = [rendered.driven for rendered in run]  # the driven meshes of the first pipeline's run
    times: dict[str, list[float]] = {p: [] for p in pipelines}
    errors = []
    for i, mesh in enumerate(meshes):
        out = {}
        for p in list(pipelines) if i % 2 == 0 else list(pipelines)[::-1]:
            start = time.perf_counter()
            out[p] = pipelines[p].renderer.render(mesh).astype(int)  # (S, S, 3)
            times[p].append(time.perf_counter() - start)
        errors.append(np.abs(out["bf16"] - out["fp32"]))
    error = np.stack(errors)
    fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
    print(f"\n{title}, render stage of the neural renderer, {len(meshes)} frames of {Path(driver).name}: "
          f"fp32 {1000 * fp32:.1f} ms/frame, bf16 {1000 * bf16:.1f} ({bf16 / fp32:.2f}x); bf16 frames differ "
          f"from fp32's by {error.mean():.2f} grey levels on average, 99th percentile {np.percentile(error, 99):.0f}, "
          f"max {error.max()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu,paper", help="comma list of model presets (random weights)")
    parser.add_argument("--shipped", action="store_true", help="also the shipped generator (after the presets)")
    parser.add_argument("--rounds", default="30,9", help="comma list: interleaved rounds per preset, then shipped")
    parser.add_argument("--fp16-presets", default="cpu", help="presets also timed in fp16 (slow on CPUs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (reenact's torch_threads default: 1)")
    parser.add_argument("--driver", default=None, help="driver video for the render stage (default: skip it)")
    parser.add_argument("--frames", default="150,30", help="comma list: driven frames per preset, then shipped "
                        "(render stage)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine(CPU)}")
    presets, rounds = [p for p in args.presets.split(",") if p], [int(r) for r in args.rounds.split(",")]
    frames = [int(f) for f in args.frames.split(",")]
    for preset, preset_rounds, preset_frames in zip(presets, rounds, frames):
        torch.manual_seed(0)
        measure_generator(f"{preset} preset", Generator(model_config(preset)), preset_rounds,
                          preset in args.fp16_presets.split(","))
        if args.driver:
            with tempfile.TemporaryDirectory() as tmp:
                measure_render(f"{preset} preset", preset_export(preset, Path(tmp)), args.driver, preset_frames)
    if args.shipped:
        shipped = load_generator(asset(SHIPPED_GENERATOR)).generator
        measure_generator("the shipped generator", shipped, rounds[min(len(presets), len(rounds) - 1)], False)
        if args.driver:
            measure_render("the shipped generator", asset(SHIPPED_GENERATOR), args.driver,
                           frames[min(len(presets), len(frames) - 1)])


if __name__ == "__main__":
    main()
