"""Training configuration: TrainConfig (one default per knob), presets listing only their
differences, and RunConfig, the resolved model + loss + training settings a run folder keeps;
BenchTrainConfig, what `marionette bench train` times.

Overrides are `key=value` for TrainConfig fields and `model.key=value` / `loss.key=value` /
`episodes.key=value` for ModelConfig / LossConfig / EpisodeConfig fields; unknown keys are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from marionette.config import MAX_SHOTS, SettingError, Settings, at_least, between, each, from_dict, one_of, override, setting, to_dict
from marionette.data.config import EpisodeConfig
from marionette.model.config import PRESETS as MODEL_PRESETS
from marionette.model.config import LossConfig, ModelConfig, model_config

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig(Settings):
    steps: int = setting(500_000, "optimizer steps (one D step + one G step each); a rerun with more steps continues",
                         at_least(0))
    max_minutes: float = setting(0.0,
                                 "wall-clock budget of one sitting: then validate, checkpoint, export and"
                                 " stop (0 = none)",
                                 at_least(0))
    decay_steps: int = setting(0,
                               "over the last decay_steps steps both learning rates fall linearly to 0"
                               " (pix2pix; 0 = off)",
                               at_least(0))
    d_warmup_steps: int = setting(0,
                                  "ours: the first N steps train the discriminator alone (G frozen), so that its"
                                  " verdicts mean something when G starts to listen",
                                  at_least(0))
    batch_size: int = setting(8, "episodes per step, summed over all ranks", between(1, 65536))
    lr_g: float = setting(5e-5, "Adam learning rate of the generator (NeuralHead's TTUR)", between(1e-9, 1))
    lr_d: float = setting(2e-4, "Adam learning rate of the discriminator (NeuralHead's TTUR)", between(1e-9, 1))
    betas: tuple[float, float] = setting((0.5, 0.999), "Adam (beta1, beta2) of both optimizers",
                                         each(between(0, 0.9999), 2))
    ema_decay: float = setting(0.999,
                               "decay of the generator's exponential moving average (ramped up: min(decay,"
                               " (1+t)/(10+t)))",
                               between(0, 1))
    grad_clip: float = setting(0.0, "max gradient norm per network (0 = no clipping)", at_least(0))
    autocast: bool = setting(True, "bf16 autocast on CUDA (bf16 needs no loss scaling); on a CPU see cpu_autocast")
    cpu_autocast: bool = setting(False,
                                 "bf16 autocast on a CPU with native bf16 (avx512_bf16 or amx_bf16; ours: a step"
                                 " 1.38x as fast at 256 px, val as in fp32 over one sitting; fp32 elsewhere)")
    log_every: int = setting(50, "steps between stats.jsonl lines (and TensorBoard scalars)", at_least(1))
    sample_every: int = setting(1000, "steps between sample grids (targets | driver landmarks | output | truth)",
                                at_least(1))
    val_every: int = setting(5000, "steps between validations on the val split (0 = never)", at_least(0))
    val_episodes: int = setting(64, "fixed self-reenactment episodes per validation", at_least(1))
    val_k: int = setting(4, "targets per validation episode", between(1, MAX_SHOTS))
    checkpoint_every: int = setting(5000, "steps between checkpoints (one is also written at the last step)",
                                    at_least(1))
    keep_last: int = setting(3, "checkpoints kept in RUN/checkpoints (older ones are deleted)", at_least(1))
    workers: int = setting(2, "DataLoader worker processes per rank", between(0, 256))
    tensorboard: bool = setting(False,
                                "also write TensorBoard scalars to RUN/tensorboard (needs the tensorboard package)")


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(steps=3000, batch_size=4, log_every=10, sample_every=250, val_every=250, val_episodes=32,
                checkpoint_every=250, ema_decay=0.99),
    # ours: the recipe that trains the warp-guided model on two CPU cores (docs/training.md)
    # warp-cpu's grad_clip (ours): a sitting diverged at step 3,670 when G's gradient norm jumped from ~2 to 879
    # (an unbounded Adam step); resumed from step 3,500 with a clip at 10 (its 90th percentile was 7.7) it did not
    "warp-cpu": dict(steps=100_000_000, batch_size=4, lr_g=5e-4, ema_decay=0.99, log_every=10, sample_every=250,
                     val_every=250, val_episodes=32, checkpoint_every=250, workers=1, grad_clip=10.0),
    "tiny": dict(steps=20, batch_size=2, log_every=1, sample_every=10, val_every=10, val_episodes=2,
                 val_k=2, checkpoint_every=10, keep_last=2, workers=0, ema_decay=0.9),
}
# the training episodes of each preset: EpisodeConfig (K in [k_min, k_max], flips, colour jitter, the
# run's seed, which also seeds initialisation and episode order)
EPISODE_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "cpu": {}, "warp-cpu": dict(k_max=4, colour_jitter=0.4),
                                               "tiny": dict(k_max=2)}
# the objective of each preset (LossConfig): warp-cpu's leaves the discriminator out (it was blind in
# every CPU run, and skipping it saves a fifth of a step) and weighs the mouth and eyes (ours)
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {}, "cpu": {}, "tiny": {},
    "warp-cpu": dict(pixel_weight=10, perceptual_weight=20, adversarial_weight=0, feature_matching_weight=0,
                     perceptual_scale=0.5, region_weight=10),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run besides the dataset; saved as RUN/config.json."""

    preset: str  # the preset the run started from (paper, cpu, tiny)
    model: ModelConfig  # generator and discriminator sizes
    loss: LossConfig  # weights of the objective's terms, perceptual networks' weights
    train: TrainConfig  # optimisation, schedule of logs / samples / validation / checkpoints
    episodes: EpisodeConfig = EpisodeConfig()  # the training episodes (K range, flips, jitter) and the run's seed

    def __post_init__(self) -> None:
        if self.episodes.cross_identity:
            raise SettingError("episodes.cross_identity=True: training needs the driver's own frame as ground truth")
        if self.loss.mouth_adversarial_weight > 0 and self.model.mouth_disc_channels == 0:
            raise SettingError("loss.mouth_adversarial_weight > 0 needs the mouth's discriminator: set"
                               " model.mouth_disc_channels (e.g. 32)")

    def to_dict(self) -> dict[str, Any]:
        return dict(preset=self.preset, model=to_dict(self.model), loss=to_dict(self.loss), train=to_dict(self.train),
                    episodes=to_dict(self.episodes))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        train = dict(data["train"])
        # runs saved before the episode settings had their own section kept them among the training ones
        episodes = data.get("episodes") or {k: train.pop(k) for k in ("k_max", "flip", "colour_jitter", "seed")
                                            if k in train}
        return cls(preset=data["preset"], model=from_dict(ModelConfig, data["model"]),
                   loss=from_dict(LossConfig, data["loss"]), train=from_dict(TrainConfig, train),
                   episodes=from_dict(EpisodeConfig, episodes))


