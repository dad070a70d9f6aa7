"""Training configuration: TrainConfig (one default per knob), presets listing only their
differences, and RunConfig, the resolved model + loss + training settings a run folder keeps.

Overrides are `key=value` for TrainConfig fields and `model.key=value` / `loss.key=value` for
ModelConfig / LossConfig fields; unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marionette.config import MAX_SHOTS, SettingError, Settings, at_least, between, each, from_dict, override, to_dict
from marionette.model.config import PRESETS as MODEL_PRESETS
from marionette.model.config import LossConfig, ModelConfig, model_config


@dataclass(frozen=True)
class TrainConfig(Settings):
    steps: int = 500_000  # optimizer steps (one D step + one G step each); a rerun with more steps continues
    max_minutes: float = 0.0  # wall-clock budget of one sitting: then validate, checkpoint, export and stop (0 = none)
    decay_steps: int = 0  # over the last decay_steps steps both learning rates fall linearly to 0 (pix2pix; 0 = off)
    batch_size: int = 8  # episodes per step, summed over all ranks
    k_max: int = 8  # most targets per episode; K is drawn per batch in [1, k_max] (paper: K = 1..8)
    lr_g: float = 5e-5  # Adam learning rate of the generator (NeuralHead's TTUR)
    lr_d: float = 2e-4  # Adam learning rate of the discriminator (NeuralHead's TTUR)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam (beta1, beta2) of both optimizers
    ema_decay: float = 0.999  # decay of the generator's exponential moving average (ramped up: min(decay, (1+t)/(10+t)))
    grad_clip: float = 0.0  # max gradient norm per network (0 = no clipping)
    autocast: bool = True  # bf16 autocast on CUDA (bf16 needs no loss scaling); ignored on CPU
    flip: bool = True  # mirror whole episodes with probability 1/2
    colour_jitter: float = 0.0  # strength of one random colour transform per training episode (ours; 0 = off)
    log_every: int = 50  # steps between stats.jsonl lines (and TensorBoard scalars)
    sample_every: int = 1000  # steps between sample grids (targets | driver landmarks | output | truth)
    val_every: int = 5000  # steps between validations on the val split (0 = never)
    val_episodes: int = 64  # fixed self-reenactment episodes per validation
    val_k: int = 4  # targets per validation episode
    checkpoint_every: int = 5000  # steps between checkpoints (one is also written at the last step)
    keep_last: int = 3  # checkpoints kept in RUN/checkpoints (older ones are deleted)
    seed: int = 0  # seed of initialisation, episode order, frame choice and flips
    workers: int = 2  # DataLoader worker processes per rank
    tensorboard: bool = False  # also write TensorBoard scalars to RUN/tensorboard (needs the tensorboard package)

    RULES = dict(steps=at_least(0), max_minutes=at_least(0), decay_steps=at_least(0), batch_size=between(1, 65536), k_max=between(1, MAX_SHOTS),
                 lr_g=between(1e-9, 1), lr_d=between(1e-9, 1), betas=each(between(0, 0.9999), 2),
                 ema_decay=between(0, 1), grad_clip=at_least(0), colour_jitter=between(0, 1), log_every=at_least(1),
                 sample_every=at_least(1), val_every=at_least(0), val_episodes=at_least(1), val_k=between(1, MAX_SHOTS),
                 checkpoint_every=at_least(1), keep_last=at_least(1), seed=at_least(0), workers=between(0, 256))


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(steps=3000, batch_size=4, log_every=10, sample_every=250, val_every=250, val_episodes=32,
                checkpoint_every=250, ema_decay=0.99),
    "tiny": dict(steps=20, batch_size=2, k_max=2, log_every=1, sample_every=10, val_every=10, val_episodes=2,
                 val_k=2, checkpoint_every=10, keep_last=2, workers=0, ema_decay=0.9),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run besides the dataset; saved as RUN/config.json."""

    preset: str  # the preset the run started from (paper, cpu, tiny)
    model: ModelConfig  # generator and discriminator sizes
    loss: LossConfig  # weights of the objective's terms, perceptual networks' weights
    train: TrainConfig  # optimisation, schedule of logs / samples / validation / checkpoints

    def to_dict(self) -> dict[str, Any]:
        return dict(preset=self.preset, model=to_dict(self.model), loss=to_dict(self.loss), train=to_dict(self.train))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(preset=data["preset"], model=from_dict(ModelConfig, data["model"]),
                   loss=from_dict(LossConfig, data["loss"]), train=from_dict(TrainConfig, data["train"]))


def run_config(preset: str, overrides: list[str] = ()) -> RunConfig:
    """The preset with `key=value` (train), `model.key=value` and `loss.key=value` overrides."""
    if preset not in TRAIN_PRESETS or preset not in MODEL_PRESETS:
        raise SettingError(f"--config {preset}: unknown preset (known: {', '.join(TRAIN_PRESETS)})")
    sections: dict[str, list[str]] = {"model": [], "loss": [], "train": []}
    for item in overrides:
        key = item.split("=", 1)[0]
        section, _, _ = key.rpartition(".")
        if section not in ("model", "loss", ""):
            raise SettingError(f"{item}: prefix must be model. or loss. (or none for training settings)")
        sections[section or "train"].append(item.split(".", 1)[1] if section else item)
    train = override(override(TrainConfig(), TRAIN_PRESETS[preset]), sections["train"])
    return RunConfig(preset=preset, model=model_config(preset, sections["model"]),
                     loss=override(LossConfig(), sections["loss"]), train=train)
