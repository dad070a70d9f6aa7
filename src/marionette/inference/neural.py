"""The `neural` renderer: the MarioNETte generator (paper §Proposed method) drawing each frame from
the driven landmarks, with the K targets encoded once into a TargetCache.

The generator sees what it saw in training: crops of `image_size` pixels and 68-point landmark
images drawn by the same renderer. Its output is resized to the pipeline's crop and, since a
generator's colours drift, matched in colour to the targets before it is pasted back (ours).

A warp-guided generator (ours, `ModelConfig.warp_guided`) also gets the warp renderer's image of
the driven mesh. The warp is drawn at the pipeline's crop size; the generator sees it resized to
its own, and only its correction (output minus its input warp) is resized back and added to the
full-size warp, so the warp's detail is kept wherever the generator leaves it alone. Its colours
are the targets' already: no colour matching. Where the driven mesh is a target's own mesh (to
within the tracker's noise: a frozen driver, or relative motion at the driver's neutral) that
target's photo is the right output and the warp draws it; the correction is faded out there
(`still_gate`, ours), and inside the mouth's opening where the warp draws the driver's teeth
(`mouth_gate`, ours).

A file driver's frames are drawn a few per generator call (`render_batch`, ours): the targets'
cache is shared by every frame of the batch, and one call costs less per frame than several. On
the CPU a batch may instead be split into `threads` calls run at once, each on one torch thread
(ours): the generator then uses every core without its threads waiting on each other (two frames
on 2 idle cores: 140-150 ms, against 230-260 ms in one call).

With `every` > 1 (ours) a warp-guided generator draws at least every `every`-th frame of a stream,
and, from the second frame after one it drew, any frame whose face or lips moved enough since (a
carried correction's error grows with the motion); each frame between gets the warp drawn for it and
the last drawn frame's correction, carried along the driven meshes' motion (`carried_correction`). A
frame whose eye opens or closes (a blink) is always drawn (the generator's lids are what the warp's lack).

The generator is a GeneratorBackend: the torch Generator (`neural`), or its ONNX export run by
onnxruntime (`onnx`, inference/onnx_runtime.py); everything around it is this renderer's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import cv2
import numpy as np
import torch

from marionette.devices import Placement
from marionette.errors import InputError
from marionette.landmarks.crop import CropConfig
from marionette.landmarks.layout import MESH_INNER_LIPS, mesh_to_ibug68
from marionette.landmarks.measures import eye_ratios, lip_gap, seen_eyes
from marionette.landmarks.render import render_landmarks
from marionette.model.config import ModelConfig
from marionette.model.generator import TargetCache
from marionette.tensors import to_tensor, to_uint8
from marionette.warp import DriverMouth, WarpRenderer, eye_span, motion_map


class GeneratedImages(Protocol):
    @property
    def image(self) -> torch.Tensor:
        """(B, 3, s, s) in [-1, 1]."""
        ...


class GeneratorBackend(Protocol):
    """What runs the generator: its inference API (model/generator.py)."""

    config: ModelConfig

    def encode_targets(self, images: torch.Tensor, landmark_images: torch.Tensor) -> TargetCache:
        """images, landmark_images (1, K, 3, s, s) -> the cache of this target set."""
        ...

    def generate(self, driver_landmark_image: torch.Tensor, cache: TargetCache,
                 warp_image: torch.Tensor | None = None) -> GeneratedImages:
        """driver_landmark_image (B, 3, s, s), the cache of B target sets and, for a warp-guided
        model only, warp_image (B, 3, s, s) -> the images."""
        ...


def face_mask(mesh: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8, 1 inside the convex hull of a (478, 2+) mesh in pixels, else 0."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(mesh[:, :2]).astype(np.int32)), 1)
    return mask


STILL_FROM, STILL_TO = 0.005, 0.01  # largest landmark move, in eye spans: the gate opens from..to (ours)


def still_gate(driven: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B, 478, 2+) driven meshes and (K, 478, 2+) target meshes in crop pixels -> (B,) weights in
    [0, 1] of the generator's correction: 0 where some target's mesh is within STILL_FROM eye spans of
    the driven one at every landmark, 1 beyond STILL_TO, linear between. STILL_FROM is above the
    move between frames of the corpus's frozen clips (per-clip median 0.0013-0.0036) and below that
    of every pair of frames of the clips that move (minimum 0.0065; docs/training.md)."""
    spans = np.array([eye_span(t) for t in targets])  # (K,)
    moves = np.linalg.norm(driven[:, None, :, :2] - targets[None, :, :, :2], axis=-1).max(-1) / spans  # (B, K)
    return np.clip((moves.min(1) - STILL_FROM) / (STILL_TO - STILL_FROM), 0, 1)


