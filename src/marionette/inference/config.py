"""Inference settings: `reenact`'s (ReenactConfig, which `evaluate`, the app and the bench build
too) and `export-onnx`'s, with the choices they check against. Free of torch and mediapipe, so
that `marionette --help` lists them at once; the code they steer imports this module."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marionette.config import MAX_SHOTS, Rule, Settings, at_least, between, off_or, one_of, setting
from marionette.landmark_transformer.config import EXPRESSIONS, MODES


@dataclass(frozen=True)
class RendererSpec:
    """What the callers of a renderer know of it before it is built (inference/renderers.py builds
    each, by its name in RENDERERS)."""

    checkpoint: str = ""  # what it runs: "" nothing, "export" a generator export file, "onnx" that export's ONNX folder
    placed: bool = False  # its generator runs at `device` in `precision` (else on the CPU, in fp32)
    baseline: bool = False  # draws no new pixel: evaluation's reference point, no row of `bench reenact`


RENDERERS = {  # what draws a frame, in the order reports list them: the baseline first
    "copy": RendererSpec(baseline=True),
    "warp": RendererSpec(),
    "neural": RendererSpec(checkpoint="export", placed=True),
    "onnx": RendererSpec(checkpoint="onnx"),
}
RENDERER_SETTINGS = ("auto", *RENDERERS)  # `renderer=`: one of them, or auto
DRIVING_MODES = ("auto",) + MODES
REFERENCES = ("neutral", "first")  # what relative mode measures the driver's motion from
MOUTHS = ("driver", "drawn")  # what an open mouth shows where no target shows one open
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # resolved by marionette.devices
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

DEVICE_RULE = Rule(lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
                   "one of " + ", ".join(DEVICES))
PRECISION_RULE = Rule(lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS))


def device_setting(tracks: bool = True) -> str:
    """The `device` setting of every command that runs the neural renderer; `tracks`: the command also
    tracks a driver's face mesh there."""
    where = ("the neural renderer and the driver's face mesh run" if tracks else "the neural renderer runs")
    gpu_mesh = "; a GPU tracks with the torch mesh unless MARIONETTE_FACE_MESH=mediapipe" if tracks else ""
    return setting("auto", f"where {where}: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps (warp, copy: CPU "
                   f"only{gpu_mesh})", DEVICE_RULE)


def precision_setting() -> str:
    """The `precision` setting of every command that runs the neural renderer."""
    return setting("auto", "the neural renderer's precision (autocast): fp32, bf16, fp16; auto: bf16 on a cpu with "
                   "native bf16 (AVX512-BF16, AMX), else fp32; bf16 (else fp16) on cuda, fp16 on mps", PRECISION_RULE)


SIZE_RULE = Rule(lambda v: v == 0 or between(64, 1024).test(v), "0 (auto) or in 64..1024")


