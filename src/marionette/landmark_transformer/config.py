"""Settings of fitting the landmark transformer, kept apart from the torch code so that the command
line can list them without importing torch. Its settings at use (α, mode) belong to the caller
(ReenactConfig for reenactment)."""

from __future__ import annotations

from dataclasses import dataclass

from marionette.config import Settings, at_least, between, one_of

MODES = ("relative", "absolute")
EXPRESSIONS = ("driver", "target")  # relative mode: whose expression the driver's change is added to


@dataclass(frozen=True)
class LandmarkTransformerConfig(Settings):
    explained_variance: float = 0.95  # expression basis: fewest PCA components of l_exp explaining this share
    hidden: int = 192  # disentangler MLP width
    layers: int = 2  # disentangler hidden layers
    epochs: int = 60  # passes over the training frames
    batch_size: int = 256  # frames per optimiser step
    lr: float = 1e-3  # peak learning rate (AdamW, one-cycle schedule)
    weight_decay: float = 1e-4  # AdamW weight decay
    flip: bool = True  # also fit on every clip mirrored (a mirrored person counts as another identity)
    split: str = "train"  # dataset split fitted on (val/test identities stay held out)
    seed: int = 0  # seed of initialisation and batch order

    RULES = dict(explained_variance=between(0.01, 1), hidden=between(1, 4096), layers=between(1, 16),
                 epochs=between(1, 100_000), batch_size=between(1, 1 << 20), lr=between(1e-9, 1),
                 weight_decay=between(0, 1), split=one_of("train", "val", "test", "all"), seed=at_least(0))