def mouth_gate(driven: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """(B, 478, 2+) driven meshes in crop pixels -> (B, size, size) float32 weights of the generator's
    correction at its `size`: 0 inside each driven mouth's opening (its inner lips), 1 outside, a pixel's
    blur between (ours: where the warp draws the driver's teeth, the shipped generator, trained without
    them, paints them over a flat grey-blue)."""
    gates = np.ones((len(driven), size, size), np.float32)
    for gate, mesh in zip(gates, driven):
        cv2.fillPoly(gate, [np.round(mesh[MESH_INNER_LIPS, :2] * (size / crop_size)).astype(np.int32)], 0.0)
    return np.stack([cv2.GaussianBlur(gate, (0, 0), 1.0) for gate in gates])


CARRY_MOVED = 0.02  # ours: a lip gap that moved more than this since the last drawn frame: the mouth's carried
#   correction is left out (the warp's own lips and opening show there), and from the second frame after a drawn one
#   the frame is drawn
CARRY_STEP = 0.02  # ours: from the second frame after a drawn one, a frame whose landmarks moved on average more than
#   this many eye spans since is drawn (a carried correction's error grows with that motion, far more than with the
#   frames since: docs/hard_cases.md)
CARRY_BLINK = 0.05  # ours: a frame whose eye aspect ratio moved more than this since the last drawn frame is drawn
#   (a blink's lids are the generator's to draw; 0.02 also drew 25% of the frames of a lively driver's open eyes)
CARRY_FAR = 0.25  # ours: a frame whose landmarks moved more than this many eye spans from the last drawn one
#   (a cut, a new stream) is drawn by the generator whatever `every` says


def carried_correction(correction: np.ndarray, source: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(s, s, 3) float32 correction of the warp, drawn at the (478, 3) driven mesh `source`, -> the same
    for a frame at the driven mesh `mesh` (both in the correction's pixels): moved with the face
    (`motion_map`), and left out, with a soft edge, over the mouth where its opening moved more than
    CARRY_MOVED (where the warp's own drawing then shows)."""
    size = correction.shape[0]
    map_x, map_y = motion_map(source, mesh, size)
    moved = cv2.remap(correction, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if abs(float(lip_gap(mesh) - lip_gap(source))) <= CARRY_MOVED:
        return moved
    keep = np.ones((size, size), np.float32)  # 0 over the mouth's opening where it was and where it is
    lips = np.concatenate([mesh[MESH_INNER_LIPS, :2], source[MESH_INNER_LIPS, :2]])
    cv2.fillConvexPoly(keep, cv2.convexHull(np.round(lips).astype(np.int32)), 0.0)
    soft = max(size / 64, 1.0)
    keep = cv2.GaussianBlur(cv2.erode(keep, np.ones((2 * int(soft) + 1,) * 2, np.uint8)), (0, 0), soft)
    return moved * keep[..., None]


def match_colours(image: np.ndarray, mask: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Shift and scale each Lab channel of an (H, W, 3) uint8 RGB image so that its pixels under
    `mask` (H, W) have the given (3,) Lab mean and std (Reinhard-style transfer, ours). The
    per-channel affine map of the 256 Lab levels is tabulated once, then applied as a lookup."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    own_mean, own_std = (m[:, 0].astype(np.float32) for m in cv2.meanStdDev(lab, mask=mask.astype(np.uint8)))
    levels = np.arange(256, dtype=np.float32)[:, None]  # (256, 1)
    table = np.clip((levels - own_mean) * (std / (own_std + 1e-3)) + mean + 0.5, 0, 255).astype(np.uint8)  # (256, 3)
    return cv2.cvtColor(cv2.LUT(lab, table[None]), cv2.COLOR_LAB2RGB)


class NeuralRenderer:
    batched = True  # one generator call per batch of frames

    def __init__(self, backend: GeneratorBackend, crop_size: int, device: torch.device | str = "cpu",
                 source: str = "the generator", crop: CropConfig = CropConfig(), precision: str = "fp32",
                 name: str = "neural", threads: int = 1, every: int = 1):
        """`device` and `precision` (fp32, bf16, fp16: autocast) as resolved by marionette.devices;
        `crop`: how its training crops were cut; `name`: the renderer setting it answers to (neural,
        or onnx for an ONNX backend); `threads`: generator calls a batch is split into, run at once;
        `every`: a warp-guided generator draws at least every `every`-th frame and the frames that moved, the
        others carry its correction (a whole-frame generator draws every frame)."""
        self.name = name
        config, torch_backend = backend.config, isinstance(backend, torch.nn.Module)
        self.backend = backend.eval().to(device) if torch_backend else backend  # ONNX: as it is
        self.crop = crop  # inference crops must match its training crops
        self.source = source  # names the weights in errors
        self.device = torch.device(device)
        self.placement = Placement(self.device, precision)
        if torch_backend and self.placement.channels_last(refiner=config.warp_guided and config.correction == "refine"):
            self.backend.to(memory_format=torch.channels_last)
        self.model_size = config.image_size
        self.crop_size = crop_size
        self._cache: TargetCache | None = None
        self._warp = WarpRenderer(crop_size) if config.warp_guided else None
        self._lab_mean = self._lab_std = np.zeros(3, np.float32)
        self._meshes = np.zeros((0, 478, 3), np.float32)  # (K, 478, 3) the targets' meshes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="marionette-generator") if threads > 1 else None
        self._threads = threads
        self.every = every if config.warp_guided else 1  # a whole-frame generator has no correction to carry
        self._since = 0  # frames rendered since the last one the generator drew
        self._carry: tuple[np.ndarray, np.ndarray] | None = None  # the last drawn frame's correction, its driven mesh

    def _landmark_image(self, meshes: np.ndarray) -> torch.Tensor:
        """(..., 478, 3) meshes in crop pixels -> (..., 3, s, s) landmark images at the model's size."""
        scale = self.model_size / self.crop_size
        points = mesh_to_ibug68(meshes) * scale  # (..., 68, 3)
        images = np.stack([render_landmarks(p, self.model_size) for p in points.reshape(-1, 68, 3)])
        return to_tensor(images.reshape(*points.shape[:-2], self.model_size, self.model_size, 3))

    @torch.no_grad()
    def prepare(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """(K, S, S, 3) uint8 target crops and (K, 478, 3) meshes in crop pixels: encode once."""
        resized = np.stack([cv2.resize(c, (self.model_size, self.model_size), interpolation=cv2.INTER_AREA)
                            for c in crops])  # (K, s, s, 3)
        images = to_tensor(resized)[None].to(self.device)  # (1, K, 3, s, s)
        landmarks = self._landmark_image(meshes)[None].to(self.device)  # (1, K, 3, s, s)
        with self.placement.autocast():
            self._cache = self.backend.encode_targets(images, landmarks)
        if self._warp is not None:
            self._warp.prepare(crops, meshes)
        self._meshes = meshes
        self._since, self._carry = 0, None
        labs = [cv2.cvtColor(c, cv2.COLOR_RGB2LAB)[face_mask(m, self.crop_size).astype(bool)].astype(np.float32)
                for c, m in zip(crops, meshes)]
        pixels = np.concatenate(labs)  # (N, 3) Lab of every target face pixel
        self._lab_mean, self._lab_std = pixels.mean(0), pixels.std(0)

    def _generate(self, landmarks: torch.Tensor, warps: torch.Tensor | None) -> torch.Tensor:
        """landmarks (B, 3, s, s) and warps (B, 3, s, s) or None -> (B, 3, s, s) images in [-1, 1], in one
        generator call; any thread may call it (autocast and no_grad are per thread)."""
        assert self._cache is not None, "prepare() the targets first"
        cache = self._cache if len(landmarks) == 1 else self._cache.repeat(len(landmarks))
        with torch.no_grad(), self.placement.autocast():
            return self.backend.generate(landmarks, cache, warps).image

    @torch.no_grad()
    def render(self, driven_mesh: np.ndarray, mouth: DriverMouth | None = None) -> np.ndarray:
        """(478, 3) driven mesh in crop pixels -> (S, S, 3) uint8."""
        return self.render_batch(driven_mesh[None], [mouth])[0]

    def _drawn(self, driven_meshes: np.ndarray) -> list[int]:
        """Which of a batch's (B, 478, 3) driven meshes the generator draws: the `every`-th frame after the
        last one drawn; from the second after it, one whose face moved (CARRY_STEP) or lips moved
        (CARRY_MOVED) since; any frame with none drawn before it or far from the last drawn one
        (CARRY_FAR); and any whose eye opened or closed by more than CARRY_BLINK since (of the eyes it shows:
        a turned-away eye's lids are the face mesh's guess, which moves from frame to frame)."""
        drawn, last = [], None if self._carry is None else self._carry[1]
        measured = None if last is None else (eye_ratios(last), float(lip_gap(last)))  # the last drawn's, once
        for i, mesh in enumerate(driven_meshes):
            self._since += 1
            if last is None or self._since >= self.every or self._draw_again(mesh, last, *measured):
                drawn.append(i)
                last, self._since = mesh, 0
                measured = (eye_ratios(last), float(lip_gap(last)))
        return drawn

    def _draw_again(self, mesh: np.ndarray, last: np.ndarray, last_ratios: np.ndarray, last_gap: float) -> bool:
        """Whether (478, 3) `mesh`, `self._since` frames after the drawn `last` (its eye ratios (2,) and lip
        gap), is the generator's to draw."""
        span, moved = eye_span(mesh), np.linalg.norm(mesh[:, :2] - last[:, :2], axis=-1)  # (478,) pixels
        if moved.max() > CARRY_FAR * span or (np.abs(eye_ratios(mesh) - last_ratios) * seen_eyes(mesh)).max() > CARRY_BLINK:
            return True
        return self._since > 1 and (moved.mean() > CARRY_STEP * span or abs(float(lip_gap(mesh)) - last_gap) > CARRY_MOVED)

    @torch.no_grad()
    def render_batch(self, driven_meshes: np.ndarray, mouths: Sequence[DriverMouth | None] | None = None
                     ) -> np.ndarray:
        """(B, 478, 3) driven meshes in crop pixels -> (B, S, S, 3) uint8, drawn in one generator call
        (cheaper per frame than B calls) or in `threads` run at once. `mouths`: the drivers', for the
        warp a warp-guided model corrects (the others draw no mouth from the driver). With `every` > 1
        only some frames are the generator's; the others carry the last one's correction."""
        assert self._cache is not None, "prepare() the targets first"
        s, crop = self.model_size, self.crop_size
        drawn = self._drawn(driven_meshes) if self.every > 1 else list(range(len(driven_meshes)))
        warps_full = list(self._warp.render_batch(driven_meshes, mouths)) if self._warp is not None else None
        images = warps = torch.zeros((0, 3, s, s))  # (D, 3, s, s) in [-1, 1]: the drawn frames' (none: all carried)
        if drawn:
            landmarks = self._landmark_image(driven_meshes[drawn]).to(self.device)  # (D, 3, s, s)
            warps = None if warps_full is None else to_tensor(np.stack(
                [cv2.resize(warps_full[i], (s, s), interpolation=cv2.INTER_AREA) for i in drawn])).to(self.device)
            calls = min(self._threads, len(drawn))
            if self._pool is None or calls == 1:
                images = self._generate(landmarks, warps)
            else:
                parts = zip(landmarks.tensor_split(calls), [None] * calls if warps is None else warps.tensor_split(calls))
                images = torch.cat(list(self._pool.map(lambda part: self._generate(*part), parts)))
        if not torch.isfinite(images).all():
            raise InputError(f"{self.source}: the generator produced non-finite pixels (NaN or inf); "
                             "its weights are unusable")
        if warps_full is not None:  # B x (S, S, 3) uint8: the warp a warp-guided generator corrects, at the crop size
            generated = ((images - warps).float() * 127.5).permute(0, 2, 3, 1).cpu().numpy()  # (D, s, s, 3) levels
            corrections = np.empty((len(driven_meshes), s, s, 3), np.float32)
            for i, mesh in enumerate(driven_meshes):
                if i in drawn:
                    corrections[i] = generated[drawn.index(i)]
                    if self.every > 1:  # kept for the frames after it
                        self._carry = (corrections[i].copy(), mesh)
                else:  # ours: the last drawn frame's correction, carried to this one (at the generator's size)
                    corrections[i] = carried_correction(self._carry[0], self._carry[1] * (s / crop), mesh * (s / crop))
            corrections *= still_gate(driven_meshes, self._meshes)[:, None, None, None].astype(np.float32)
            teeth = [i for i, mouth in enumerate(mouths or []) if mouth is not None]  # frames given the driver's mouth
            if teeth:
                corrections[teeth] *= mouth_gate(driven_meshes[teeth], crop, s)[..., None]  # the warp's opening kept
            return np.stack([np.clip(w + cv2.resize(c, (crop, crop), interpolation=cv2.INTER_CUBIC) + 0.5, 0, 255)
                             .astype(np.uint8) for w, c in zip(warps_full, corrections)])
        outs = to_uint8(images)  # (B, s, s, 3)
        return np.stack([match_colours(cv2.resize(o, (crop, crop), interpolation=cv2.INTER_CUBIC),
                                       face_mask(mesh, crop), self._lab_mean, self._lab_std)
                         for o, mesh in zip(outs, driven_meshes)])

