"""Settings of fitting the landmark transformer, kept apart from the torch code so that the command
line can list them without importing torch. Its settings at use (α, mode) belong to the caller
(ReenactConfig for reenactment)."""

from __future__ import annotations

from dataclasses import dataclass

from marionette.config import Settings, at_least, between, one_of, setting

MODES = ("relative", "absolute")
EXPRESSIONS = ("driver", "target")  # relative mode: whose expression the driver's change is added to


@dataclass(frozen=True)
class LandmarkTransformerConfig(Settings):
    explained_variance: float = setting(0.95, "expression basis: fewest PCA components of l_exp explaining this share",
                                        between(0.01, 1))
    hidden: int = setting(192, "disentangler MLP width", between(1, 4096))
    layers: int = setting(2, "disentangler hidden layers", between(1, 16))
    epochs: int = setting(60, "passes over the training frames", between(1, 100_000))
    batch_size: int = setting(256, "frames per optimiser step", between(1, 1 << 20))
    lr: float = setting(1e-3, "peak learning rate (AdamW, one-cycle schedule)", between(1e-9, 1))
    weight_decay: float = setting(1e-4, "AdamW weight decay", between(0, 1))
    flip: bool = setting(True, "also fit on every clip mirrored (a mirrored person counts as another identity)")
    split: str = setting("train", "dataset split fitted on (val/test identities stay held out)",
                         one_of("train", "val", "test", "all"))
    seed: int = setting(0, "seed of initialisation and batch order", at_least(0))
