"""One training step (paper §Training), shared by the training loop and `marionette bench train`:
G forward -> D step (zero D's gradients, hinge loss on real vs detached fake, optional clipping,
Adam) -> G step (adversarial + feature matching + perceptual (+ pixel) through the updated D,
whose weights are frozen for this pass, and the painted image's own terms for the warp-guided
blend correction, and the region terms; optional clipping, Adam) -> EMA update. When no term
needs the discriminator (adversarial, feature matching and the mouth's weights 0) it is never run:
no D step, no D pass in the G step (ours: the recipe CPU runs use, at a fifth less time). During the
first `d_warmup_steps` (ours) only D learns: G's forward runs without a graph and there is no G step. On log steps it
also returns the diagnostics of training/diagnostics.py. A `Clock` (the benchmark's) times its
phases; without one nothing is timed."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from marionette.data.episodes import Episode
from marionette.model.losses import DiscriminatorLosses, GeneratorLosses, Objective
from marionette.training import diagnostics
from marionette.training.checkpoint import Networks
from marionette.training.config import TrainConfig

PHASES = ("G forward", "D step", "G losses", "G backward", "optimizers", "EMA")  # a step's timed phases, in order


class Clock:
    """Wall seconds per named phase, summed over calls; the device's queue is drained at each
    phase's start and end, so a GPU's work lands in the phase that queued it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.current: str | None = None  # the phase running now

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        start, self.current = time.perf_counter(), name
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - start
            self.current = None


@dataclass
class StepResult:
    d_losses: DiscriminatorLosses | None  # None when the objective does not use D
    g_losses: GeneratorLosses | None  # None on D's warm-up steps
    k: int  # targets per episode in this batch
    diagnostics: dict[str, float] = field(default_factory=dict)  # on diagnosed steps only


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


@dataclass
class TrainStep:
    nets: Networks  # the raw networks and optimizers
    g_train: nn.Module  # the generator as trained: nets.generator, or its DDP wrapper under torchrun
    objective: Objective  # holds D (or its DDP wrapper) for the D step
    config: TrainConfig
    device: torch.device
    autocast: bool  # bf16 autocast of the forward passes
    teacher: nn.Module | None = None  # ours: the frozen generator the distill term compares with (loss.distill_weight)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def __call__(self, batch: Episode, step: int, lr_scale: float = 1.0, diagnose: bool = False,
                 clock: Clock | None = None) -> StepResult:
        """Train on `batch` as step number `step` (0-based, for the EMA's ramp); `lr_scale` scales
        both learning rates; `diagnose`: also compute the diagnostics (log steps)."""
        nets, t, d = self.nets, self.config, self.device
        phase = clock.phase if clock is not None else lambda name: contextlib.nullcontext()
        targets = batch.target_images.to(d, non_blocking=True)  # (B, K, 3, S, S)
        target_landmarks = batch.target_landmark_images.to(d, non_blocking=True)  # (B, K, 3, S, S)
        driver_landmarks = batch.driver_landmark_image.to(d, non_blocking=True)  # (B, 3, S, S)
        real = batch.driver_image.to(d, non_blocking=True)  # (B, 3, S, S): the ground truth
        landmarks = batch.driver_landmarks.to(d, non_blocking=True)  # (B, 68, 3) in crop pixels
        warp = batch.warp_image.to(d, non_blocking=True) if nets.generator.config.warp_guided else None  # (B, 3, S, S)
        for optimizer, lr in ((nets.opt_g, t.lr_g), (nets.opt_d, t.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_scale
        found: dict[str, float] = {}
        warmup = step < t.d_warmup_steps and self.objective.uses_discriminator  # D learns alone

        with phase("G forward"), self._autocast(), torch.set_grad_enabled(not warmup):
            output = self.g_train(targets, target_landmarks, driver_landmarks, warp)
        fake = output.image  # (B, 3, S, S)
        teacher = None
        if self.teacher is not None and not warmup:
            with phase("G forward"), self._autocast(), torch.no_grad():
                teacher = self.teacher(targets, target_landmarks, driver_landmarks, warp).image  # (B, 3, S, S)

        d_losses = None
        if self.objective.uses_discriminator:
            with phase("D step"):
                nets.opt_d.zero_grad(set_to_none=True)
                with self._autocast():
                    d_losses = self.objective.discriminator_step(real, fake, driver_landmarks, landmarks)
                d_losses.total.backward()
            if diagnose:
                found |= {"grad/D": diagnostics.gradient_norm(nets.discriminator),
                          **diagnostics.discriminator_scores(d_losses)}
            with phase("optimizers"):
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(nets.discriminator.parameters(), t.grad_clip)
                nets.opt_d.step()
        if warmup:
            return StepResult(d_losses=d_losses, g_losses=None, k=int(targets.shape[1]), diagnostics=found)

        with phase("G losses"):
            nets.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                g_losses = self.objective.generator_step(fake, real, driver_landmarks, output.painted, landmarks, teacher)
        if diagnose:
            found |= diagnostics.output_gradient_norms(g_losses, self.objective.config, fake, output.painted)
        with phase("G backward"):
            g_losses.total.backward()
        if diagnose:
            found |= diagnostics.generator_gradient_norms(nets.generator)
            if warp is not None:
                found |= diagnostics.correction_stats(output, warp)
        with phase("optimizers"):
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(nets.generator.parameters(), t.grad_clip)
            nets.opt_g.step()

        with phase("EMA"):
            update_ema(nets.ema, nets.generator, decay=min(t.ema_decay, (1 + step) / (10 + step)))
        return StepResult(d_losses=d_losses, g_losses=g_losses, k=int(targets.shape[1]), diagnostics=found)
