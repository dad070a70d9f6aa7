"""`marionette bench`: throughput of the data layer on this machine, printed as markdown tables.

Timings belong here, not in tests. Figures depend on the machine; the table names it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from marionette import bench_model, bench_train
from marionette.data.config import EpisodeConfig, PreprocessConfig
from marionette.data.episodes import Episode, EpisodeBatchSampler, EpisodeDataset
from marionette.data.preprocess import preprocess
from marionette.errors import InputError
from marionette.inference.config import RENDERERS
from marionette.inference.io import DriverSource, FrameWriter, open_driver
from marionette.inference.pipeline import STAGES, ReenactConfig, ReenactPipeline, RunStats
from marionette.landmarks.mesh import FaceMesh, frame_chunks, mesh_placement
from marionette.media import atomic_path, iter_video, probe_video
from marionette.resources import SAMPLE_DRIVER, SAMPLE_TARGET, SHIPPED_GENERATOR, asset
from marionette.training.config import BenchTrainConfig


def machine() -> str:
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def _best_rate(work: Callable[[], int], repeats: int) -> str:
    """Items per second of `work` (which returns its item count), best of `repeats` runs: the
    least disturbed by whatever else the machine is doing."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = work()
        best = max(best, n / (time.perf_counter() - start))
    return f"{best:.1f}"


def bench_preprocess(video: Path, workers: int, repeats: int, copies: int = 6, device: str = "cpu"
                     ) -> list[tuple[str, str]]:
    """Frames/s of decoding alone, decoding + face mesh tracking (as preprocess tracks: MESH_BATCH
    frames per call), and the whole dataset builder (`copies` copies of the video, so that every
    worker is busy); the face mesh on `device` (a device setting)."""
    info = probe_video(video)
    n = sum(1 for _ in iter_video(video))
    backend, where = mesh_placement(device=device)

    def decode() -> int:
        return sum(1 for _ in iter_video(video))

    def track() -> int:
        with FaceMesh(video=True, max_faces=PreprocessConfig.max_faces, backend=backend, device=where) as mesh:
            for chunk in frame_chunks(iter_video(video)):
                mesh.detect_batch(np.stack(chunk))  # (B, H, W, 3) frames
        return n

    rows = [("decode only (1 process)", _best_rate(decode, repeats)),
            (f"decode + face mesh tracking ({backend} on {where}, 1 process)", _best_rate(track, repeats))]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(copies):
            (src / f"copy{i}{video.suffix}").symlink_to(video.resolve())
        for w in sorted({1, workers}):
            def build(w: int = w) -> int:
                out = Path(tempfile.mkdtemp(dir=tmp))
                preprocess(src, out, PreprocessConfig(), workers=w, progress=False, device=where)
                return n * copies

            rows.append((f"`marionette preprocess`, {w} worker(s), {copies} clips", _best_rate(build, repeats)))
    return [(f"{name}: {info.width}x{info.height} video, {n} frames", rate) for name, rate in rows]


