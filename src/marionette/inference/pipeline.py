"""Reenactment as a pipeline object: the CLI, the demo, the app, the evaluator and the bench all call this.

Targets (1..K images, or frames sampled from a target video; or crops a dataset stored) are
prepared once; then `render_frames`, the one per-frame call, streams the driver frame by frame:
track its face mesh, smooth it, move its motion onto the target's face (landmark transformer or
raw landmarks), render, paste back into the target photo. `record` marks each frame as synthetic
and writes it. Decoding, tracking, rendering and writing overlap, each in a thread of its own
(a frame is tracked while the one before it is rendered; a file driver's frames are tracked
MESH_BATCH at a time where the face mesh runs on a GPU, else one by one). With `mouth=driver` each
driver frame's mouth goes to the renderer too, for a mouth that opens wider than the targets'. A
driver whose face is tracked already (a dataset clip's meshes, `TrackedDriver`) is driven and
rendered the same way. Preprocessing
(face mesh, crop) is the one the dataset builder uses, so crops match between training and use.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from tqdm import tqdm

from marionette.errors import InputError
from marionette.inference.config import RENDERERS, ReenactConfig
from marionette.inference.driving import DriverReference, Driving
from marionette.inference.io import MILLISECOND, DriverSource, FrameWriter, open_driver
from marionette.inference.renderers import Renderer, generator_renderer, make_renderer
from marionette.inference.smoothing import OneEuroFilter
from marionette.inference.stages import Stages
from marionette.landmark_transformer.model import DEFAULT_PATH, LandmarkTransformer
from marionette.landmarks.crop import CropBox, PasteBack, crop_image
from marionette.landmarks.frontal import frontal_mesh
from marionette.landmarks.layout import MESH_EYE_OPENINGS, MESH_INNER_LIPS
from marionette.landmarks.mesh import LARGEST, MESH_BATCH, FaceMesh, detect_face, frame_chunks, pick_face
from marionette.media import IMAGE_EXTS, iter_video, load_image, probe_video
from marionette.outputs import check_media_output, check_one_image_output
from marionette.provenance import Watermark, container_tags
from marionette.warp import DriverMouth, driver_mouth, skin_colour

T = TypeVar("T")
log = logging.getLogger(__name__)


AUTO_SIZE = (256, 512)  # the crop sides size=0 chooses from: at least the renderers' usual, at most 4x its pixels


@dataclass(frozen=True)
class Target:
    """A target photo prepared once: where its face is, and the renderer's view of it."""

    image: np.ndarray  # (H, W, 3) the original photo
    box: CropBox  # its head crop
    crop: np.ndarray  # (S, S, 3) its head crop
    mesh: np.ndarray  # (478, 3) face mesh in crop pixels
    paste: PasteBack  # puts a rendered crop back into `image`


@dataclass(frozen=True)
class TrackedDriver:
    """A driver whose face is tracked already, as a dataset clip's: its reference face is found over
    all its meshes (a file driver's over its first neutral_seconds), then the frames `drawn` are driven
    (and, given their crops, their mouths shown as a file driver's are)."""

    meshes: np.ndarray  # (N, 478, 3) in crop pixels, of crops the targets' size
    drawn: Sequence[int]  # the frames rendered, in this order
    frames: np.ndarray | None = None  # (len(drawn), S, S, 3) their crops, for mouth=driver (None: meshes alone)


@dataclass(frozen=True)
class RenderedFrame:
    """One frame of `render_frames`."""

    driver: np.ndarray | None  # (H, W, 3) the driver frame (None: a TrackedDriver's)
    driven: np.ndarray  # (478, 3) the mesh the renderer drew, in crop pixels
    output: np.ndarray  # (S, S, 3) uint8 the rendered crop, pasted back or side by side as configured
    at: Fraction | None  # its time in seconds (None: untimed)


FAST = 10.0  # ours: the One-Euro cut-off's factor on the parts that move fast (the lids' rims and the lips)


