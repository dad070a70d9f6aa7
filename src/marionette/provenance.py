"""Marking reenactment output as synthetic media, in two independent ways, and checking for it.

1. **Container tag.** `container_tags` gives the metadata every output carries: a human line under
   `comment` ("synthetic media: made by marionette 0.1.0 (renderer ...)") and a machine-readable
   `synthetic_media` key. Which keys reach the file depends on the muxer (measured with PyAV 18):
   mp4 and mov keep `comment`, `title`, `artist` (mp4 also `description`) but drop custom keys
   unless the muxer gets `MOV_MUXER_OPTIONS`; mkv/webm keep every key (upper-cased on read); the
   ffmpeg GIF muxer keeps none, so a GIF needs its comment written with PIL (`gif_comment`); PNG
   frames carry tEXt chunks (`png_info`). A tag is easy to read and just as easy to strip.

2. **Invisible watermark** (`Watermark`). A keyed presence mark that survives H.264, not a payload:
   - The key seeds a GRID x GRID pattern of independent +-1 cells laid over the frame in normalized
     coordinates (a cell is 1/GRID of the width and of the height, whatever the resolution), with
     its cell edges softened by a Gaussian. The pattern is added to luma (the same offset on R, G
     and B leaves Cb and Cr unchanged), scaled by local texture so flat skin and sky get less.
   - Detection shrinks the luma to one mean per cell (`cv2.INTER_AREA` to GRID x GRID), removes
     the image's own smooth content with a cell-level high-pass (cell minus the mean of its four
     neighbours), divides by the local spread of that residual (so strong edges do not dominate),
     and correlates the result `b` with the key: z = sum(k * b) / sqrt(sum(b^2)).
   - Why this z is calibrated: for media that never saw the key, `b` is independent of the +-1
     key cells, so z is a Rademacher sum with unit variance, and Hoeffding's inequality bounds
     P(z >= t) <= exp(-t^2 / 2) for any image, with no distribution fitted. At THRESHOLD = 5 a
     single unmarked image or clip is flagged with probability below 4e-6.
   - Accumulating a clip: the per-cell residuals `b` are summed over frames and z is taken once,
     on the sum. Averaging per-frame z-scores (mean z x sqrt(n)) would be wrong: the frames of a
     video share their content, so their z-scores are nearly equal and the sqrt(n) factor turns
     one unlucky still scene into a confident false detection. Summing residuals keeps the
     unit-variance null (the sum is still independent of the key) while the mark, identical in
     every frame, adds up coherently and the codec's noise averages out.
   Measured figures (detection after H.264 CRF 23/28 and a 0.5x downscale, false positives on the
   shared photos and videos, PSNR, ms per frame) are in docs/provenance.md, from
   tools/measure_watermark.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from marionette import __version__
from marionette.content_credentials import Ingredient, ManifestReport, manifest_definition, read_manifest, sign_file
from marionette.errors import InputError
from marionette.media import IMAGE_EXTS, VIDEO_EXTS, atomic_path, iter_video, load_image, save_image

TAG_KEY = "synthetic_media"  # machine-readable key; value "marionette/<version>; renderer=<name>"
COMMENT_KEY = "comment"  # the human line; kept by the mp4, mov and mkv muxers without options
INPUTS_KEY = "marionette_inputs"  # JSON list of the inputs' role, file name and SHA-256 (C2PA ingredients)
TAG_MARKER = "made by marionette"  # substring that identifies our human line when reading
MOV_MUXER_OPTIONS = {"movflags": "use_metadata_tags"}  # mp4/mov: keep custom keys such as TAG_KEY

DEFAULT_KEY = 0x6D61726F  # "maro"; ours: a fixed public key, so anyone can run `marionette verify`
GRID = 48  # ours: cells per side; 11 px cells at 512 px, 2.7 px after 256 px is halved (measured
#   on the shared clips after CRF 28: per-frame z 1.5x that of 32; 64 fell to z 3-5 on halved 256 px clips)
EDGE_SOFTNESS = 0.25  # ours: Gaussian sigma softening cell edges, in cells
DEFAULT_STRENGTH = 3.0  # ours: luma offset (0-255 levels) where the texture gain is 1
TEXTURE_REF = 8.0  # ours: local luma std (levels) at which the gain is 1
GAIN_RANGE = (0.9, 1.2)  # ours: gain limits for flat / busy regions; a lower floor lost the mark in
#   flat regions under H.264, which are the ones the detector trusts most
MAX_OFFSET_RMS = 2.4  # ours: cap on the RMS offset of a frame (levels), so PSNR stays >= 40.5 dB
_NEIGHBOURS = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], np.float32)  # 4-neighbour mean (cell high-pass)
WHITEN_EPS = 0.3  # floor (levels) added to the local residual spread before dividing by it
THRESHOLD = 5.0  # decision on z; Hoeffding: false alarm <= exp(-12.5) < 4e-6 per file
MAX_VERIFY_FRAMES = 300  # frames read by `verify` (12 s at 25 fps); more only slows it
VERIFIABLE_EXTS = VIDEO_EXTS + IMAGE_EXTS + (".gif",)  # what `verify` reads (a folder: these files)


@dataclass(frozen=True)
class Detection:
    present: bool  # score >= threshold
    score: float  # z-score of the accumulated residual against the key; ~N(0, 1) when unmarked
    frames: int  # frames that contributed
    threshold: float  # decision threshold on score


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    kind: str  # "video" or "image"
    tag: str | None  # our container tag, if present
    watermark: Detection
    manifest: ManifestReport | None  # the C2PA manifest, validated, if the file has one

    @property
    def marked(self) -> bool:
        """Some mark says the file was made by marionette."""
        return self.tag is not None or self.watermark.present or (self.manifest is not None and self.manifest.by_marionette)

    def to_dict(self) -> dict:
        """JSON-ready form (`marionette verify --json`)."""
        return {"path": str(self.path), "kind": self.kind, "marked": self.marked, "tag": self.tag,
                "watermark": asdict(self.watermark), "c2pa": asdict(self.manifest) if self.manifest else None}


def container_tags(renderer: str, targets: Sequence[str | Path] = (), driver: str | Path | None = None) -> dict[str, str]:
    """Metadata for an output: a human `comment`, the machine-readable TAG_KEY and, given the
    inputs, INPUTS_KEY (their file names and SHA-256; a webcam or a folder driver is not hashed).
    The C2PA manifest (`sign_output`) is built from these tags."""
    tags = {
        COMMENT_KEY: f"synthetic media: {TAG_MARKER} {__version__} (renderer {renderer})",
        TAG_KEY: f"marionette/{__version__}; renderer={renderer}",
    }
    inputs = [Ingredient.of("target", t) for t in targets]
    if driver is not None and Path(driver).is_file():
        inputs.append(Ingredient.of("driver", driver))
    if inputs:
        tags[INPUTS_KEY] = json.dumps([asdict(i) for i in inputs])
    return tags


def sign_output(path: Path, final: Path, tags: dict[str, str]) -> None:
    """Embed a signed C2PA manifest built from `tags` (see container_tags) into the finished output
    `path` before it is moved to `final` (a folder: each PNG frame in it). Untagged files (not
    declared marionette output) and formats without a C2PA binding (mkv) are left as they are."""
    if TAG_KEY not in tags:
        return
    renderer = tags[TAG_KEY].split("renderer=", 1)[-1]
    ingredients = [Ingredient(**i) for i in json.loads(tags.get(INPUTS_KEY, "[]"))]
    for file, name in ([(p, p.name) for p in sorted(path.glob("*.png"))] if path.is_dir() else [(path, final.name)]):
        sign_file(file, Path(name).suffix, manifest_definition(name, tags[TAG_KEY], renderer, ingredients))


def png_info(tags: dict[str, str]) -> PngImagePlugin.PngInfo:
    """PNG tEXt chunks for `tags` (pass as `pnginfo=` to PIL's `Image.save`)."""
    info = PngImagePlugin.PngInfo()
    for key, value in tags.items():
        info.add_text(key, value)
    return info


def gif_comment(tags: dict[str, str]) -> bytes:
    """The GIF comment extension for `tags` (pass as `comment=` to PIL's `Image.save`)."""
    return tags[COMMENT_KEY].encode()


def save_marked_image(path: str | Path, image: np.ndarray, renderer: str, **options: object) -> None:
    """Write an (H, W, 3) uint8 RGB image that holds synthetic content (a result, a sample grid,
    a demo sheet) as every output is written: watermarked, tagged (PNG tEXt, JPEG/GIF comment),
    atomically. `options` go to PIL's writer (e.g. quality)."""
    tags = container_tags(renderer)
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        options["pnginfo"] = png_info(tags)
    elif suffix in (".jpg", ".jpeg", ".gif"):
        options["comment"] = gif_comment(tags)
    with atomic_path(path) as tmp:
        save_image(tmp, Watermark().embed(image), **options)
        sign_output(tmp, Path(path), tags)


def read_container_tag(path: str | Path) -> str | None:
    """Our tag from a file's metadata (the human line when present), or None if it has none."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in VIDEO_EXTS:
            with av.open(str(path)) as container:
                values = dict(container.metadata)
        else:
            with Image.open(path) as im:
                values = {str(k): v.decode(errors="replace") if isinstance(v, bytes) else str(v) for k, v in im.info.items()}
    except (av.FFmpegError, UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: cannot read metadata ({e})") from None
    values = {key.lower(): value for key, value in values.items()}
    human = [v for v in values.values() if isinstance(v, str) and TAG_MARKER in v]
    if human:
        return human[0]
    return values.get(TAG_KEY)


class Watermark:
    """Keyed, texture-adaptive luma pattern; see the module docstring for the scheme."""

    def __init__(self, key: int = DEFAULT_KEY, strength: float = DEFAULT_STRENGTH):
        self.key, self.strength = key, strength
        self.cells = np.random.default_rng(key).choice(np.array([-1.0, 1.0], np.float32), size=(GRID, GRID))  # (G, G)
        self._patterns: dict[tuple[int, int], np.ndarray] = {}  # (H, W) -> pattern; a run has one size

    def pattern(self, height: int, width: int) -> np.ndarray:
        """(H, W) float32 pattern: +-1 cells stretched to the frame, edges softened (cached)."""
        if (height, width) not in self._patterns:
            self._patterns[(height, width)] = self._render(height, width)
        return self._patterns[(height, width)]

    def _render(self, height: int, width: int) -> np.ndarray:
        rows = np.minimum(np.arange(height) * GRID // height, GRID - 1)
        cols = np.minimum(np.arange(width) * GRID // width, GRID - 1)
        blocky = self.cells[rows[:, None], cols[None, :]]  # (H, W)
        sigma_y, sigma_x = EDGE_SOFTNESS * height / GRID, EDGE_SOFTNESS * width / GRID
        return cv2.GaussianBlur(blocky, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y, borderType=cv2.BORDER_REFLECT)

    def gain(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 texture gain in GAIN_RANGE from the local luma spread (about a cell wide)."""
        h, w = luma.shape
        small = cv2.resize(luma, (4 * GRID, 4 * GRID), interpolation=cv2.INTER_AREA)  # (4G, 4G)
        mean = cv2.blur(small, (5, 5))
        spread = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
        gain = np.clip(spread / TEXTURE_REF, *GAIN_RANGE)
        return cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> the same, marked."""
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8, frame.shape
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)  # (H, W)
        offset = self.strength * self.gain(luma) * self.pattern(*luma.shape)  # (H, W)
        rms = float(np.sqrt(np.mean(offset * offset)))
        if rms > MAX_OFFSET_RMS:
            offset *= MAX_OFFSET_RMS / rms
        # the same offset on R, G and B moves Y only; cv2.add rounds and saturates to uint8
        return cv2.add(frame, cv2.merge([offset, offset, offset]), dtype=cv2.CV_8U)  # (H, W, 3)

    def residual(self, frame: np.ndarray) -> np.ndarray:
        """(G, G) whitened cell residual of a frame: what the key is correlated with."""
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        cells = cv2.resize(luma, (GRID, GRID), interpolation=cv2.INTER_AREA)  # (G, G) cell means
        neighbours = cv2.filter2D(cells, -1, _NEIGHBOURS, borderType=cv2.BORDER_REFLECT)
        high = cells - neighbours  # (G, G)
        spread = np.sqrt(cv2.blur(high * high, (3, 3), borderType=cv2.BORDER_REFLECT)) + WHITEN_EPS
        return high / spread

    def _z(self, residual: np.ndarray) -> float:
        norm = float(np.sqrt(np.sum(residual * residual)))
        return float(np.sum(self.cells * residual)) / norm if norm > 0 else 0.0

    def score(self, frame: np.ndarray) -> float:
        """Per-frame z-score against the key; ~N(0, 1) on unmarked frames."""
        return self._z(self.residual(frame))

    def detect(self, frames: Iterable[np.ndarray], threshold: float = THRESHOLD) -> Detection:
        """Sum the cell residuals over `frames`, then score the sum once (see module docstring)."""
        total, count = np.zeros((GRID, GRID), np.float32), 0
        for frame in frames:
            total += self.residual(frame)
            count += 1
        score = self._z(total)
        return Detection(present=score >= threshold, score=score, frames=count, threshold=threshold)



def verify(path: str | Path, watermark: Watermark | None = None) -> VerifyReport:
    """Look for our container tag and our watermark in a video (first MAX_VERIFY_FRAMES) or image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    watermark = watermark or Watermark()
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS or suffix == ".gif":  # an animated GIF decodes like a video
        frames = iter_video(path)
        detection = watermark.detect(frame for _, frame in zip(range(MAX_VERIFY_FRAMES), frames))
        if detection.frames == 0:
            raise InputError(f"{path}: video holds no frames")
        return VerifyReport(path=path, kind="video", tag=read_container_tag(path), watermark=detection,
                            manifest=read_manifest(path))
    if suffix in IMAGE_EXTS:
        detection = watermark.detect([load_image(path)])
        return VerifyReport(path=path, kind="image", tag=read_container_tag(path), watermark=detection,
                            manifest=read_manifest(path))
    raise InputError(f"{path}: not a video or image ({', '.join(VERIFIABLE_EXTS)})")


def verify_targets(spec: str | Path) -> list[Path]:
    """The files `verify` checks for one command-line argument: a file as given, or a folder's
    image and video files (recursively, sorted); an empty folder is an error."""
    path = Path(spec)
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VERIFIABLE_EXTS)
    if not files:
        raise InputError(f"{path}: folder holds no image or video ({', '.join(VERIFIABLE_EXTS)})")
    return files