def bench_episodes(video: Path, workers_list: list[int], episodes: int, repeats: int, k: int = 8
                   ) -> list[tuple[str, str]]:
    """Episodes/s (K targets + driver, 256 px, landmark images rendered) from a dataset built from
    4 copies of `video`, batches of 8, after one warm-up batch."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, data = Path(tmp) / "src", Path(tmp) / "data"
        src.mkdir()
        for i in range(4):
            (src / f"copy{i}{video.suffix}").symlink_to(video.resolve())
        preprocess(src, data, PreprocessConfig(), workers=2, progress=False)
        config = EpisodeConfig(k_min=k, k_max=k)
        dataset = EpisodeDataset(data, "all", config)
        for workers in workers_list:
            batches = _endless(EpisodeBatchSampler(len(dataset), 8, config))
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers)
            it = iter(loader)
            next(it)  # warm-up: worker start-up, first file opens

            def load(it: Iterator[Episode] = it) -> int:
                n = 0
                while n < episodes:
                    n += len(next(it).target_clip)
                return n

            rows.append((f"episodes K={k}, 256 px, {workers} DataLoader workers", _best_rate(load, repeats)))
            del it
    return rows


def _endless(sampler: EpisodeBatchSampler) -> Iterator[list[tuple[int, int, int]]]:
    """Batches from every epoch in turn, without end."""
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from sampler


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class _LoopedDriver(DriverSource):
    """A long driver: the same video played `loops` times (streamed, never held)."""

    loops: int = 1

    def frames(self) -> Iterator[tuple[np.ndarray, None]]:
        for _ in range(self.loops):
            for frame, _ in super().frames():
                yield frame, None


def _reenact_row(config: ReenactConfig, video: Path, loops: int, checkpoint: Path,
                 tmp: str) -> tuple[RunStats, dict[int, float], str]:
    """One run of `reenact` with `config` (pasted into the bundled portrait, H.264 output): its
    stats, resident memory (MB) after 100 frames and at the end, and where a generator ran."""
    pipeline = ReenactPipeline(config, checkpoint=checkpoint)
    pipeline.set_targets([str(asset(SAMPLE_TARGET))])
    source = open_driver(str(video))
    driver = _LoopedDriver(source.spec, source.rate, None, loops=loops)
    stats, rss = RunStats(), {}

    def written(_: np.ndarray) -> None:
        if stats.frames == 100:
            rss[100] = _rss_mb()

    with FrameWriter(Path(tempfile.mkdtemp(dir=tmp)) / "out.mp4", source.rate, {}) as writer:
        pipeline.record(driver, writer, stats, written)
    rss[stats.frames] = _rss_mb()
    where = f", {pipeline.renderer.placement}" if pipeline.renderer.placement is not None else ""
    every = getattr(pipeline.renderer, "every", 1)
    return stats, rss, where + (f", generator_every={every}" if every > 1 else "")


def _onnx_export(weights: Path, tmp: str) -> Path | None:
    """`weights` exported to ONNX in `tmp` for the onnx row; None (the row is left out, saying
    why) without the `onnx` extra."""
    from marionette.inference.onnx_export import export_onnx

    folder = Path(tmp) / "onnx"
    try:
        export_onnx(weights, folder)
    except InputError as e:
        print(f"no onnx row: {e}")
        return None
    return folder


def bench_reenact(video: Path, loops: int, checkpoint: str | None = None, config: ReenactConfig | None = None) -> str:
    """End-to-end frames/s (wall clock) of `marionette reenact` with each renderer of RENDERERS
    but the baseline, with each stage's busy time (stages overlap, so these add up to more than
    the wall clock), the CPU time of every thread (what a shared machine's other jobs compete
    for) and resident memory early and late in a long driver. The neural renderers run
    `checkpoint` (the onnx one its ONNX export), or, without one, the shipped generator, as
    `reenact` does; `config`: reenact's settings (its renderer is replaced by each row's)."""
    info = probe_video(video)
    config = config or ReenactConfig()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(checkpoint) if checkpoint else asset(SHIPPED_GENERATOR)
        checkpoints = {"": None, "export": weights, "onnx": _onnx_export(weights, tmp)}  # by RendererSpec.checkpoint
        runs = {name: _reenact_row(dataclasses.replace(config, renderer=name), video, loops, checkpoints[spec.checkpoint], tmp)
                for name, spec in RENDERERS.items()  # a row per renderer but the baseline, none for a failed export
                if not spec.baseline and not (spec.checkpoint and checkpoints[spec.checkpoint] is None)}
    about = f"`{weights.name}`" if checkpoint else "the shipped generator"
    head = (f"reenact: {info.width}x{info.height} driver played {loops}x, pasted into the bundled portrait, "
            f"H.264; busy ms/frame per stage, the CPU time of every thread, then the wall clock")
    columns = ["renderer", *STAGES, "CPU ms/frame", "wall ms/frame", "frames/s (wall clock)",
               "memory MB: at frame 100 / at the end (frames)"]

    def cells(name: str, stats: RunStats, rss: dict[int, float], where: str) -> list[str]:
        ms = [stats.seconds[stage] for stage in STAGES] + [stats.cpu, stats.wall]
        label = f"{name} ({about}{where})" if RENDERERS[name].checkpoint else name
        return [label, *(f"{stats.per_frame(s):.1f}" for s in ms),
                f"**{stats.frames / stats.wall:.1f}**", f"{rss.get(100, rss[stats.frames]):.0f} / "
                f"{rss[stats.frames]:.0f} ({stats.frames})"]

    rows = [columns, ["---"] + ["---:"] * (len(columns) - 1)] + [cells(name, *run) for name, run in runs.items()]
    return f"{head}\n\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)


def run(what: str, video: str | None = None, workers: list[int] = (0, 2), episodes: int = 200,
        repeats: int = 3, checkpoint: str | None = None, presets: list[str] = ("tiny", "cpu", "paper"),
        ks: list[int] = (1, 2, 4, 8), batches: list[int] = (1,), precisions: list[str] = ("fp32",),
        device: str = "cpu", rounds: int = 15, out: Path | None = None,
        reenact: ReenactConfig | None = None, train: BenchTrainConfig | None = None, data: str | None = None) -> None:
    """Print the benchmark `what` (preprocess, episodes, reenact, model, train or all but model and
    train) as markdown tables; `video`: the driver or source video (None: the demo's sample clip);
    `out`: also write the model or train report there; `reenact`: the reenact benchmark's settings
    (None: the defaults); `train`, `data`: the train benchmark's settings and dataset (None:
    the defaults, synthetic clips)."""
    if what in ("model", "train"):
        report = (bench_model.report(list(presets), list(ks), list(batches), list(precisions), device, rounds)
                  if what == "model" else bench_train.report(train or BenchTrainConfig(), Path(data) if data else None))
        print(report)
        if out:
            with atomic_path(out) as tmp:
                tmp.write_text(report + "\n")
        return
    path = Path(video) if video else asset(SAMPLE_DRIVER)
    rows = []
    if what in ("preprocess", "all"):
        rows += [(name, rate, "frames/s") for name, rate in bench_preprocess(path, max(max(workers), 1), repeats,
                                                                             device=device)]
    if what in ("episodes", "all"):
        rows += [(name, rate, "episodes/s") for name, rate in bench_episodes(path, list(workers), episodes, repeats)]
    print(f"\nmachine: {machine()}")
    if rows:
        print(f"\nbest of {repeats} runs\n\n| what | throughput | unit |\n|---|---:|---|")
        for name, rate, unit in rows:
            print(f"| {name} | {rate} | {unit} |")
    if what in ("reenact", "all"):
        print("\n" + bench_reenact(path, loops=5, checkpoint=checkpoint, config=reenact))
