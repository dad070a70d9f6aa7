"""Settings of fitting the landmark transformer, kept apart from the torch code so that the command
line can list them without importing torch. Its settings at use (α, mode) belong to the caller
(ReenactConfig for reenactment)."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("relative", "absolute")


@dataclass(frozen=True)
class LandmarkTransformerConfig:
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
