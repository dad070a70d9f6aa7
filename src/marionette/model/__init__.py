"""The MarioNETte networks (generator, discriminator), their configuration, and the objective.

One file per paper component: driver_encoder (E_x), target_encoder (E_y with target pose
normalization), blender (image attention blocks), decoder (warp-alignment blocks),
discriminator; shared layers in layers.py; losses.py and vgg.py form the objective; config.py
their settings (importing it loads no torch). Import from the submodules.
"""