def run_config(preset: str, overrides: list[str] = ()) -> RunConfig:
    """The preset with `key=value` (train), `model.key=value`, `loss.key=value` and
    `episodes.key=value` overrides."""
    if preset not in TRAIN_PRESETS or preset not in MODEL_PRESETS:
        raise SettingError(f"--config {preset}: unknown preset (known: {', '.join(TRAIN_PRESETS)})")
    sections: dict[str, list[str]] = {"model": [], "loss": [], "train": [], "episodes": []}
    for item in overrides:
        key = item.split("=", 1)[0]
        section, _, _ = key.rpartition(".")
        if section not in ("model", "loss", "episodes", ""):
            raise SettingError(f"{item}: prefix must be model., loss. or episodes. (or none for training settings)")
        sections[section or "train"].append(item.split(".", 1)[1] if section else item)
    def section(name: str, make: Callable[[list[str]], T]) -> T:
        try:
            return make(sections[name])
        except SettingError as e:  # say which section the setting was in
            raise SettingError(f"{name}.{e}" if name != "train" else str(e)) from None

    return RunConfig(preset=preset, model=section("model", lambda o: model_config(preset, o)),
                     loss=section("loss", lambda o: override(override(LossConfig(), LOSS_PRESETS[preset]), o)),
                     train=section("train", lambda o: override(override(TrainConfig(), TRAIN_PRESETS[preset]), o)),
                     episodes=section("episodes", lambda o: override(override(EpisodeConfig(), EPISODE_PRESETS[preset]), o)))


@dataclass(frozen=True)
class BenchTrainConfig(Settings):
    """`marionette bench train`'s settings (bench_train.py)."""

    presets: tuple[str, ...] = setting(("cpu", "warp-cpu"),
                                       "training presets: model widths, loss, episodes (size and batch below)",
                                       each(one_of(*TRAIN_PRESETS)))
    sizes: tuple[int, ...] = setting((128,), "image sizes to time, px (model.image_size; multiples of 32)",
                                     each(between(64, 1024)))
    batches: tuple[int, ...] = setting((4,), "episodes per step", each(between(1, 256)))
    ks: tuple[int, ...] = setting((4,), "targets per episode (one K per configuration)", each(between(1, 8)))
    precisions: tuple[str, ...] = setting(("fp32", "bf16"),
                                          "bf16: autocast, timed only where the device runs it natively",
                                          each(one_of("fp32", "bf16")))
    warp_guided: bool = setting(True, "make the faithful presets warp-guided (ours; its loader draws the warp image)")
    rounds: int = setting(5, "interleaved timing rounds; the median is reported", between(1, 1000))
    threads: int = setting(0, "torch threads (0: torch's default)", at_least(0))
    device: str = setting("cpu", "cpu or cuda", one_of("cpu", "cuda"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(all(s % 32 == 0 for s in self.sizes), "sizes", "each must be a multiple of 32")
