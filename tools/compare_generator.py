"""The generator of an earlier commit against this tree's, side by side in one process: same
weights, same inputs, per-frame time (targets cached, batch 1, fp32) in shuffled interleaved
rounds, medians. How the README's before/after figures of issue 18 were measured.

    python tools/compare_generator.py --before 3fe8cdf [--rounds 15] [--threads 2]

The earlier commit's package is taken with `git archive` into a temporary folder and renamed
`marionette_before`, so both import side by side.
"""

from __future__ import annotations

import argparse
import importlib
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

import marionette.model as after

CASES = (("paper", 1), ("paper", 8), ("cpu", 1))


def load_before(commit: str, folder: Path):  # noqa: ANN201 (a module)
    """marionette.model as of `commit`, imported as marionette_before.model."""
    archive = subprocess.run(["git", "archive", commit, "src/marionette"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "marionette_before"
    (folder / "src" / "marionette").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\bmarionette\b(?=[.\s])", "marionette_before", path.read_text()))
    sys.path.insert(0, str(folder))
    return importlib.import_module("marionette_before.model")


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's figures: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before, Path(tmp))
        calls = {}
        for preset, k in CASES:
            torch.manual_seed(0)
            old = before.Generator(before.model_config(preset)).eval()
            new = after.Generator(after.model_config(preset)).eval()
            new.load_state_dict(old.state_dict())
            s = old.config.image_size
            images, landmarks = torch.rand(2, 1, k, 3, s, s) * 2 - 1  # (1, K, 3, s, s) each
            driver = torch.rand(1, 3, s, s) * 2 - 1  # (1, 3, s, s)
            old_cache, new_cache = old.encode_targets(images, landmarks), new.encode_targets(images, landmarks)
            gap = (old.generate(driver, old_cache).image - new.generate(driver, new_cache).image).abs().max().item()
            print(f"{preset} K={k}: largest |before - after| of the image {gap:.1e}", flush=True)
            calls[(preset, k, "before")] = lambda g=old, d=driver, c=old_cache: g.generate(d, c)
            calls[(preset, k, "after")] = lambda g=new, d=driver, c=new_cache: g.generate(d, c)
        times: dict[tuple, list[float]] = {key: [] for key in calls}
        keys = list(calls)
        for key in keys:  # warm-up
            calls[key]()
        for _ in range(args.rounds):
            random.shuffle(keys)
            for key in keys:
                start = time.perf_counter()
                calls[key]()
                times[key].append(time.perf_counter() - start)
    print(f"\n{args.threads} torch thread(s), wall clock, median of {args.rounds} shuffled rounds\n")
    print(f"| preset | K | before ({args.before}) ms/frame | after ms/frame | after / before |\n|---|---:|---:|---:|---:|")
    for preset, k in CASES:
        b, a = (statistics.median(times[(preset, k, when)]) * 1000 for when in ("before", "after"))
        print(f"| {preset} | {k} | {b:.1f} | {a:.1f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
