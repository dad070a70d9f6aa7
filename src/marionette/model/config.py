"""Model and loss configuration: one typed dataclass each, presets list only their differences.

The defaults are the `paper` preset (256 px, encoder widths 64..512 as in the paper, §Method);
`cpu` trains and runs on a laptop CPU; `warp-cpu` (ours) is the warp-guided model sized for
training on two CPU cores (half the `cpu` encoder and decoder widths, the refiner's correction);
`tiny` exists for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marionette.config import Settings, at_least, between, one_of, override, setting, text

LEVELS = 5  # the target encoder halves the image five times (paper: five residual down blocks)
CORRECTIONS = ("residual", "blend", "refine")  # how the warp-guided decoder corrects the warp image (ours; decoder.py)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Sizes of the generator and the discriminator; level j means resolution image_size / 2**j."""

    image_size: int = setting(256, "side of the square input and output images, pixels (multiple of 32)",
                              between(2 ** (LEVELS + 1), 1024))
    channels: int = setting(64, "encoder width at full resolution; doubles per halving (paper)", between(1, 1024))
    max_channels: int = setting(512, "cap on any encoder width (paper)", between(1, 4096))
    decoder_channels: int = setting(32,
                                    "decoder width at full resolution; doubles per halving up to max_channels (ours)",
                                    between(1, 1024))
    attention_blocks: int = setting(3, "image attention blocks in the blender (ours)", between(1, 16))
    attention_heads: int = setting(8, "heads per image attention block (ours)", between(1, 64))
    flow_max: float = setting(1.0, "bound of the tanh flow offsets, grid units (2 = image side) (ours)",
                              between(0.01, 2))
    disc_channels: int = setting(64, "discriminator width at full resolution; doubles per halving (ours)",
                                 between(1, 1024))
    disc_max_channels: int = setting(512, "cap on any discriminator width (ours)", between(1, 4096))
    mouth_disc_channels: int = setting(0,
                                       "ours: width of a patch discriminator on the driver's mouth crop; doubles"
                                       " per halving (0 = none)",
                                       between(0, 256))
    warp_guided: bool = setting(False, "ours: E_x also sees the warp renderer's image and Q corrects it")
    correction: str = setting("residual",
                              'ours, warp-guided: Q\'s gated residual on the warp, "blend" of it with Q\'s painting,',
                              one_of(*CORRECTIONS))
    # or "refine": a U-Net of its own over the warp moves and paints its pixels (refiner.py)
    refine_channels: int = setting(16,
                                   "ours, correction=refine: the refiner's width at full resolution; doubles"
                                   " per halving",
                                   between(1, 256))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require(self.image_size % 2**LEVELS == 0, "image_size", f"must be a multiple of {2**LEVELS}")
        self.require(self.warp_guided or self.correction == "residual", "correction",
                     f"{self.correction} corrects the warp image: it needs model.warp_guided=true")
        for width in (self.width(LEVELS - 1), self.width(LEVELS)):
            self.require(width % (4 * self.attention_heads) == 0, "attention_heads",
                         f"4 x attention_heads must divide the encoder width {width} at the blender")

    def width(self, level: int) -> int:
        """Encoder channels at `level` (resolution image_size / 2**level)."""
        return min(self.channels * 2**level, self.max_channels)

    def decoder_width(self, level: int) -> int:
        """Decoder channels at `level`."""
        return min(self.decoder_channels * 2**level, self.max_channels)

    def disc_width(self, level: int) -> int:
        """Discriminator channels at `level`."""
        return min(self.disc_channels * 2**level, self.disc_max_channels)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": dict(image_size=128, channels=16, max_channels=128, decoder_channels=16, attention_heads=4,
                disc_channels=16, disc_max_channels=256),
    "warp-cpu": dict(image_size=128, channels=8, max_channels=128, decoder_channels=8, attention_heads=4,
                     disc_channels=16, disc_max_channels=256, warp_guided=True, correction="refine",
                     refine_channels=12),
    "tiny": dict(image_size=64, channels=8, max_channels=32, decoder_channels=8, attention_heads=2,
                 disc_channels=8, disc_max_channels=32),
}


def model_config(name: str = "paper", overrides: list[str] | dict[str, Any] = ()) -> ModelConfig:
    """The preset `name` with `key=value` overrides applied on top; unknown names or keys are errors."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
    return override(override(ModelConfig(), PRESETS[name]), overrides)


@dataclass(frozen=True)
class LossConfig(Settings):
    """Weights of the objective's terms and where the perceptual networks' weights come from.
    Paths are .pth (torch.load, weights_only) or .safetensors state dicts in torchvision's layout;
    "random" and "none" are explicit choices to run without pretrained weights and log a warning."""

    adversarial_weight: float = setting(1.0, "hinge GAN term (paper: L_GAN)", at_least(0))
    feature_matching_weight: float = setting(10.0, "L1 discriminator feature matching (NeuralHead: 10)", at_least(0))
    perceptual_weight: float = setting(1.0, "VGG19 L1 perceptual term (ours; NeuralHead: 1e-2 on Caffe features)",
                                       at_least(0))
    pixel_weight: float = setting(0.0,
                                  "L1 on pixels (ours, off in the paper's objective; short CPU runs use it to"
                                  " learn fast)",
                                  at_least(0))
    face_perceptual_weight: float = setting(0.2,
                                            "VGG-Face perceptual term (ours: 1/5 of perceptual_weight,"
                                            " NeuralHead's ratio)",
                                            at_least(0))
    perceptual_weights: str = setting("shipped",
                                      'VGG19: "shipped" (package asset, relu1_1..3_1), a full VGG19\'s path, "random"',
                                      text())
    face_weights: str = setting("none",
                                'VGG-Face weights (VGG16, features.N.*): a path, "random", or "none" (term off)',
                                text())
    painted_weight: float = setting(1.0,
                                    "ours, correction=blend: the pixel and perceptual (and face) terms also"
                                    " on Q's painting, x this",
                                    at_least(0))
    perceptual_scale: float = setting(1.0,
                                      "ours: images are resized by this factor before the whole-image VGG"
                                      " terms (0.5 on CPU)",
                                      between(0.125, 1))
    region_weight: float = setting(0.0,
                                   "ours: pixel L1 + perceptual on crops around the driver's mouth and eyes"
                                   " (losses.py)",
                                   at_least(0))
    mouth_adversarial_weight: float = setting(0.0,
                                              "ours: hinge GAN term of the mouth crop's patch discriminator"
                                              " (needs model.mouth_disc_channels > 0)",
                                              at_least(0))
    openness_weight: float = setting(0.0,
                                     "ours: L1 of the eyes' aspect ratios and the lip gap, output against truth, as"
                                     " the face mesh network re-detects them (openness.py)",
                                     at_least(0))
    openness_mouth: bool = setting(True, "ours: the openness term compares the lip gap too (false: the eyes alone)")
    distill_weight: float = setting(0.0,
                                    "ours: pixel L1 + perceptual of the output, whole and on the mouth and eye crops,"
                                    " against what the run's --init export draws from the same episode (a frozen"
                                    " teacher): a narrower model learns the export's function",
                                    at_least(0))
