"""The training loop (paper §Training: meta-learning on episodes of talking-head videos), one
function top to bottom: setup, build, resume, loop {batch, step (training/step.py: D step, G step,
EMA), log, samples, validation, checkpoint}. Run it with `marionette train` (plain python or torchrun).

Run folder RUN/:
  config.json        the resolved run config (a rerun must match it, except `steps`, `decay_steps`, `max_minutes`),
                     the dataset and the generator export the run started from (`init`), if any: with
                     loss.distill_weight > 0 (ours) also the frozen teacher whose images the run learns
  revisions.txt      git revision of the code at every (re)start
  stats.jsonl        one JSON line per log step (losses, diagnostics, episodes/s) and per validation
  samples/           step_N.png grids: K targets | driver landmarks | warp | output | ground truth
  checkpoints/       step_N/ folders (see checkpoint.py), the last `keep_last` kept
  export/generator.safetensors   the EMA generator for inference (`load_generator`)
  tensorboard/       only with tensorboard=true
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from marionette.config import to_dict
from marionette.data.episodes import EpisodeBatchSampler, EpisodeDataset
from marionette.data.manifest import Manifest
from marionette.devices import native_bf16
from marionette.errors import InputError
from marionette.inference.export import ExportedGenerator, export_generator, load_generator
from marionette.media import atomic_path
from marionette.model.discriminator import Discriminator
from marionette.model.generator import Generator
from marionette.model.losses import build_objective
from marionette.outputs import check_work_folder
from marionette.provenance import save_marked_image
from marionette.training import distributed
from marionette.training.checkpoint import (
    Networks,
    list_checkpoints,
    load_checkpoint,
    read_state,
    remove_partial,
    save_checkpoint,
)
from marionette.training.config import RunConfig, TrainConfig
from marionette.training.step import TrainStep
from marionette.training.validation import Validator, plot_validation

log = logging.getLogger(__name__)


class StepBatches(Sampler[list[tuple[int, int, int]]]):
    """Endless batches of episode keys, epoch after epoch, starting at batch `start` overall, so a
    resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, sampler: EpisodeBatchSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        epoch, skip = divmod(self.start, len(self.sampler))
        while True:
            self.sampler.set_epoch(epoch)
            for i, keys in enumerate(self.sampler):
                if i >= skip:
                    yield keys
            epoch, skip = epoch + 1, 0


@dataclass(frozen=True)
class TrainResult:
    step: int  # the step training stopped at
    networks: Networks  # raw (unwrapped) networks and optimizers, on this rank


