"""Measure the invisible watermark of marionette.provenance on real faces and write the figures
into docs/provenance.md (between its `measured` markers).

Marked clips: every talking-head video of ../shared/data/videos and assets/videos (deduplicated by
content), cut into 3-second segments, each used twice: at its own size (256-512 px) and as a
256 px centre crop (the size marionette renders). Each marked clip goes through every edit of
EDITS (PyAV's libx264; crops keeping 50% of the area at five offsets, and 12%; mirror; rescale;
pillarboxed into 16:9 and 9:16; beside another clip; a quarter of the width of a page of text;
turned 2-5 degrees) and is checked with `Watermark.detect` (the frame's own grid, then the
search), timed. False positives: every video (its first 3 s) and image under ../shared/data,
timed, the shared photos' variants, and random keys on all of them (the empirical null, for both
detectors).

    .venv/bin/python tools/measure_watermark.py            # every marked clip (50)
    .venv/bin/python tools/measure_watermark.py --clips 4 --no-write   # a quick look: 9 minutes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from marionette.media import IMAGE_EXTS, VIDEO_EXTS, iter_video, load_image, probe_video
from marionette.provenance import (
    CELLS,
    PHASES,
    SEARCH_ANGLES,
    SEARCH_HYPOTHESES,
    SEARCH_SCALES,
    SEARCH_THRESHOLD,
    THRESHOLD,
    TILE,
    Detection,
    Watermark,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VIDEO_DIRS = (SHARED / "videos", REPO / "assets" / "videos")
PHOTO_DIRS = (SHARED / "faces", SHARED / "paintings")
DOC = REPO / "docs" / "provenance.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
COMMAND = ".venv/bin/python tools/measure_watermark.py"

SEGMENT_SECONDS = 3.0
MAX_SEGMENTS_PER_VIDEO = 3  # keeps the run to minutes on 2 cores
CROP_SIZE = 256  # the second variant of each segment: a centre crop at marionette's output size
JPEG_QUALITY = 85  # marked photos saved as JPEG at this quality
NULL_KEYS = 500  # random keys per unmarked item for the empirical null of the frame's own grid
SEARCH_NULL_KEYS = 3  # random keys per unmarked clip for the empirical null of the search (each a full search)
CROP_SIDE = np.sqrt(0.5)  # a crop keeping 50% of the area
SMALL_CROP_SIDE = np.sqrt(0.12)  # a crop keeping 12% of the area
PAGE_WIDTHS = 4  # a screenshot: the clip a quarter of the width of a 16:9 page
OFFSETS = {"top-left": (0, 0), "top-right": (0, 1), "centre": (0.5, 0.5), "bottom-left": (1, 0), "bottom-right": (1, 1)}


@dataclass(frozen=True)
class Clip:
    name: str
    fps: float
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class Take:
    """What an edit needs besides the marked frames."""

    fps: float
    index: int  # the clip's index: picks the crop offset
    beside: list[np.ndarray]  # unmarked frames of another clip, for the side-by-side edit


def distinct_files(folders=VIDEO_DIRS, suffixes: tuple[str, ...] = (".mp4",)) -> list[Path]:
    """Files of `folders` (recursively) with one of `suffixes`, one per distinct content."""
    seen, files = set(), []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                files.append(path)
    return files


def centre_crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return cv2.resize(frame[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)


def clips() -> list[Clip]:
    """3-second segments of every video, at native size and as a centre crop."""
    out = []
    for path in distinct_files():
        fps = probe_video(path).fps or 25.0
        length = round(SEGMENT_SECONDS * fps)
        frames = [f for _, f in zip(range(length * MAX_SEGMENTS_PER_VIDEO), iter_video(path))]
        for i in range(len(frames) // length):
            segment = frames[i * length : (i + 1) * length]
            out.append(Clip(f"{path.stem}#{i}", fps, segment))
            out.append(Clip(f"{path.stem}#{i}@{CROP_SIZE}", fps, [centre_crop(f, CROP_SIZE) for f in segment]))
    return out


def first_seconds(path: Path) -> Clip:
    fps = probe_video(path).fps or 25.0
    return Clip(path.stem, fps, [f for _, f in zip(range(round(SEGMENT_SECONDS * fps)), iter_video(path))])


def h264(frames: list[np.ndarray], fps: float, crf: int, scale: float = 1.0) -> list[np.ndarray]:
    """Encode with libx264 (yuv420p) in memory after an optional rescale, and decode again."""
    h, w = frames[0].shape[:2]
    h, w = round(h * scale / 2) * 2, round(w * scale / 2) * 2
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps), options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            if frame.shape[:2] != (h, w):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def crop(frames: list[np.ndarray], at: tuple[float, float], side: float = CROP_SIDE) -> list[np.ndarray]:
    """The `side` x `side` window (default 50% of the area) at relative offset `at` (rows, cols)."""
    h, w = frames[0].shape[:2]
    ch, cw = round(h * side), round(w * side)
    top, left = round((h - ch) * at[0]), round((w - cw) * at[1])
    return [np.ascontiguousarray(f[top : top + ch, left : left + cw]) for f in frames]


def mirror(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(f[:, ::-1]) for f in frames]


def even(x: float) -> int:
    return round(x / 2) * 2


def framed(frames: list[np.ndarray], aspect: float) -> list[np.ndarray]:
    """Each frame centred, whole, in a black frame of `aspect` (width / height): pillarboxed or letterboxed."""
    h, w = frames[0].shape[:2]
    height, width = (h, max(even(h * aspect), w)) if w / h < aspect else (max(even(w / aspect), h), w)
    top, left = (height - h) // 2, (width - w) // 2
    return [np.pad(f, ((top, height - h - top), (left, width - w - left), (0, 0))) for f in frames]


def beside(frames: list[np.ndarray], other: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame to the right of another clip's frame, scaled to the same height (a side-by-side repost)."""
    h = frames[0].shape[0]
    size = (even(other[0].shape[1] * h / other[0].shape[0]), h)
    others = [cv2.resize(other[k % len(other)], size, interpolation=cv2.INTER_AREA) for k in range(len(frames))]
    return [np.hstack([o, f]) for o, f in zip(others, frames)]


