"""Per-frame time of the generator in onnxruntime (the `onnx` renderer) against torch eager (the
`neural` renderer), targets cached, batch 1, fp32, and the export's parity with torch. Needs the
onnx extra (pip install 'marionette[onnx]').

    python tools/bench_onnx.py                     # cpu preset, K = 1 and 8, 2 and 1 threads
    python tools/bench_onnx.py --preset tiny --rounds 5

A generator of the preset with random weights (speed does not depend on them) is exported to a
temporary folder and loaded back as the renderer would. For each thread count and K, the two
runtimes are timed in alternating rounds in one process (torch, onnx, torch, ...; a few calls
each), so that load from other jobs falls on both; the median per-call time of each is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from marionette.data.config import PreprocessConfig
from marionette.inference.export import export_generator
from marionette.inference.onnx_export import OnnxExportConfig, export_onnx
from marionette.inference.onnx_runtime import OnnxGenerator
from marionette.model.config import model_config
from marionette.model.generator import Generator


def _time(call, args: tuple, calls: int) -> list[float]:
    """Seconds of each of `calls` calls of call(*args)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--ks", default="1,8")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--rounds", type=int, default=60, help="alternating rounds per setting")
    parser.add_argument("--calls", type=int, default=1, help="calls per runtime per round")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = model_config(args.preset)
    generator = Generator(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "generator.safetensors"
        export_generator(source, generator, config, PreprocessConfig(), step=0)
        start = time.perf_counter()
        error = export_onnx(source, Path(tmp) / "onnx", OnnxExportConfig())
        print(f"{args.preset} preset: export {time.perf_counter() - start:.1f} s; max |onnxruntime - torch| "
              f"{error:.1e} at K = 1 and 8 (random inputs in [-1, 1])\n")
        print("| threads | K | torch eager ms/frame | onnxruntime ms/frame | onnx ÷ torch |\n|---:|---:|---:|---:|---:|")
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            runtime, _ = OnnxGenerator.load(Path(tmp) / "onnx", threads=threads)
            for k in (int(k) for k in args.ks.split(",")):
                s = config.image_size
                targets = torch.rand(2, 1, k, 3, s, s) * 2 - 1
                driver = torch.rand(1, 3, s, s) * 2 - 1
                caches = (generator.encode_targets(*targets), runtime.encode_targets(*targets))
                times: tuple[list[float], list[float]] = ([], [])
                for _ in range(args.rounds):
                    times[0].extend(_time(generator.generate, (driver, caches[0]), args.calls))
                    times[1].extend(_time(runtime.generate, (driver, caches[1]), args.calls))
                ms = [1000 * statistics.median(t) for t in times]
                print(f"| {threads} | {k} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[1] / ms[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
