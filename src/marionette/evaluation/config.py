"""`evaluate`'s settings (EvalConfig) and the choices they check against. Free of torch and
mediapipe, so that `marionette --help` lists them at once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marionette.config import MAX_SHOTS, Rule, Settings, at_least, between, each, one_of, text
from marionette.data.config import SPLITS
from marionette.inference.config import DEVICE_RULE, PRECISION_RULE, RENDERERS
from marionette.landmark_transformer.config import EXPRESSIONS
from marionette.landmark_transformer.config import MODES as DRIVE_MODES

MODES = ("self", "cross")  # episodes: the driver from the targets' own clip, or from another identity's
DRIVERS = ("uniform", "hard")  # driver frames: any, or those with closed eyes or a wide-open mouth
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def external_names(entries: tuple[str, ...]) -> list[str]:
    """The NAMEs of `external`'s NAME:FOLDER entries."""
    return [entry.split(":", 1)[0] for entry in entries]


def _valid(entries: object) -> bool:
    if not isinstance(entries, tuple) or not all(isinstance(e, str) and ":" in e for e in entries):
        return False
    names = external_names(entries)
    return (all(NAME.fullmatch(n) and e.split(":", 1)[1].strip() for n, e in zip(names, entries))
            and len(set(names)) == len(names) and not set(names) & set(RENDERERS))


EXTERNAL_RULE = Rule(_valid, "NAME:FOLDER entries (NAME: a letter, then letters, digits, _ . -; each once; "
                             f"none of {', '.join(RENDERERS)})")


@dataclass(frozen=True)
class EvalConfig(Settings):
    split: str = "test"  # dataset split the episodes come from (train, val, test or all)
    renderers: tuple[str, ...] = ("copy", "warp")  # renderers compared (copy, warp, neural, onnx)
    shots: tuple[int, ...] = (1, 8)  # K values, each in 1..8
    modes: tuple[str, ...] = ("self", "cross")  # self: driver from the targets' clip; cross: another identity
    episodes: int = 110  # episodes per (mode, shots): with videos, a video_psnr difference resolves to about
    # ±0.3 dB on the shipped split's test identities (copy vs warp: ±0.29 dB, 810 s on 2 cores; docs/evaluation.md)
    seed: int = 0  # seed of the episode lists
    drivers: str = "uniform"  # driver frames: uniform (any, as the paper) or hard (ours: the split's closed-eye and
    # wide-mouth frames, each at most once; episodes caps their number)
    cross_mode: str = "relative"  # landmark transformer mode in cross episodes (relative or absolute)
    cross_expression: str = "driver"  # relative mode's expression in cross episodes: the driver's, or the target's own moved by the driver's change
    alpha: float = 1.0  # expression strength of the landmark transformer in cross episodes
    samples: int = 4  # episodes per (mode, shots) kept as images for the sample grids
    arcface: str | None = None  # ArcFace ONNX file for CSIM (None: dlib's face-recognition ResNet)
    checkpoint: str | None = None  # trained generator checkpoint for the neural renderer (its ONNX export folder for onnx)
    landmark_transformer: str | None = None  # fitted landmark transformer driving cross episodes (None: the shipped one)
    videos: bool = True  # also render each episode's whole driver clip: motion fidelity, stillness, video_psnr, video walls
    device: str = "auto"  # where the neural renderer runs: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps (warp, copy: CPU only)
    precision: str = "auto"  # the neural renderer's precision (autocast): fp32, bf16, fp16; auto: fp32 on cpu, bf16 (else fp16) on cuda, fp16 on mps
    inputs: bool = False  # also write every episode's targets and driver under inputs/, for other tools
    external: tuple[str, ...] = ()  # other methods' videos of the episodes, scored as renderers: NAME:FOLDER (comma list)

    RULES = dict(split=one_of(*SPLITS, "all"), renderers=each(one_of(*RENDERERS)), shots=each(between(1, MAX_SHOTS)),
                 modes=each(one_of(*MODES)), episodes=between(1, 100_000), seed=at_least(0), drivers=one_of(*DRIVERS),
                 cross_mode=one_of(*DRIVE_MODES), cross_expression=one_of(*EXPRESSIONS), alpha=between(0, 4),
                 samples=at_least(0), arcface=text(optional=True),
                 checkpoint=text(optional=True), landmark_transformer=text(optional=True), device=DEVICE_RULE,
                 precision=PRECISION_RULE, external=EXTERNAL_RULE)