def git_revision() -> str:
    """`git describe`-like revision of the code (with -dirty), or "unknown" outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def learning_rate_scale(step: int, t: TrainConfig) -> float:
    """Factor on lr_g and lr_d for the update after `step` steps: 1, then over the last
    `decay_steps` steps linearly down to 1 / decay_steps at the final update (ours; pix2pix's schedule)."""
    return 1.0 if t.decay_steps <= 0 else min(1.0, (t.steps - step) / t.decay_steps)


def read_run_file(run: Path) -> dict:
    """The run folder's config.json ({} in a new run); one line naming it when it is not a
    marionette run's (a folder of something else that happens to hold a config.json)."""
    path = run / "config.json"
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
        RunConfig.from_dict(saved["config"])
        return saved
    except (ValueError, KeyError, TypeError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise InputError(f"{path}: not a marionette training run's config ({why}); give a new or empty --run folder"
                         ) from None


def training_autocast(t: TrainConfig, device: torch.device) -> bool:
    """Whether the forward passes run under bf16 autocast: `autocast` on CUDA; `cpu_autocast` on a
    CPU, only where it runs bf16 natively (elsewhere one warning line, and fp32)."""
    if device.type == "cuda":
        return t.autocast
    if not t.cpu_autocast:
        return False
    native, why = native_bf16(device)
    if not native:
        log.warning("cpu_autocast: %s; training in fp32", why)
    return native


def check_same_run(saved: dict, config: RunConfig, run: Path) -> None:
    """A rerun in an existing run folder must use the same config; only the schedule's length
    (`steps`, `decay_steps`) and the sitting's budget (`max_minutes`) may change, so a run can be
    extended or its rates decayed from here."""
    old = RunConfig.from_dict(saved)
    old = dataclasses.replace(old, train=dataclasses.replace(old.train, steps=config.train.steps,
                                                              decay_steps=config.train.decay_steps,
                                                              max_minutes=config.train.max_minutes))
    if old != config:
        new_d, old_d = config.to_dict(), old.to_dict()
        diff = [f"{s}.{k}: {old_d[s][k]} -> {new_d[s][k]}" for s in ("model", "loss", "train", "episodes")
                for k in new_d[s] if new_d[s][k] != old_d[s][k]] or [f"preset: {old.preset} -> {config.preset}"]
        raise InputError(f"{run}: the run folder holds a different config ({'; '.join(diff)}); use a new --run")


DISCRIMINATOR_SETTINGS = ("disc_channels", "disc_max_channels", "mouth_disc_channels")  # not in an export's weights


def load_init(init: Path, config: RunConfig) -> ExportedGenerator:
    """The generator export a new run starts from; one line when it is not an export or its model
    config differs from the run's in anything but image_size (ours: the weights are convolutions and
    attention under a size-relative positional encoding, so a run at 256 px can continue one at 128)
    or another refiner width (ours: Generator.start_from grows it, keeping the export's function, or
    shrinks it to its most read channels); the discriminator's sizes are the run's own (it starts fresh)."""
    exported = load_generator(init)
    theirs, ours = to_dict(exported.model), to_dict(config.model)
    refines = ours["correction"] == "refine" == theirs["correction"]
    diff = "; ".join(f"{k}: {theirs[k]} in the export, {ours[k]} in the run" for k in ours
                     if theirs[k] != ours[k] and k not in ("image_size", *DISCRIMINATOR_SETTINGS)
                     and not (k == "refine_channels" and refines))
    if diff:
        raise InputError(f"{init}: the export's model config differs from the run's ({diff}); set the run's "
                         "model.KEY=VALUE to the export's")
    return exported


def train(data: Path, run: Path, config: RunConfig, progress: bool = True, init: Path | None = None) -> TrainResult:
    """Train (or resume training) on dataset `data`, writing the run folder `run`. `init`: a
    generator export that a new run's generator and its EMA start from (the discriminator and the
    optimizers start fresh); a run that resumes from its checkpoints ignores it."""
    t = config.train
    # ---- setup: process group, device, run folder ----------------------------------------------
    device = distributed.init()
    rank, world = distributed.rank(), distributed.world_size()
    if t.batch_size % world:
        raise InputError(f"batch_size {t.batch_size} is not divisible by the {world} processes")
    use_autocast = training_autocast(t, device)
    check_work_folder(run, [data], ("config.json", "checkpoints", "stats.jsonl"), "training run")
    saved = read_run_file(run)
    preprocess = Manifest.load(data).config  # missing dataset: one-line InputError
    if preprocess.size != config.model.image_size:
        raise InputError(f"{data}: crops are {preprocess.size} px but the model needs {config.model.image_size} px "
                         f"(preprocess with --set size={config.model.image_size}, or model.image_size={preprocess.size})")
    checkpoints = list_checkpoints(run)
    if saved:
        check_same_run(saved["config"], config, run)
    if checkpoints:
        check_same_run(read_state(checkpoints[-1])["config"], config, run)
    started_from = saved.get("init")  # the export this run started from, kept across reruns
    exported = None
    if init is not None and checkpoints:
        log.warning("%s resumes from its checkpoint %s: --init %s is ignored (it only starts a new run)",
                    run, checkpoints[-1].name, init)
    elif init is not None:
        exported = load_init(init, config)
        started_from = {"export": str(init), "step": exported.step}
    teacher = None
    if config.loss.distill_weight > 0:  # ours: the export the run started from, frozen, is what it learns to draw
        if started_from is None:
            raise InputError("loss.distill_weight > 0 needs --init EXPORT: the generator whose images the run learns")
        teacher = (exported or load_init(Path(started_from["export"]), config)).generator
        teacher = teacher.to(device).eval().requires_grad_(False)
    distributed.barrier()  # every rank has checked the run folder before rank 0 writes in it
    if distributed.is_main():
        run.mkdir(parents=True, exist_ok=True)
        for path in remove_partial(run):
            log.warning("removed %s, left by an interrupted save", path)
        with atomic_path(run / "config.json") as tmp:
            tmp.write_text(json.dumps({"data": str(data), "config": config.to_dict(),
                                       **({"init": started_from} if started_from else {})}, indent=2))
        with (run / "revisions.txt").open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {git_revision()} world_size={world}"
                    + (f" init={init} (its step {exported.step})" if exported else "") + "\n")

    # ---- data: episodes with K drawn per batch in [1, k_max], each rank its own share ----------
    # a warp-guided generator reads the warp renderer's image of each episode (computed by the loader)
    dataset = EpisodeDataset(data, "train", dataclasses.replace(config.episodes, warp=config.model.warp_guided))
    if dataset.skipped:
        log.warning("%d training clips have fewer than k_max + 1 = %d frames and are skipped",
                    dataset.skipped, config.episodes.k_max + 1)
    sampler = EpisodeBatchSampler(len(dataset), t.batch_size // world, dataset.config, shuffle=True,
                                  num_replicas=world, rank=rank)
    validator = (Validator(data, "val", t.val_episodes, t.val_k, config.episodes.seed, t.batch_size, target_use=True)
                 if distributed.is_main() and t.val_every > 0 else None)

    # ---- build: networks, objective (losses live outside the networks), optimizers, EMA ---------
    # seeded here, after the data and the validator, whose first use in a process may draw numbers
    torch.manual_seed(config.episodes.seed)
    generator = Generator(config.model)
    if exported is not None:  # a new run started from an export: G (and so its EMA) from its weights
        generator.start_from(exported.generator)
    generator = generator.to(device)
    discriminator = Discriminator(config.model).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    nets = Networks(generator=generator, discriminator=discriminator, ema=ema,
                    opt_g=torch.optim.Adam(generator.parameters(), lr=t.lr_g, betas=t.betas),
                    opt_d=torch.optim.Adam(discriminator.parameters(), lr=t.lr_d, betas=t.betas))

    # Separate DDP wrappers for G and D (each syncs its own gradients); the raw modules are saved.
    g_train = DistributedDataParallel(generator) if world > 1 else generator
    # a D step may run only one of D's parts (the mouth's patch D without the whole-image terms)
    d_train = (DistributedDataParallel(discriminator, find_unused_parameters=discriminator.mouth is not None)
               if world > 1 else discriminator)
    # Built before resuming, so "random" perceptual weights come from the same seed in a resumed run.
    objective = build_objective(config.loss, d_train).to(device)  # perceptual weights: "random"/"none" log a warning
    train_step = TrainStep(nets, g_train, objective, t, device, autocast=use_autocast, teacher=teacher)

    # ---- resume from the last checkpoint, if any (weights are loaded in place, on every rank) ----
    start = load_checkpoint(checkpoints[-1], nets) if checkpoints else 0
    if start:
        log.info("resuming from %s (step %d)", checkpoints[-1], start)
    if distributed.is_main() and (run / "stats.jsonl").exists():  # drop lines logged after that checkpoint
        lines = (run / "stats.jsonl").read_text().splitlines()
        with atomic_path(run / "stats.jsonl") as tmp:
            tmp.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["step"] <= start))
    loader = DataLoader(dataset, batch_sampler=StepBatches(sampler, start), num_workers=t.workers,
                        pin_memory=device.type == "cuda")
    writer = None
    if t.tensorboard and distributed.is_main():
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("tensorboard=true needs the tensorboard package (pip install tensorboard)") from None
        writer = SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=start)

    # ---- loop ------------------------------------------------------------------------------------
    bar = tqdm(total=t.steps, initial=start, unit="step", dynamic_ncols=True,
               disable=not (progress and distributed.is_main()))
    batches = iter(loader)
    tick, tick_step = time.perf_counter(), start
    deadline = tick + 60 * t.max_minutes if t.max_minutes > 0 else float("inf")
    step = start
    while step < t.steps:
        # rank 0's clock decides: the step that starts past the budget is the sitting's last
        out_of_time = distributed.agree(time.perf_counter() >= deadline)
        last = step + 1 == t.steps or out_of_time
        logged = (step + 1) % t.log_every == 0 or last
        lr_scale = learning_rate_scale(step, t)
        result = train_step(next(batches), step, lr_scale, diagnose=logged)
        step += 1
        bar.update(1)

        if logged:
            now = time.perf_counter()
            d_terms = result.d_losses.as_dict() if result.d_losses is not None else {}
            stats = {"step": step, "K": result.k, "lr_scale": lr_scale, **d_terms,
                     **(result.g_losses.as_dict() if result.g_losses is not None else {}), **result.diagnostics,
                     "episodes_per_s": t.batch_size * (step - tick_step) / max(now - tick, 1e-9)}
            tick, tick_step = now, step
            shown = {"D": stats.get("D/total"), "G": stats.get("G/total"), "fm": stats.get("G/feature_matching"),
                     "ep/s": stats["episodes_per_s"]}
            bar.set_postfix({name: f"{value:.3f}" for name, value in shown.items() if value is not None})
            if distributed.is_main():  # the losses are rank 0's batch
                with (run / "stats.jsonl").open("a") as f:
                    f.write(json.dumps(stats) + "\n")
                for key, value in stats.items() if writer else ():
                    writer.add_scalar(key, value, step)
        if validator is not None and (step % t.sample_every == 0 or last):
            save_marked_image(run / "samples" / f"step_{step:09d}.png", validator.sample_grid(ema, device),
                              f"neural, training step {step}")
        if validator is not None and (step % t.val_every == 0 or last):
            scores = validator(ema, device)
            with (run / "stats.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, **scores}) + "\n")
            for key, value in scores.items() if writer else ():
                writer.add_scalar(key, value, step)
            plot_validation(run / "stats.jsonl", run / "val_curve.png", f"{run.name}: held-out self-reenactment")
            bar.write(f"step {step}: val L1 {scores['val/l1']:.4f} PSNR {scores['val/psnr']:.2f} "
                      f"({scores['val/psnr_from_targets']:+.3f} dB from the targets' pixels; copy first target: PSNR "
                      f"{scores['copy_first/psnr']:.2f}; warp: L1 {scores['warp/l1']:.4f} PSNR {scores['warp/psnr']:.2f})")
        if step % t.checkpoint_every == 0 or last:
            if distributed.is_main():
                save_checkpoint(run, step, config, nets, keep_last=t.keep_last)
                export_generator(run / "export" / "generator.safetensors", ema, config.model, preprocess, step)
            distributed.barrier()
        if out_of_time:
            log.warning("max_minutes=%g spent at step %d: stopped after its checkpoint (a rerun resumes)",
                        t.max_minutes, step)
            break
    bar.close()
    if writer is not None:
        writer.close()
    return TrainResult(step=step, networks=nets)
