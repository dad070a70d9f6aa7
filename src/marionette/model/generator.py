"""Generator G = (E_x, E_y, B, Q) (paper §Proposed method, Fig. 2) and its inference API: the
targets are encoded once into a TargetCache (with the blender's keys and values); each driver
frame then costs E_x, B's queries and attention, and Q (ours).

Ours, the warp-guided model (`ModelConfig.warp_guided`, off in every preset): each driver frame
also brings the training-free warp renderer's image of the driver (marionette/warp.py, made from
the same targets); E_x reads it beside r_x and Q corrects it (`ModelConfig.correction`: a gated
residual on it, a blend of it with the paper's painted image, or a U-Net of its own that moves
and paints the warp's pixels), exactly the warp at
initialisation. Image attention (B) and target feature alignment (E_y, Q's warp-alignment blocks)
are the paper's. Inference reads `GeneratorOutput.image`; the painted image of the blend is there
for training (its own loss term) and inspection."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from marionette.model.blender import Blender
from marionette.model.config import ModelConfig
from marionette.model.decoder import Decoder
from marionette.model.driver_encoder import DriverEncoder
from marionette.model.target_encoder import TargetEncoder


@dataclass(frozen=True)
class TargetCache:
    """Everything a frame needs from one target set (B sets of K targets each). Every field is a
    tensor or a tuple of tensors (exporters flatten it generically)."""

    keys: tuple[torch.Tensor, ...]  # per image attention block, from z_y: (B, heads, K·H/32·W/32, C_4/heads)
    values: tuple[torch.Tensor, ...]  # per image attention block, from z_y: (B, heads, K·H/32·W/32, C_4/heads)
    mean_skips: tuple[torch.Tensor, ...]  # mean over K of Ŝ_1..Ŝ_4, each (B, C_j, H/2^j, W/2^j)
    flows: torch.Tensor  # target pose normalization flows f_y (B, K, 2, H/2, W/2)

    def repeat(self, b: int) -> TargetCache:
        """The cache of one target set (B = 1) as the cache of `b` sets, views of it (no copy): one
        per frame of a batch of driver frames."""
        def expand(value: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
            return value.expand(b, *value.shape[1:]) if isinstance(value, torch.Tensor) else tuple(map(expand, value))

        return TargetCache(**{f.name: expand(getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class GeneratorOutput:
    image: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    attention: tuple[torch.Tensor, ...] | None  # if asked, per attention block (B, heads, H/16·W/16, K·H/32·W/32)
    driver_flows: tuple[torch.Tensor, ...]  # f_u per warp-alignment block, (B, 2, H/16, W/16) .. (B, 2, H/2, W/2)
    target_flows: torch.Tensor  # f_y (B, K, 2, H/2, W/2)
    mask: torch.Tensor | None  # warp-guided: where the warp is corrected (B, 1, H, W) (decoder.Correction); else None
    painted: torch.Tensor | None  # correction=blend: Q's painted image g (B, 3, H, W) in [-1, 1]; else None


class Generator(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.driver_encoder = DriverEncoder(config)
        self.target_encoder = TargetEncoder(config)
        self.blender = Blender(config)
        self.decoder = Decoder(config)

    def start_from(self, other: Generator) -> None:
        """Load another generator's weights; ours: its refiner (correction=refine) may be narrower,
        and then this one grows from it (WarpRefiner.grow_from), computing the same function, or wider,
        and then this one keeps its most read channels (WarpRefiner.shrink_from)."""
        if self.config.refine_channels == other.config.refine_channels or self.config.correction != "refine":
            self.load_state_dict(other.state_dict())
            return
        missing, unexpected = self.load_state_dict({k: v for k, v in other.state_dict().items()
                                                    if not k.startswith("decoder.correction.")}, strict=False)
        assert not unexpected and all(k.startswith("decoder.correction.") for k in missing), (missing, unexpected)
        if self.config.refine_channels > other.config.refine_channels:
            self.decoder.correction.grow_from(other.decoder.correction)
        else:
            self.decoder.correction.shrink_from(other.decoder.correction)

    def encode_targets(self, images: torch.Tensor, landmark_images: torch.Tensor) -> TargetCache:
        """images, landmark_images (B, K, 3, H, W) -> the cache of this target set (run once per set)."""
        b, k = images.shape[:2]
        assert images.ndim == 5 and images.shape == landmark_images.shape, (images.shape, landmark_images.shape)
        z, normalized, flows = self.target_encoder(images.flatten(0, 1), landmark_images.flatten(0, 1))  # (B·K, ...)
        keys, values = self.blender.keys_values(z.unflatten(0, (b, k)))  # from z_y (B, K, C_5, H/32, W/32)
        return TargetCache(
            keys=keys,
            values=values,
            mean_skips=tuple(s.unflatten(0, (b, k)).mean(dim=1) for s in normalized),  # (B, C_j, H/2^j, W/2^j)
            flows=flows.unflatten(0, (b, k)),  # (B, K, 2, H/2, W/2)
        )

    def generate(self, driver_landmark_image: torch.Tensor, cache: TargetCache,
                 warp_image: torch.Tensor | None = None, return_attention: bool = False) -> GeneratorOutput:
        """driver_landmark_image (B, 3, H, W) and the cache of B target sets -> GeneratorOutput;
        warp_image (B, 3, H, W) in [-1, 1], the warp renderer's image of the driver, is required by
        (and only by) the warp-guided model; return_attention: also return the attention weights
        (slower: they are otherwise never materialised)."""
        assert driver_landmark_image.shape[0] == cache.flows.shape[0], (driver_landmark_image.shape, cache.flows.shape)
        if (warp_image is not None) != self.config.warp_guided:
            raise ValueError("a warp-guided generator needs warp_image; any other takes none")
        driver = driver_landmark_image if warp_image is None else torch.cat((driver_landmark_image, warp_image), 1)
        z_x = self.driver_encoder(driver)  # (B, C_4, H/16, W/16)
        z_xy, attention = self.blender(z_x, cache.keys, cache.values, return_attention)  # (B, C_4, H/16, W/16)
        image, driver_flows, correction = self.decoder(z_xy, cache.mean_skips, warp_image,  # (B, 3, H, W)
                                                        driver_landmark_image)
        return GeneratorOutput(image=image, attention=attention, driver_flows=driver_flows, target_flows=cache.flows,
                               mask=None if correction is None else correction.mask,
                               painted=None if correction is None else correction.painted)

    def forward(self, target_images: torch.Tensor, target_landmark_images: torch.Tensor,
                driver_landmark_image: torch.Tensor, warp_image: torch.Tensor | None = None,
                return_attention: bool = False) -> GeneratorOutput:
        """target_images, target_landmark_images (B, K, 3, H, W), driver_landmark_image (B, 3, H, W),
        warp_image (B, 3, H, W) for the warp-guided model; return_attention as in `generate`."""
        return self.generate(driver_landmark_image, self.encode_targets(target_images, target_landmark_images),
                             warp_image, return_attention)