@cache
def text_page(height: int, width: int) -> np.ndarray:
    """A light page covered in lines of dark word-like strokes, 12 px high (the busy part of a screenshot)."""
    rng = np.random.default_rng(0)
    page = np.full((height, width, 3), 245, np.uint8)
    for top in range(20, height - 32, 24):
        for left in range(20, width - 30, 9):
            if rng.random() < 0.7:
                page[top : top + 12, left : left + 6] = rng.integers(20, 90)
    return page


def on_page(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame a quarter of the width of a 16:9 page of text (a screenshot), right of centre."""
    h, w = frames[0].shape[:2]
    width = PAGE_WIDTHS * w
    page = text_page(even(width * 9 / 16), width)
    top, left = (page.shape[0] - h) // 3, width // 2
    out = []
    for frame in frames:
        shot = page.copy()
        shot[top : top + h, left : left + w] = frame
        out.append(shot)
    return out


def turned(frames: list[np.ndarray], degrees: float, zoom: float = 1.0) -> list[np.ndarray]:
    """Each frame turned counter-clockwise about its centre and zoomed, black corners."""
    h, w = frames[0].shape[:2]
    turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, zoom)
    return [cv2.warpAffine(f, turn, (w, h), flags=cv2.INTER_LINEAR) for f in frames]


def offset(take: Take) -> tuple[float, float]:
    return list(OFFSETS.values())[take.index % len(OFFSETS)]


Edit = Callable[[list[np.ndarray], Take], list[np.ndarray]]
EDITS: dict[str, Edit] = {  # name -> (marked frames, take) -> edited frames
    "H.264 CRF 23": lambda f, t: h264(f, t.fps, 23),
    "H.264 CRF 28": lambda f, t: h264(f, t.fps, 28),
    "0.5x downscale + H.264 CRF 23": lambda f, t: h264(f, t.fps, 23, 0.5),
    **{f"50% crop, {name} + H.264 CRF 23": partial(lambda f, t, at: h264(crop(f, at), t.fps, 23), at=at)
       for name, at in OFFSETS.items()},
    "mirror + H.264 CRF 23": lambda f, t: h264(mirror(f), t.fps, 23),
    "mirror + 50% crop (offset by clip) + H.264 CRF 28": lambda f, t: h264(crop(mirror(f), offset(t)), t.fps, 28),
    "50% crop (offset by clip) + 0.75x + H.264 CRF 23": lambda f, t: h264(crop(f, offset(t)), t.fps, 23, 0.75),
    "50% crop (offset by clip) + 1.5x + H.264 CRF 23": lambda f, t: h264(crop(f, offset(t)), t.fps, 23, 1.5),
    "12% crop (offset by clip) + H.264 CRF 23": lambda f, t: h264(crop(f, offset(t), SMALL_CROP_SIDE), t.fps, 23),
    "pillarboxed into 16:9 + H.264 CRF 23": lambda f, t: h264(framed(f, 16 / 9), t.fps, 23),
    "pillarboxed into 9:16 + H.264 CRF 23": lambda f, t: h264(framed(f, 9 / 16), t.fps, 23),
    "beside another clip + H.264 CRF 23": lambda f, t: h264(beside(f, t.beside), t.fps, 23),
    "a quarter of a 16:9 page of text + H.264 CRF 23": lambda f, t: h264(on_page(f), t.fps, 23),
    **{f"turned {d} degrees + H.264 CRF 23": partial(lambda f, t, d: h264(turned(f, d), t.fps, 23), d=d) for d in (2, 3, 5)},
    "turned -5 degrees, 1.1x zoom (stabilised) + H.264 CRF 23": lambda f, t: h264(turned(f, -5, 1.1), t.fps, 23),
}


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse > 0 else float("inf")


def ms_per_call(fn, items: list, repeats: int = 3) -> float:
    """Best of `repeats` passes over `items` (the machine is shared), in ms per item."""
    fn(items[0])  # the pattern cache is filled once per size
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - start) / len(items))
    return best * 1e3


def null_scores(residuals: list[np.ndarray], keys: int) -> np.ndarray:
    """z of each (T, T) folded residual against `keys` random keys: the empirical null distribution."""
    r = np.stack([x.ravel() for x in residuals])  # (N, T*T)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    cells = np.random.default_rng(12345).choice([-1.0, 1.0], size=(keys, TILE * TILE))  # (keys, T*T)
    return (r @ cells.T).ravel()  # (N * keys,)


def row(name: str, scores: list[float], expect_present: bool, threshold: float = THRESHOLD) -> str:
    hits = sum(s >= threshold for s in scores)
    rate = hits / len(scores)
    label = "detected" if expect_present else "false positives"
    return (
        f"| {name} | {len(scores)} | {label}: {hits} ({100 * rate:.1f}%) | "
        f"{min(scores):.1f} / {np.median(scores):.1f} / {max(scores):.1f} |"
    )


@dataclass(frozen=True)
class Timed:
    detection: Detection
    seconds: float  # Watermark.detect (frame's own grid over the frames, and the search when it ran)


def timed_detect(wm: Watermark, frames: list[np.ndarray], search: bool | None = None) -> Timed:
    start = time.perf_counter()
    detection = wm.detect(frames, search=search)
    return Timed(detection, time.perf_counter() - start)


def verdict_row(name: str, results: list[Timed]) -> str:
    """A marked edit: detected by either detector; scores of the frame's grid / of the search; seconds."""
    detections = [r.detection for r in results]
    hits = sum(d.present for d in detections)
    own = [d.score for d in detections]
    found = [d.search.score for d in detections if d.search is not None]
    searched = f"{min(found):.1f} / {np.median(found):.1f} ({len(found)} searched)" if found else "not needed"
    return (f"| {name} | {len(detections)} | {hits} ({100 * hits / len(detections):.1f}%) | "
            f"{np.median(own):.1f} ({sum(s >= THRESHOLD for s in own)} alone) | {searched} | "
            f"{np.mean([r.seconds for r in results]):.2f} |")


def false_positive_row(name: str, results: list[Timed]) -> str:
    """Unmarked files: largest z of each detector, files flagged by either, seconds per file."""
    detections = [r.detection for r in results]
    flagged = sum(d.present for d in detections)
    seconds = [r.seconds for r in results]
    return (f"| {name} | {len(results)} | {max(d.score for d in detections):.2f} | "
            f"{max(d.search.score for d in detections):.2f} | {flagged} | {np.mean(seconds):.2f} / {max(seconds):.2f} |")


def search_seconds(wm: Watermark, image: np.ndarray) -> float:
    """Seconds of one search on an (H, W, 3) image (best of 2: the machine is shared)."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        wm.search(luma)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the tables without updating docs/provenance.md")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N marked clips (0: all)")
    args = parser.parse_args()
    start = time.perf_counter()
    wm = Watermark()
    all_clips = clips()[: args.clips or None]
    photos = [load_image(p) for folder in PHOTO_DIRS for p in sorted(folder.glob("*.jpg"))]
    shared = distinct_files([SHARED], VIDEO_EXTS)
    shared_images = distinct_files([SHARED], IMAGE_EXTS)
    print(f"{len(all_clips)} marked clips of {SEGMENT_SECONDS:.0f} s, {len(shared)} shared clips, "
          f"{len(shared_images)} shared images, {len(photos)} photos", flush=True)

    marked_results: dict[str, list[Timed]] = {name: [] for name in EDITS}
    clip_psnr = []
    for i, clip in enumerate(all_clips):
        marked = [wm.embed(f) for f in clip.frames]
        clip_psnr.append(float(np.mean([psnr(a, b) for a, b in zip(clip.frames, marked)])))
        take = Take(clip.fps, i, all_clips[(i + 1) % len(all_clips)].frames)
        for name, edit in EDITS.items():
            marked_results[name].append(timed_detect(wm, edit(marked, take)))
        print(f"  {i + 1}/{len(all_clips)} marked clips, {time.perf_counter() - start:.0f} s", flush=True)

    keys = np.random.default_rng(54321).integers(1, 2**31, SEARCH_NULL_KEYS)
    unmarked, residuals, search_null = [], [], []
    for path in shared:
        clip = first_seconds(path)
        unmarked.append(timed_detect(wm, clip.frames, search=True))
        residuals.append(sum(wm.residual(f) for f in clip.frames))
        luma = np.mean([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in clip.frames], axis=0)
        search_null += [Watermark(key=int(k)).search(luma).score for k in keys]
    search_null = np.array(search_null)
    print(f"unmarked clips done, {time.perf_counter() - start:.0f} s", flush=True)
    unmarked_images = [timed_detect(wm, [load_image(p)], search=True) for p in shared_images]

    photo_marked_png = [timed_detect(wm, [wm.embed(p)]) for p in photos]
    photo_marked_jpeg = [timed_detect(wm, [jpeg(wm.embed(p), JPEG_QUALITY)]) for p in photos]
    photo_marked_crop = [timed_detect(wm, crop([jpeg(wm.embed(p), JPEG_QUALITY)], at)) for p in photos for at in OFFSETS.values()]
    photo_variants = [v for p in photos for v in (centre_crop(p, CROP_SIZE), cv2.resize(p, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))]
    photo_unmarked = [timed_detect(wm, [v], search=True) for v in photo_variants]
    photo_psnr = [psnr(p, wm.embed(p)) for p in photos]
    null = null_scores(residuals + [wm.residual(load_image(p)) for p in shared_images] + [wm.residual(v) for v in photo_variants],
                       NULL_KEYS)

    lp = next(c for c in all_clips if "@" not in c.name)
    sizes = {256: [centre_crop(f, 256) for f in lp.frames[:30]], 512: [centre_crop(f, 512) for f in lp.frames[:30]]}
    timing = {size: (ms_per_call(wm.embed, frames), ms_per_call(wm.score, frames), search_seconds(wm, frames[0]))
              for size, frames in sizes.items()}
    page_seconds = search_seconds(wm, cv2.resize(lp.frames[0], (1920, 1080), interpolation=cv2.INTER_LINEAR))

    lines = [
        f"Default key; square cells, {CELLS} across the shorter side, repeating a {TILE}x{TILE} key tile. "
        f"A file is marked when the frame's own grid scores z >= {THRESHOLD:.1f}, or the search "
        f"({SEARCH_HYPOTHESES:,} hypotheses: {len(SEARCH_SCALES)} scales ({SEARCH_SCALES[0]:.0f}-{SEARCH_SCALES[-1]:.0f} cells "
        f"across) x {len(SEARCH_ANGLES)} turns ({SEARCH_ANGLES[0]:+.0f} to {SEARCH_ANGLES[-1]:+.0f} degrees) x "
        f"{PHASES * PHASES} sub-cell offsets x {TILE * TILE} shifts x mirrored or not; tried coarse to fine) scores "
        f"z >= {SEARCH_THRESHOLD:.2f}. {len(all_clips)} marked clips of {SEGMENT_SECONDS:.0f} s (segments of "
        f"{len(distinct_files())} distinct videos, each at native size and as a {CROP_SIZE} px centre crop); "
        f"{len(shared)} distinct unmarked clips and {len(shared_images)} images (all of ../shared/data); "
        f"{len(photos)} photos and paintings. Seconds: `Watermark.detect` per clip or photo (decoding excluded).",
        "",
        "| marked clips, edit | clips | detected | own grid: median z (detected alone) | search: min / median z | s per clip |",
        "|---|---|---|---|---|---|",
        *(verdict_row(name, results) for name, results in marked_results.items()),
        verdict_row("marked photos, PNG (lossless)", photo_marked_png),
        verdict_row(f"marked photos, JPEG quality {JPEG_QUALITY}", photo_marked_jpeg),
        verdict_row(f"marked photos, JPEG {JPEG_QUALITY}, 50% crop at 5 offsets", photo_marked_crop),
        "",
        "| unmarked, every real file | files | own grid: max z | search: max z | flagged | s per file (mean / max) |",
        "|---|---|---|---|---|---|",
        false_positive_row("clips (first 3 s; videos/ and train/)", unmarked),
        false_positive_row("images (faces/, paintings/, hard/)", unmarked_images),
        false_positive_row(f"photos as a {CROP_SIZE} px crop and at 0.5x", photo_unmarked),
        "",
        "| unmarked, random keys | items | verdict | score min / median / max |",
        "|---|---|---|---|",
        row(f"clips and images, own grid, against {NULL_KEYS} random keys each", list(null), False),
        row(f"clips, search, against {SEARCH_NULL_KEYS} random keys each", list(search_null), False, SEARCH_THRESHOLD),
        "",
        f"Empirical null of the own grid (random keys): std {null.std():.2f}, P(z >= 3) = {np.mean(null >= 3):.2e} "
        f"(Gaussian: 1.35e-03), largest {null.max():.2f} of {null.size}. The search's largest z on unmarked "
        f"clips: {search_null.max():.2f} of {search_null.size} random-key searches (bound-derived threshold "
        f"{SEARCH_THRESHOLD:.2f}).",
        "",
        "| cost | value |",
        "|---|---|",
        f"| PSNR of the mark, clips (mean / min over clips) | {np.mean(clip_psnr):.1f} / {min(clip_psnr):.1f} dB |",
        f"| PSNR of the mark, photos (mean / min) | {np.mean(photo_psnr):.1f} / {min(photo_psnr):.1f} dB |",
        *(f"| embed / score at {size} px, per frame; search, once per file | {e:.2f} / {s:.2f} ms; {q:.2f} s |"
          for size, (e, s, q) in timing.items()),
        f"| search of a 1920x1080 frame (a page), once per file | {page_seconds:.2f} s |",
        "",
        f"Measured with `{COMMAND}{f' --clips {args.clips}' if args.clips else ''}` in "
        f"{time.perf_counter() - start:.0f} s (AMD EPYC, 2 shared CPU cores).",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