def _fast_parts() -> np.ndarray:
    """(478, 1) the One-Euro cut-off's factor per mesh vertex (ours): FAST on the lids' rims (a 2-frame blink
    keeps its depth) and on the lips, within a quarter of the mouth's width of the inner lips, falling to 1 at
    half of it (the outer lips filtered at the face's cut-off lagged the inner ones: a mouth snapping shut
    drew lips half again as thick), measured on the frontal mean mesh."""
    mesh = frontal_mesh()[:, :2]
    lips = mesh[MESH_INNER_LIPS]  # (20, 2)
    near = np.linalg.norm(mesh[:, None] - lips[None], axis=-1).min(1) / np.linalg.norm(lips[10] - lips[0])  # (478,)
    boost = 1 + (FAST - 1) * np.clip((0.5 - near) / 0.25, 0, 1)
    boost[MESH_EYE_OPENINGS.ravel()] = FAST
    return boost[:, None]


FAST_PARTS = _fast_parts()
STAGES = ("decode", "landmarks", "transform", "render", "paste", "mark", "encode")  # in a frame's order


@dataclass
class RunStats:
    frames: int = 0  # frames written
    decoded: int = 0  # driver frames read
    faceless: int = 0  # driver frames without a face (the last good landmarks were held)
    truncated: int = 0  # frames the driver announced when fewer could be decoded (0: all were)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # busy time per stage (STAGES)
    wall: float = 0.0  # wall-clock seconds from the first frame asked for to the last written
    cpu: float = 0.0  # CPU seconds of the whole process (every thread) over the same span

    def per_frame(self, seconds: float) -> float:
        """Milliseconds per written frame."""
        return 1000 * seconds / max(self.frames, 1)

    def table(self) -> str:
        """Each stage's busy time per frame (the stages overlap, so they add up to more than the
        wall clock), then the wall clock: what the frames/s of a run is."""
        rows = [f"| {stage} (busy) | {self.per_frame(self.seconds[stage]):.1f} |" for stage in STAGES]
        rows.append(f"| sum of the stages | {self.per_frame(sum(self.seconds.values())):.1f} |")
        rows.append(f"| CPU time, every thread | {self.per_frame(self.cpu):.1f} |")
        rows.append(f"| **wall clock** (stages overlapped): {self.frames / self.wall if self.wall else 0:.1f} "
                    f"frames/s | {self.per_frame(self.wall):.1f} |")
        return "| stage | ms/frame |\n|---|---:|\n" + "\n".join(rows)


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Scale `image` down (area filter) so that its longer side is at most `max_side` (0 = as is)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _show(frame: np.ndarray) -> int:
    """Show an RGB frame in the preview window; the key the user pressed (-1: none)."""
    try:
        cv2.imshow("marionette (q: stop, n: neutral face now)", frame[..., ::-1])
        key = cv2.waitKey(1)
        return key & 0xFF if key >= 0 else -1
    except cv2.error:
        raise InputError("preview=true needs a display (OpenCV could not open a window)") from None


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    items = iter(items)
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _target_images(paths: list[str], count: int) -> list[tuple[str, np.ndarray]]:
    """Target photos, or `count` frames evenly sampled from each target video."""
    images = []
    for spec in paths:
        path = Path(spec)
        if path.suffix.lower() in IMAGE_EXTS or not path.exists():
            images.append((spec, load_image(path)))
            continue
        total = probe_video(path).frames
        wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
        images += [(f"{spec}#{i}", f) for i, f in enumerate(iter_video(path)) if i in wanted]
    return images


class _DriverMouths:
    """A driver's mouth frame by frame (`mouth=driver`), with the light it is seen in: its skin's
    colour, a running mean over the frames that show its cheeks."""

    def __init__(self) -> None:
        self.skin: np.ndarray | None = None  # (3,) RGB

    def __call__(self, frame: np.ndarray, mesh: np.ndarray) -> DriverMouth:
        """The mouth of an (H, W, 3) driver frame with its (478, 3) mesh in frame pixels."""
        skin = skin_colour(frame, mesh)
        if skin is not None:
            self.skin = skin if self.skin is None else 0.9 * self.skin + 0.1 * skin
        return driver_mouth(frame, mesh, self.skin)


