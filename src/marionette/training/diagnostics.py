"""Diagnostics of a training step (ours), computed on log steps only and written to stats.jsonl
beside the losses, to see why a recipe stands still:

- `grad/<part>`: L2 norm of each part's gradient before any clipping: the generator's parts
  (`driver_encoder`, `target_encoder`, `blender`, `decoder`) after the G step's backward and the
  discriminator (`grad/D`) after the D step's. The warp-guided model's correction has two parts
  of its own (CORRECTION_PARTS), the rest of the correction counting as `decoder`: with
  correction=residual, its output layer's residual rows (`grad/correction_residual`) and mask row
  (`grad/correction_mask`); with correction=blend, the painting image head (`grad/correction_painted`,
  its norm included) and the mask head (`grad/correction_mask`); with correction=refine, the
  refiner's U-Net (`grad/correction_refiner`) and its head's flow rows (`grad/correction_flow`) and
  residual rows (`grad/correction_residual`). A part that gets no gradient
  (frozen, or cut off, as everything upstream of the zero residual at step 0) reads 0.
- `grad_output/<term>`: L2 norm of the gradient of each weighted term of G's objective (weight x
  term) with respect to the generated images (B, 3, H, W): which term drives G's update, on one
  scale. 0 for a term with weight 0. The blend's `painted` term is taken with respect to the
  painted images it is computed on (0 without them).
- `D/real_acc`, `D/fake_acc`: the share of real frames D scores above 0 and of generated frames
  it scores below 0, in the D step (before its update); `D/real_logit`, `D/fake_logit`: their mean
  scores. A D that separates nothing reads 0.5 and equal logits. `D/mouth_real_acc` ... the same of
  the mouth crop's patch discriminator (ours), over its patches.
- warp-guided only: `correction/change`, the mean |output - warp| in [-1, 1] units, and
  `correction/mask`, the mean of the correction's mask (the refiner's: its mean departure).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from marionette.model.config import LossConfig
from marionette.model.generator import GeneratorOutput
from marionette.model.losses import DiscriminatorLosses, GeneratorLosses

# per ModelConfig.correction, its parts: part -> (parameter name prefix or prefixes, output rows of those parameters)
CORRECTION_PARTS = {
    # WarpCorrection.head: one conv whose output channels are the colour residual (0..2) and the mask logit (3)
    "residual": {"correction_residual": ("decoder.correction.head.", slice(0, 3)),
                 "correction_mask": ("decoder.correction.head.", slice(3, 4))},
    # the paper's image head (norm, conv to RGB) painting g, and WarpBlend's mask conv
    "blend": {"correction_painted": ("decoder.to_rgb.", slice(None)),
              "correction_mask": ("decoder.correction.", slice(None))},
    # the refiner's U-Net, and its head's flow (0, 1) and residual (2..4) channels
    "refine": {"correction_refiner": (("decoder.correction.down", "decoder.correction.up"), slice(None)),
               "correction_flow": ("decoder.correction.head.", slice(0, 2)),
               "correction_residual": ("decoder.correction.head.", slice(2, 5))},
}


def _norm(grads: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum((g.detach().float().square().sum() for g in grads), torch.zeros(())))) if grads else 0.0


def generator_gradient_norms(generator: nn.Module) -> dict[str, float]:
    """`grad/<part>` for each top-level part of the (raw) generator, the warp-guided correction's
    parts apart, from the gradients its parameters hold now."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name, _ in generator.named_children()}
    correction = CORRECTION_PARTS[generator.config.correction] if generator.config.warp_guided else {}
    parts.update({part: [] for part in correction})
    for name, parameter in generator.named_parameters():
        if parameter.grad is None:
            continue
        owners = [(part, rows) for part, (prefix, rows) in correction.items() if name.startswith(prefix)]
        for part, rows in owners:
            parts[part].append(parameter.grad[rows])
        if not owners:
            parts[name.split(".", 1)[0]].append(parameter.grad)
    return {f"grad/{part}": _norm(grads) for part, grads in parts.items()}


def gradient_norm(module: nn.Module) -> float:
    """L2 norm of all the gradients `module`'s parameters hold (0 if none)."""
    return _norm([p.grad for p in module.parameters() if p.grad is not None])


def output_gradient_norms(losses: GeneratorLosses, weights: LossConfig, image: torch.Tensor,
                          painted: torch.Tensor | None = None) -> dict[str, float]:
    """`grad_output/<term>` of each weighted term of `losses` with respect to `image`, the
    generated (B, 3, H, W) the terms were computed from (the `painted` term: with respect to
    `painted`, the blend's painted images it was computed from); the graph is kept for the step's
    backward."""
    norms = {}
    for field in dataclasses.fields(losses):
        if field.name == "total":
            continue
        weight, term = getattr(weights, f"{field.name}_weight"), getattr(losses, field.name)
        source = painted if field.name == "painted" else image
        if weight == 0 or not term.requires_grad or source is None:
            norms[f"grad_output/{field.name}"] = 0.0
            continue
        (grad,) = torch.autograd.grad(weight * term, source, retain_graph=True)  # (B, 3, H, W)
        norms[f"grad_output/{field.name}"] = float(grad.float().norm())
    return norms


def discriminator_scores(losses: DiscriminatorLosses) -> dict[str, float]:
    """D's accuracy on real and generated frames and its mean scores, from the D step's scores (B,)
    (`D/...`), and the same of the mouth's patch scores (B, P) (`D/mouth_...`), for the parts that ran."""
    found = {}
    for prefix, real, fake in (("D/", losses.real_score, losses.fake_score),
                               ("D/mouth_", losses.mouth_real_score, losses.mouth_fake_score)):
        if real is None or fake is None:
            continue
        real, fake = real.float(), fake.float()
        found |= {f"{prefix}real_acc": float((real > 0).float().mean()),
                  f"{prefix}fake_acc": float((fake < 0).float().mean()),
                  f"{prefix}real_logit": float(real.mean()), f"{prefix}fake_logit": float(fake.mean())}
    return found


def correction_stats(output: GeneratorOutput, warp: torch.Tensor) -> dict[str, float]:
    """How much the warp-guided generator changes its warp image (B, 3, H, W), and its mean mask."""
    return {"correction/change": float((output.image.detach().float() - warp.float()).abs().mean()),
            "correction/mask": float(output.mask.detach().float().mean())}
