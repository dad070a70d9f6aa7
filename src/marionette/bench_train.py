"""`marionette bench train`: where a training step's time goes, printed as one markdown table.

Every configuration (preset x image size x batch x K x precision) builds the preset's networks, objective
and episode loader and runs the training loop's own step (training/step.py), so the figures are
those of `marionette train`. Per step: the loader (making one batch in this process, the warp
image included for the warp-guided model: what a DataLoader worker spends on it), G forward, the
D step (two D passes and their backward), G's losses split into D on the output (its score is the
adversarial term, its features feed feature matching), D on the truth (feature matching's
targets), the VGG (perceptual) and the rest, G's backward, both optimizers' steps (and any
clipping) and the EMA update. After one untimed warm-up step each, every round times one step of
each configuration in a shuffled order and the median over rounds is reported, so that other
processes sharing the machine slow every row alike; the load average is printed beside them.

bf16 rows (autocast, as `autocast=true` trains on CUDA) are measured only where the device runs
bf16 natively: on a CPU, the avx512_bf16 or amx_bf16 flag in /proc/cpuinfo; elsewhere the report
says why they are missing. Without `--data`, a small synthetic dataset at each size (noise
textures on the mean face mesh, slightly turned per frame) stands in for real clips, labelled as
such: the loader then decodes and draws what it would for real crops.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from marionette.bench_model import machine
from marionette.data.config import EpisodeConfig, PreprocessConfig
from marionette.data.episodes import Episode, EpisodeBatchSampler, EpisodeDataset
from marionette.data.manifest import Manifest, build_manifest, clip_path
from marionette.data.store import ClipInfo, encode_jpeg, write_clip
from marionette.devices import native_bf16
from marionette.errors import InputError
from marionette.landmarks.frontal import frontal_mesh
from marionette.landmarks.layout import mesh_to_ibug68
from marionette.landmarks.pose import head_pose
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator
from marionette.model.losses import build_objective
from marionette.training.checkpoint import Networks
from marionette.training.config import BenchTrainConfig, run_config
from marionette.training.step import Clock, TrainStep

# the G losses' parts timed through forward hooks, and what is left of the phase
D_OUTPUT, D_TRUTH, VGG, REST = "D on output (adversarial + FM)", "D on truth (FM)", "VGG (perceptual)", "other G losses"
COLUMNS = ("loader", "G forward", "D step", D_OUTPUT, D_TRUTH, VGG, REST, "G backward", "optimizers", "EMA")
def synthetic_dataset(root: Path, size: int, clips: int = 4, frames: int = 12, seed: int = 0) -> Path:
    """A dataset of `clips` synthetic clips at `size` px: smooth noise textures under the mean face
    mesh (the landmark transformer's reference), turned a little per frame. Episodes drawn from
    it cost what real ones do (JPEG decoding, landmark images, the warp); their faces are not faces."""
    rng = np.random.default_rng(seed)
    reference = frontal_mesh()  # (478, 3): centred, inter-ocular distance 1
    extent = np.ptp(reference[:, :2], axis=0).max()
    scale = size / (PreprocessConfig.crop_scale * extent)  # crop side = crop_scale x the face's extent
    centre = np.array([size / 2, size / 2 - PreprocessConfig.crop_shift * extent * scale, 0.0])
    for c in range(clips):
        texture = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size),
                             interpolation=cv2.INTER_CUBIC)  # (S, S, 3)
        jpegs, meshes = [], []
        for _ in range(frames):
            yaw, pitch, roll = np.radians(rng.uniform(-15, 15)), np.radians(rng.uniform(-8, 8)), \
                np.radians(rng.uniform(-5, 5))
            ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
            rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
            rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
            meshes.append(reference @ (rz @ rx @ ry).T * scale + centre)  # (478, 3) crop pixels
            noise = rng.integers(-8, 9, texture.shape)
            jpegs.append(encode_jpeg(np.clip(texture.astype(int) + noise, 0, 255).astype(np.uint8), 95))
        mesh = np.stack(meshes).astype(np.float32)  # (F, 478, 3)
        ibug = mesh_to_ibug68(mesh)  # (F, 68, 3)
        info = ClipInfo(f"synthetic{c}", f"synthetic{c}", "synthetic", frames, size, 25.0, frames, size, size)
        write_clip(clip_path(root, info.clip_id), info, jpegs, {
            "frame_index": np.arange(frames, dtype=np.int64), "mesh": mesh, "ibug68": np.ascontiguousarray(ibug),
            "pose": head_pose(ibug), "boxes": np.tile(np.float32([size / 2, size / 2, size]), (frames, 1))})
    build_manifest(root, PreprocessConfig(size=size, split="hash", val_fraction=0.0, test_fraction=0.0))
    return root


@dataclass
class _Setup:
    """One configuration: the loop's step on its own networks, and an endless source of batches."""

    preset: str
    size: int
    batch: int
    k: int
    precision: str
    step: TrainStep
    batches: Iterator[Episode]
    steps: int = 0
    times: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per round: seconds per column
    loads: list[float] = dataclasses.field(default_factory=list)  # 1-minute load average after each round's step

    def run(self, clock: Clock) -> dict[str, float]:
        """One step, timed on `clock`: seconds per column and `step` (all of it)."""
        with clock.phase("loader"):
            batch = next(self.batches)
        self.step(batch, self.steps, clock=clock)
        self.steps += 1
        seconds = dict(clock.seconds)
        seconds[REST] = seconds.pop("G losses") - sum(seconds.get(c, 0.0) for c in (D_OUTPUT, D_TRUTH, VGG))
        seconds["step"] = sum(seconds.values())
        return seconds


def _endless(dataset: EpisodeDataset, batch: int, config: EpisodeConfig) -> Iterator[Episode]:
    """Batches of the dataset's episodes, epoch after epoch, collated in this process."""
    sampler = EpisodeBatchSampler(len(dataset), batch, config)
    for epoch in range(1_000_000):
        sampler.set_epoch(epoch)
        for keys in sampler:
            yield default_collate([dataset[key] for key in keys])


def _watch(step: TrainStep, clock_of: Callable[[], Clock | None]) -> None:
    """Forward hooks that time, inside the G-losses phase, D's passes (with gradients: on the
    output; without: on the truth) and the perceptual networks'."""
    objective = step.objective

    def timed(module: torch.nn.Module, label: Callable[[], str]) -> None:
        start: list[float] = []

        def before(*_: object) -> None:
            clock = clock_of()
            if clock is not None and clock.current == "G losses":
                clock.sync()
                start.append(time.perf_counter())

        def after(*_: object) -> None:
            clock = clock_of()
            if start:
                clock.sync()
                clock.seconds[label()] += time.perf_counter() - start.pop()

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    timed(objective.critic, lambda: D_OUTPUT if torch.is_grad_enabled() else D_TRUTH)
    for network in (objective.perceptual, objective.face_perceptual):
        if network is not None:
            timed(network, lambda: VGG)


def _setup(config: BenchTrainConfig, preset: str, data: Path, size: int, batch: int, k: int, precision: str,
           device: torch.device, current: list[Clock | None]) -> _Setup:
    guided = [f"model.warp_guided={config.warp_guided}"] if not run_config(preset).model.warp_guided else []
    run = run_config(preset, [f"model.image_size={size}", *guided, f"batch_size={batch}", f"episodes.k_min={k}",
                              f"episodes.k_max={k}"])
    torch.manual_seed(0)
    generator, discriminator = Generator(run.model).to(device), Discriminator(run.model).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    t = run.train
    nets = Networks(generator, discriminator, ema, torch.optim.Adam(generator.parameters(), lr=t.lr_g, betas=t.betas),
                    torch.optim.Adam(discriminator.parameters(), lr=t.lr_d, betas=t.betas))
    objective = build_objective(run.loss, discriminator).to(device)
    step = TrainStep(nets, generator, objective, t, device, autocast=precision == "bf16")
    _watch(step, lambda: current[0])
    episodes = dataclasses.replace(run.episodes, warp=run.model.warp_guided)
    return _Setup(preset, size, batch, k, precision, step, _endless(EpisodeDataset(data, "train", episodes), batch, episodes))


def measure(config: BenchTrainConfig, data: Path | None, precisions: list[str], device: torch.device,
            tmp: Path) -> list[_Setup]:
    """Every configuration's timed rounds (`data`: a dataset at one of the sizes, else synthetic)."""
    folders = {}
    for size in config.sizes:
        if data is None:
            folders[size] = synthetic_dataset(tmp / f"synthetic{size}", size)
        else:
            crops = Manifest.load(data).config.size
            if crops != size:
                raise InputError(f"{data}: crops are {crops} px; bench train needs --set sizes={crops} with it")
            folders[size] = data
    current: list[Clock | None] = [None]  # the clock of the step running now, read by the hooks
    setups = [_setup(config, preset, folders[s], s, b, k, p, device, current) for preset in config.presets
              for s in config.sizes for b in config.batches for k in config.ks for p in precisions]

    def timed(setup: _Setup) -> dict[str, float]:
        clock = Clock(device)
        current[0] = clock
        try:
            return setup.run(clock)
        finally:
            current[0] = None

    for setup in setups:
        timed(setup)  # warm-up: first allocations, the warp renderer, lazy loading
    order = list(range(len(setups)))
    shuffle = random.Random(0).shuffle
    for _ in range(config.rounds):
        shuffle(order)
        for i in order:
            setups[i].times.append(timed(setups[i]))
            setups[i].loads.append(os.getloadavg()[0])
    return setups


def _median(setup: _Setup, column: str) -> float:
    return statistics.median(t.get(column, 0.0) for t in setup.times)


def table(setups: list[_Setup]) -> str:
    head = ["preset", "model", "px", "batch", "K", "precision", *(f"{c} ms" for c in COLUMNS), "step ms", "÷ fp32", "episodes/s",
            "episodes/s, loader ahead", "dominant phase", "load (1 min)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---|" + "---:|" * (len(COLUMNS) + 4) + "---|---:|"]
    fp32 = {(s.preset, s.size, s.batch, s.k): _median(s, "step") for s in setups if s.precision == "fp32"}
    for s in setups:
        step = _median(s, "step")
        compute = statistics.median(t["step"] - t["loader"] for t in s.times)
        phases = {c: _median(s, c) for c in COLUMNS}
        dominant = max(phases, key=phases.get)
        ratio = fp32.get((s.preset, s.size, s.batch, s.k))
        model = s.step.nets.generator.config
        cells = [s.preset, f"warp-guided, {model.correction}" if model.warp_guided else "faithful", str(s.size),
                 str(s.batch), str(s.k), s.precision, *(f"{1000 * phases[c]:.0f}" for c in COLUMNS),
                 f"{1000 * step:.0f}", f"{step / ratio:.2f}" if ratio else "", f"**{s.batch / step:.2f}**",
                 f"{s.batch / compute:.2f}", f"{dominant} ({phases[dominant] / step:.0%})",
                 f"{statistics.mean(s.loads):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(config: BenchTrainConfig, data: Path | None = None) -> str:
    """Measure every configuration of `config` on `data` (None: synthetic clips); the markdown report."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("bench train: device=cuda but torch sees no CUDA device here")
    bf16, why = native_bf16(device)
    precisions = [p for p in config.precisions if p == "fp32" or bf16]
    if not precisions:
        raise InputError(f"bench train: precisions={','.join(config.precisions)} but {why}; add fp32")
    threads = torch.get_num_threads()
    before = os.getloadavg()
    try:
        torch.set_num_threads(config.threads or threads)
        where = machine(device)  # with the torch threads the steps run on
        with tempfile.TemporaryDirectory() as tmp:
            setups = measure(config, data, precisions, device, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    after = os.getloadavg()
    source = (f"dataset `{data}` (train split)" if data is not None else
              "synthetic clips (noise textures on the mean face mesh, 4 clips of 12 frames per size; not faces)")
    notes = [f"bf16 (autocast): {why}" + ("" if bf16 else ": not measured") if "bf16" in config.precisions else "",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in before)}; after: "
             f"{', '.join(f'{v:.1f}' for v in after)}."]
    return "\n\n".join(line for line in [
        "# Training step benchmark",
        f"Machine: {where}; device {device.type}.",
        f"Presets {', '.join(f'`{p}`' for p in config.presets)}, each with its loss and episode settings"
        f"{' (faithful ones made warp-guided)' if config.warp_guided else ''}; data: {source}. Milliseconds "
        f"per step, median of {config.rounds} interleaved rounds after one warm-up step each; episodes/s counts "
        "the loader in this process (episodes/s, loader ahead: without it, as if DataLoader workers kept ahead "
        "on cores of their own); ÷ fp32: step time over the fp32 row's.",
        *notes,
        table(setups),
    ] if line)