class ReenactPipeline:
    def __init__(self, config: ReenactConfig = ReenactConfig(), checkpoint: str | Path | None = None,
                 landmark_transformer: str | Path | None = None):
        """`checkpoint`: a trained generator (an inference export of `marionette train`) for the
        neural renderer (default: the shipped one); its crop settings are the ones it was trained
        with. `landmark_transformer`: a fitted file (default: the one shipped with marionette); used
        when config.transform is on."""
        if config.preview and sys.platform.startswith("linux") and not (
                os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("preview=true needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
        self.config = config
        self._checkpoint = checkpoint
        self._auto = config.renderer == "auto" and checkpoint is None  # the shipped generator; a webcam's: the warp
        self.size = config.size or AUTO_SIZE[0]  # the crop side now (auto: set by the first target)
        self._use(config.renderer if config.renderer != "auto" else (
            "neural" if checkpoint is None else generator_renderer(checkpoint)))
        transformer = LandmarkTransformer.load(landmark_transformer or DEFAULT_PATH) if config.transform else None
        self.driving = Driving(transformer, config.mode, config.alpha, self.size, config.reference,
                               config.expression, config.max_turn)
        self.targets: list[Target] = []
        self.watermark = Watermark()
        self._neutral_now = threading.Event()  # set_neutral() was called

    @property
    def renderer_name(self) -> str:
        return self.renderer.name

    def set_targets(self, paths: list[str]) -> None:
        """Detect, crop and prepare 1..K target photos (once per target set)."""
        if not paths:
            raise InputError("no target given")
        photos, boxes, faces = [], [], []
        for name, image in _target_images(paths, self.config.target_frames):
            image = _fit(image, self.config.max_side)
            faces.append(detect_face(image, name, self.config.face).mesh)
            photos.append(image)
            boxes.append(self.crop.box(faces[-1]))
        if not self.config.size:  # ours: as sharp as the first target's photo, within AUTO_SIZE
            self._resize(int(np.clip(64 * np.ceil(boxes[0].side / 64), *AUTO_SIZE)))
        size = self.size
        self._prepare(photos, boxes, [crop_image(p, b, size) for p, b in zip(photos, boxes)],
                      [b.to_crop(m, size) for b, m in zip(boxes, faces)])

    def _use(self, name: str) -> None:
        """Draw with the renderer `name` (RENDERERS) from now on, at the current crop size."""
        if RENDERERS[name].checkpoint:  # a generator's: onnxruntime's sessions take torch's thread count
            # measured (cpu preset, 2 shared cores, stages overlapped): 20.4 frames/s with 1 thread, 3.5 with 2,
            # as torch's threads wait on each other whenever the tracker, the decoder or another process holds a core
            torch.set_num_threads(self.config.torch_threads)
        self._make_renderer = functools.partial(make_renderer, name, checkpoint=self._checkpoint,
                                                device=self.config.device, precision=self.config.precision,
                                                threads=self.config.render_threads, every=self.config.generator_every)
        self.renderer: Renderer = self._make_renderer(self.size)
        self.crop = self.renderer.crop  # crops as the renderer needs them: a generator's are those it was trained on

    def _resize(self, size: int) -> None:
        """Work at crops of `size` pixels from now on (a new renderer when it changes)."""
        if size != self.size:
            self.size = self.driving.size = size
            self.renderer = self._make_renderer(size)

    def set_target_crops(self, crops: np.ndarray, meshes: np.ndarray) -> None:
        """Targets already cropped, e.g. a dataset's frames: (K, S, S, 3) uint8 crops and their
        (K, 478, 3) meshes in crop pixels. Each crop is then its own photo."""
        if not self.config.size:
            self._resize(crops.shape[1])
        size = self.size
        assert crops.shape[1:] == (size, size, 3) and meshes.shape[1:] == (478, 3), (crops.shape, meshes.shape)
        self._prepare(list(crops), [CropBox.whole(size)] * len(crops), list(crops), list(meshes))

    def _prepare(self, photos: list[np.ndarray], boxes: list[CropBox], crops: list[np.ndarray],
                 meshes: list[np.ndarray]) -> None:
        size = self.size
        self.targets = [Target(photo, box, crop, mesh, PasteBack(photo.shape, box, size))
                        for photo, box, crop, mesh in zip(photos, boxes, crops, meshes)]
        self.renderer.prepare(np.stack(crops), np.stack(meshes))
        self.driving.set_targets(np.stack(meshes))

    def render_frames(self, driver: DriverSource | TrackedDriver, stats: RunStats | None = None
                      ) -> Iterator[RenderedFrame]:
        """The pipeline's per-frame call: each frame of `driver` driven, rendered and (as configured)
        pasted back, in order. A DriverSource's frames are decoded, tracked and rendered in threads
        of their own (inference/stages.py), a TrackedDriver's rendered here; pasting runs in the
        caller's thread, between the frames it takes. `stats` adds up the stages' times."""
        if not self.targets:
            raise InputError("set_targets() first")
        stats = RunStats() if stats is None else stats
        if isinstance(driver, TrackedDriver):
            assert not self.config.side_by_side, "side_by_side needs the driver's frames"
            yield from self._finish(self._render_tracked(driver, stats), stats)
            return
        # a file driver's stages run two batches ahead of the next (the tracker fills the next batch while one is
        # drawn: with the generator 4% less wall clock a CPU second than 2 ahead); a webcam's two, as before (a queued frame is delay)
        ahead = 2 if driver.live else 2 * (self.config.batch if self.renderer.batched else 1)
        with FaceMesh(video=True, max_faces=max(2, self.config.driver_face + 1), device=self.config.device) as tracker, \
                Stages(ahead) as stages:
            # frames per tracking call: MESH_BATCH on a GPU (one batched detection); on the CPU batching buys nothing
            # (docs/face_mesh.md) and would delay the first frame, and a webcam's must add no delay: one by one
            chunk = MESH_BATCH if tracker.device != "cpu" and not driver.live else 1
            decoded = stages.start(self._decode(driver, stats), depth=max(stages.depth, chunk))  # the next chunk decodes meanwhile
            tracked = stages.start(self._track(decoded, tracker, driver.fps, chunk, stats))
            yield from self._finish(stages.start(self._render(tracked, driver, stats)), stats)
        if stats.frames == 0:
            which = "no face" if self.config.driver_face == LARGEST else (
                f"no face {self.config.driver_face} (numbered from 0, left to right; driver_face=-1: the largest)")
            raise InputError(f"{driver.spec}: {which} found in any driver frame")

    def drive(self, driver: TrackedDriver) -> np.ndarray:
        """(len(driver.drawn), 478, 3) the meshes `render_frames` draws for `driver`, in crop pixels
        (what another method's video of it is asked to show)."""
        reference = self.driving.reference(driver.meshes, CropBox.whole(self.size))
        return np.stack([self.driving(driver.meshes[i], reference) for i in driver.drawn])

    def _finish(self, rendered: Iterator[tuple[np.ndarray | None, np.ndarray, np.ndarray, Fraction | None]],
                stats: RunStats) -> Iterator[RenderedFrame]:
        """Paste each rendered crop back (or show it side by side), timing the whole stream."""
        target = self.targets[0]
        started, cpu = time.perf_counter(), time.process_time()
        try:
            for frame, driven, crop, at in rendered:
                start = time.perf_counter()
                output = target.paste(target.image, crop) if self.config.paste_back else crop
                if self.config.side_by_side:
                    output = self._side_by_side(frame, target.crop, output)
                stats.seconds["paste"] += time.perf_counter() - start
                stats.frames += 1
                yield RenderedFrame(frame, driven, output, at)
        finally:
            stats.wall += time.perf_counter() - started
            stats.cpu += time.process_time() - cpu

    def _decode(self, driver: DriverSource, stats: RunStats) -> Iterator[tuple[np.ndarray, Fraction | None]]:
        """Stage 1: the driver's (frame, time) pairs, at most max_frames."""
        with contextlib.closing(driver.frames()) as source:
            frames = itertools.islice(source, self.config.max_frames or None)
            while True:
                start = time.perf_counter()
                item = next(frames, None)
                stats.seconds["decode"] += time.perf_counter() - start
                if item is None:
                    return
                stats.decoded += 1
                yield item

    def _track(self, decoded: Iterator[tuple[np.ndarray, Fraction | None]], tracker: FaceMesh, fps: float,
               chunk: int, stats: RunStats) -> Iterator[tuple[np.ndarray, np.ndarray, Fraction | None]]:
        """Stage 2: (frame, smoothed (478, 3) driver mesh, time), in order; a frame without a face
        holds the last mesh; frames before the first face are dropped. Frames are tracked `chunk` at
        a time (one `detect_batch` call: the torch mesh detects them in one batch)."""
        smooth = OneEuroFilter(fps, self.config.smooth_min_cutoff, self.config.smooth_beta, boost=FAST_PARTS)
        last: np.ndarray | None = None
        for group in frame_chunks(decoded, lambda item: item[0], chunk):
            start = time.perf_counter()
            found = tracker.detect_batch(np.stack([frame for frame, _ in group]))  # from (B, H, W, 3) frames
            tracked = []
            for (frame, at), faces in zip(group, found):
                face = pick_face(faces, self.config.driver_face)
                if face is not None:
                    last = smooth(face.mesh)
                else:
                    stats.faceless += 1
                if last is not None:
                    tracked.append((frame, last, at))
            stats.seconds["landmarks"] += time.perf_counter() - start
            yield from tracked

    def _render(self, tracked: Iterator[tuple[np.ndarray, np.ndarray, Fraction | None]], driver: DriverSource,
                stats: RunStats) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, Fraction | None]]:
        """Stage 3: (frame, driven (478, 3) mesh, rendered (S, S, 3) crop, time): the driver's motion
        moved onto the target's face, then drawn. A file driver's first neutral_seconds are tracked
        before its first frame is drawn, so relative mode measures from its neutral face; a webcam's
        reference is re-estimated from the frames so far for as long (or reset to the current frame
        by `set_neutral`). A batched renderer (neural, onnx) draws a file driver's frames `batch` at a
        time (one generator call); a webcam's go one by one, adding no delay."""
        batch = self.config.batch if self.renderer.batched and not driver.live else 1
        window = max(1, round(self.config.neutral_seconds * driver.fps)) if self.config.reference == "neutral" else 1
        still = not driver.live and Path(driver.spec).suffix.lower() in IMAGE_EXTS
        ahead = [] if driver.live else list(itertools.islice(tracked, window))  # a file's window, tracked first
        seen = [mesh for _, mesh, _ in ahead]  # (478, 3) driver meshes the reference is estimated from
        reference: DriverReference | None = None
        lit = _DriverMouths()
        for group in itertools.chain(_chunks(ahead, batch), _chunks(tracked, batch)):
            start = time.perf_counter()
            if self._neutral_now.is_set():  # the user says: this face is neutral
                self._neutral_now.clear()
                seen, window, reference = [group[0][1]], 1, None
            if driver.live and len(seen) < window:  # a webcam's window grows frame by frame
                seen.append(group[0][1])
                reference = None
            if reference is None:
                box = self.crop.box(seen[0])
                reference = self.driving.reference(np.stack(seen), box, still)
            driven = np.stack([self.driving(mesh, reference) for _, mesh, _ in group])  # (B, 478, 3)
            mouths = [lit(frame, mesh) for frame, mesh, _ in group] if self.config.mouth == "driver" else None
            stats.seconds["transform"] += time.perf_counter() - start
            for (frame, _, at), mesh, crop in zip(group, driven, self._draw(driven, stats, mouths)):
                yield frame, mesh, crop, at

    def _render_tracked(self, driver: TrackedDriver, stats: RunStats
                        ) -> Iterator[tuple[None, np.ndarray, np.ndarray, None]]:
        """(None, driven (478, 3) mesh, rendered (S, S, 3) crop, None) per drawn frame of a tracked
        driver; a batched renderer draws `batch` at a time, as a file driver's."""
        start = time.perf_counter()
        driven = self.drive(driver)  # (F, 478, 3)
        stats.seconds["transform"] += time.perf_counter() - start
        batch = self.config.batch if self.renderer.batched else 1
        lit = _DriverMouths() if self.config.mouth == "driver" and driver.frames is not None else None
        for first in range(0, len(driven), batch):
            group = driven[first : first + batch]  # (B, 478, 3)
            mouths = None if lit is None else [lit(driver.frames[j], driver.meshes[driver.drawn[j]])
                                               for j in range(first, first + len(group))]
            for mesh, crop in zip(group, self._draw(group, stats, mouths)):
                yield None, mesh, crop, None

    def _draw(self, driven: np.ndarray, stats: RunStats, mouths: list[DriverMouth] | None = None) -> np.ndarray:
        """(B, 478, 3) driven meshes (and their driver frames' mouths) -> (B, S, S, 3) uint8 crops, in
        one render_batch call."""
        start = time.perf_counter()
        crops = self.renderer.render_batch(driven, mouths)
        stats.seconds["render"] += time.perf_counter() - start
        return crops

    def set_neutral(self) -> None:
        """Take the driver's face at the next frame drawn as its neutral face (relative mode)."""
        self._neutral_now.set()

    def _side_by_side(self, driver: np.ndarray, target: np.ndarray, result: np.ndarray) -> np.ndarray:
        """driver | target | result, each scaled to the result's height."""
        h = result.shape[0]

        def fit(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, (round(image.shape[1] * h / image.shape[0]), h), interpolation=cv2.INTER_AREA)

        return np.concatenate([fit(driver), fit(target), result], axis=1)

    def run(self, targets: list[str], driver: str, out: str | Path, progress: bool = True,
            on_frame: Callable[[np.ndarray], None] | None = None) -> RunStats:
        """Reenact `targets` with `driver` into `out` (.mp4/.mov/.mkv/.gif, a PNG folder, or .png for
        a one-frame driver). `out` may not be an input, nor anything that holds the user's files (see
        marionette.outputs). `on_frame` gets each output frame, marked, once it is written (a progress
        bar, a virtual camera)."""
        check_media_output(out, [*targets, driver], self.config.overwrite)
        source = open_driver(driver)
        wanted = "warp" if source.live else "neural"  # ours: the shipped generator draws ~5 frames/s on 2 CPU cores
        if self._auto and self.renderer.name != wanted:  # a pipeline run again takes each driver's own
            if source.live:
                log.info("a webcam driver: the warp renderer, which keeps up in real time (renderer=neural: the generator)")
            self._use(wanted)
        total = min(source.announced or 0, self.config.max_frames or source.announced or 0) or None
        check_one_image_output(out, driver, total)
        self.set_targets(targets)
        stats = RunStats()
        tags = container_tags(self.renderer_name, targets=targets, driver=driver)  # inputs hashed for C2PA
        bar = tqdm(total=total, unit="frame", desc="reenact", disable=not progress)

        def written(marked: np.ndarray) -> None:
            bar.update()
            if on_frame is not None:
                on_frame(marked)

        with FrameWriter(Path(out), source.rate, tags, audio=source.audio, crf=self.config.crf,
                         time_base=source.time_base or MILLISECOND, replace=self.config.overwrite) as writer:
            try:
                self.record(source, writer, stats, written)
            except KeyboardInterrupt:  # how a webcam session ends: keep what was recorded
                if not (source.live and stats.frames):
                    raise
            finally:
                if self.config.preview:
                    cv2.destroyAllWindows()
        bar.close()
        return stats

    def record(self, source: DriverSource, writer: FrameWriter, stats: RunStats,
               on_frame: Callable[[np.ndarray], None] | None = None) -> None:
        """Stream `source` through `render_frames` into `writer`, every frame marked as synthetic, until
        the driver ends (or the preview window is closed): what `run` and the bench write. `on_frame`
        gets each frame once written."""
        with contextlib.closing(self.render_frames(source, stats)) as frames:  # closed: its threads stop here
            for rendered in frames:
                start = time.perf_counter()
                marked = self.watermark.embed(rendered.output)  # every output frame says it is synthetic
                marked_at = time.perf_counter()
                writer.write(marked, at=rendered.at)  # a video's or webcam's own timestamps, if it has them
                stats.seconds["mark"] += marked_at - start
                stats.seconds["encode"] += time.perf_counter() - marked_at
                if on_frame is not None:
                    on_frame(marked)
                key = _show(marked) if self.config.preview else -1
                if key in (ord("q"), 27):  # q or Esc: stop, keeping the output
                    return
                if key == ord("n"):
                    self.set_neutral()
        self._check_complete(source, stats)  # the driver ran out: did it give all it announced?

    def _check_complete(self, source: DriverSource, stats: RunStats) -> None:
        """Say so (one line) when a driver gave fewer frames than its container announced."""
        if source.live or stats.decoded >= source.announced or stats.decoded == self.config.max_frames:
            return
        stats.truncated = source.announced
        log.warning(f"{source.spec}: decoded {stats.decoded} of the {source.announced} frames it announces "
                    "(truncated or corrupt); the output ends there")
