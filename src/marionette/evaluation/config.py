"""`evaluate`'s settings (EvalConfig) and the choices they check against. Free of torch and
mediapipe, so that `marionette --help` lists them at once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marionette.config import MAX_SHOTS, Rule, Settings, at_least, between, each, one_of, setting, text
from marionette.data.config import SPLITS
from marionette.inference.config import MOUTHS, RENDERERS, device_setting, precision_setting
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
    split: str = setting("test", "dataset split the episodes come from (train, val, test or all)",
                         one_of(*SPLITS, "all"))
    renderers: tuple[str, ...] = setting(("copy", "warp"), "renderers compared (copy, warp, neural, onnx)",
                                         each(one_of(*RENDERERS)))
    shots: tuple[int, ...] = setting((1, 8), "K values, each in 1..8", each(between(1, MAX_SHOTS)))
    modes: tuple[str, ...] = setting(("self", "cross"), "self: driver from the targets' clip; cross: another identity",
                                     each(one_of(*MODES)))
    episodes: int = setting(110, "episodes per (mode, shots): with videos, a video_psnr difference resolves to about",
                            between(1, 100_000))
    # ±0.3 dB on the shipped split's test identities (copy vs warp: ±0.29 dB, 810 s on 2 cores; docs/evaluation.md)
    seed: int = setting(0, "seed of the episode lists", at_least(0))
    drivers: str = setting("uniform",
                           "driver frames: uniform (any, as the paper) or hard (ours: the split's closed-eye and",
                           one_of(*DRIVERS))
    # wide-mouth frames, each at most once; episodes caps their number)
    cross_mode: str = setting("relative", "landmark transformer mode in cross episodes (relative or absolute)",
                              one_of(*DRIVE_MODES))
    cross_expression: str = setting("driver",
                                    "relative mode's expression in cross episodes: the driver's, or the"
                                    " target's own moved by the driver's change",
                                    one_of(*EXPRESSIONS))
    cross_mouth: str = setting("driver",
                               "what a mouth opened wider than every target's shows in cross episodes: driver (its"
                               " teeth, as reenact draws) or drawn (self episodes never take the driver's pixels: its"
                               " mouth is the truth there)",
                               one_of(*MOUTHS))
    alpha: float = setting(1.0, "expression strength of the landmark transformer in cross episodes", between(0, 4))
    samples: int = setting(4, "episodes per (mode, shots) kept as images for the sample grids", at_least(0))
    arcface: str | None = setting(None, "ArcFace ONNX file for CSIM (None: dlib's face-recognition ResNet)",
                                  text(optional=True))
    checkpoint: str | None = setting(None,
                                     "trained generator checkpoint for the neural renderer (its ONNX export"
                                     " folder for onnx)",
                                     text(optional=True))
    landmark_transformer: str | None = setting(None,
                                               "fitted landmark transformer driving cross episodes (None: the"
                                               " shipped one)",
                                               text(optional=True))
    videos: bool = setting(True,
                           "also render each episode's whole driver clip: motion fidelity, stillness,"
                           " video_psnr, video walls")
    device: str = device_setting(tracks=False)  # the dataset's meshes: nothing tracked
    precision: str = precision_setting()
    inputs: bool = setting(False, "also write every episode's targets and driver under inputs/, for other tools")
    external: tuple[str, ...] = setting((),
                                        "other methods' videos of the episodes, scored as renderers:"
                                        " NAME:FOLDER (comma list)",
                                        EXTERNAL_RULE)
