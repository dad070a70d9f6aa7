"""The MarioNETte networks (generator, discriminator), their configuration, and the objective.

One file per paper component: driver_encoder (E_x), target_encoder (E_y with target pose
normalization), blender (image attention blocks), decoder (warp-alignment blocks),
discriminator; shared layers in layers.py; losses.py and vgg.py form the objective.
"""

from marionette.model.config import PRESETS, LossConfig, ModelConfig, model_config
from marionette.model.discriminator import Discriminator, DiscriminatorOutput
from marionette.model.generator import Generator, GeneratorOutput, TargetCache
from marionette.model.losses import DiscriminatorLosses, GeneratorLosses, Objective, build_objective

__all__ = [
    "PRESETS", "LossConfig", "ModelConfig", "model_config", "Discriminator", "DiscriminatorOutput", "Generator",
    "GeneratorOutput", "TargetCache", "DiscriminatorLosses", "GeneratorLosses", "Objective", "build_objective",
]