def format_manifest(manifest: ManifestReport | None) -> str:
    """The C2PA part of a report: validity, signer, claim, ingredients."""
    if manifest is None:
        return "C2PA: no manifest"
    if not manifest.valid:
        return f"C2PA: manifest INVALID ({', '.join(manifest.failures) or manifest.state})"
    signer = manifest.signer
    if manifest.local_signer:
        trust = "trusted on this machine only" if manifest.state == "Trusted" else "not this machine's"
        signer += f"; a self-generated local certificate ({trust}), not a public identity"
    elif manifest.state != "Trusted":
        signer += "; certificate not on a trust list"
    inputs = "; ingredients: " + ", ".join(manifest.ingredients) if manifest.ingredients else ""
    return f"C2PA: valid manifest signed by {signer}; claim: {manifest.generator}, {manifest.action}{inputs}"


def format_report(report: VerifyReport) -> str:
    """The verdict, then one line per mark: C2PA manifest, container tag, watermark."""
    w = report.watermark
    verdict = "synthetic, made by marionette" if report.marked else "no marionette mark found"
    mark = "present" if w.present else "not found"
    return "\n  ".join([
        f"{report.path}: {verdict}",
        format_manifest(report.manifest),
        f"container tag: {report.tag}" if report.tag else "container tag: none",
        f"watermark: {mark}, score {w.score:.1f} over {w.frames} frame{'s' * (w.frames != 1)} (threshold {w.threshold:.1f})",
    ])