@dataclass(frozen=True)
class ReenactConfig(Settings):
    renderer: str = setting("auto",
                            "neural (--checkpoint's generator, else the shipped one), warp, onnx, copy (a"
                            " baseline); auto: neural (webcam: warp)",
                            one_of(*RENDERER_SETTINGS))
    size: int = setting(0,
                        "side of the face crop the renderer works at, pixels; 0 (auto): the target face's own"
                        " size in its photo, 256..512",
                        SIZE_RULE)
    transform: bool = setting(True, "landmark transformer: the driver's expression and pose on the target's face shape")
    mode: str = setting("auto",
                        "relative: the driver's motion from its reference face; absolute: its pose; auto:"
                        " absolute for an image",
                        one_of(*DRIVING_MODES))
    reference: str = setting("neutral",
                             "relative mode measures from: neutral (the driver's neutral face in its first"
                             " neutral_seconds, its lips closed) or first (frame)",
                             one_of(*REFERENCES))
    expression: str = setting("driver",
                              "relative mode: the driver's expression on the target, or the target's own"
                              " moved by the driver's change",
                              one_of(*EXPRESSIONS))
    max_turn: float = setting(45.0,
                              "degrees the output may turn from the target's own pose, a soft limit (ours: a"
                              " warp shreds beyond; 0 = off)",
                              off_or(between(5, 180)))
    neutral_seconds: float = setting(4.0,
                                     "seconds of a driver searched for its neutral face (a file's are tracked"
                                     " before its first frame is drawn)",
                                     between(0, 60))
    mouth: str = setting("driver",
                         "what a mouth opened wider than every target's shows: driver (ours: the driver's own"
                         " teeth, in the target's light, in a shaded cavity) or drawn (the cavity alone)",
                         one_of(*MOUTHS))
    alpha: float = setting(1.0, "expression strength of the landmark transformer", between(0, 4))
    smooth_min_cutoff: float = setting(1.5, "One-Euro filter on driver landmarks: cut-off at rest, Hz (0 = off)",
                                       between(0, 1000))
    smooth_beta: float = setting(0.02, "One-Euro filter: how fast the cut-off rises with speed (per px/s)",
                                 between(0, 1000))
    paste_back: bool = setting(True, "paste the result into the target photo (else output the crop)")
    max_side: int = setting(1920,
                            "target photos with a longer side are scaled down to it first: bounds the output (0 = off)",
                            off_or(between(64, 16384)))
    side_by_side: bool = setting(False, "output driver | target | result side by side")
    target_frames: int = setting(8, "frames sampled from a target video (K)", between(1, MAX_SHOTS))
    max_frames: int = setting(0,
                              "stop after this many driver frames (0 = all; a webcam runs until Ctrl-C,"
                              " keeping the output)",
                              at_least(0))
    preview: bool = setting(False,
                            "show each output frame in a window as it is made; q or Esc stops, keeping the output")
    face: int = setting(-1, "which face of the targets: -1 the largest, else numbered from 0 left to right",
                        between(-1, 15))
    driver_face: int = setting(-1, "which face of the driver: -1 the largest, else numbered from 0 left to right",
                               between(-1, 15))
    crf: int = setting(18, "H.264 quality of video outputs (lower = better)", between(0, 51))
    batch: int = setting(4,
                         "frames of a file driver the neural renderer draws per generator call (ours; a webcam's: 1); "
                         "on the CPU split over render_threads calls",
                         between(1, 64))
    torch_threads: int = setting(1,
                                 "CPU threads of the neural renderer; more contend with the tracker and decoder (ours)",
                                 between(1, 256))
    render_threads: int = setting(2,
                                  "generator calls a file driver's batch is split into, run at once on the CPU, each on "
                                  "torch_threads (ours; a GPU draws the batch in one call)",
                                  between(1, 64))
    generator_every: int = setting(4,
                                   "on the CPU a warp-guided generator draws at least every Nth frame of a driver, "
                                   "every frame whose eyes blink and, from the second after one it drew, every frame "
                                   "whose face or lips moved since; the frames between carry its last correction of "
                                   "the warp along the driven face's motion (ours; 1: every frame, as evaluate and a "
                                   "GPU draw them)",
                                   between(1, 8))
    device: str = device_setting()
    precision: str = precision_setting()
    overwrite: bool = setting(False, "replace an existing output (a file, or a folder of marionette's PNG frames)")


@dataclass(frozen=True)
class OnnxExportConfig(Settings):
    opset: int = setting(17, "ONNX opset of both graphs (17: InstanceNorm, GridSample and LayerNorm are native)",
                         between(17, 23))
    check: bool = setting(True,
                          "run both graphs in onnxruntime at K = 1 and K = 8 and refuse an export off torch's output")
    # 0.016: the check's inputs are noise, where a trained correction's few sharpest pixels differ most (the
    # generator shipped 2026-12-05: 0.007-0.011 at 0.001% of its pixels; on a real portrait within one grey
    # level); a broken graph (a flow that was exported wrong) differed by 0.12
    tolerance: float = setting(0.016,
                               "largest |onnxruntime - torch| pixel difference the check accepts (images in [-1, 1]; "
                               "0.016: two grey levels) on noise inputs",
                               between(0, 1))
