"""Marking reenactment output as synthetic media, in three independent ways, and checking for it.

1. **Container tag.** `container_tags` gives the metadata every output carries: a human line under
   `comment` ("synthetic media: made by marionette 0.1.0 (renderer ...)") and a machine-readable
   `synthetic_media` key. Which keys reach the file depends on the muxer (measured with PyAV 18):
   mp4 and mov keep `comment`, `title`, `artist` (mp4 also `description`) but drop custom keys
   unless the muxer gets `MOV_MUXER_OPTIONS`; mkv/webm keep every key (upper-cased on read); the
   ffmpeg GIF muxer keeps none, so a GIF needs its comment written with PIL (`gif_comment`); PNG
   frames carry tEXt chunks (`png_info`). A tag is easy to read and just as easy to strip.

2. **Invisible watermark** (`Watermark`). A keyed presence mark that survives H.264, not a payload:
   - The key seeds a TILE x TILE block of independent +-1 cells, repeated over the frame from its
     top-left corner on square cells, CELLS across the frame's shorter side (whatever the
     resolution), cell edges softened by a Gaussian. The pattern is added to luma (the same offset
     on R, G and B leaves Cb and Cr unchanged), scaled by local texture so flat skin and sky get less.
   - Detection at the frame's own grid shrinks the luma to one mean per cell (`cv2.INTER_AREA`),
     removes the image's own smooth content with a cell-level high-pass (cell minus the mean of
     its four neighbours), divides by the local spread of that residual (so strong edges do not
     dominate), folds it onto the tile (cells at the same tile position summed) and correlates the
     folded residual `b` with the key: z = sum(k * b) / sqrt(sum(b^2)).
   - Why this z is calibrated: for media that never saw the key, `b` is independent of the +-1
     key cells, so z is a Rademacher sum with unit variance, and Hoeffding's inequality bounds
     P(z >= t) <= exp(-t^2 / 2) for any image, with no distribution fitted. At THRESHOLD = 5 a
     single unmarked image or clip is flagged with probability below 4e-6.
   - Accumulating a clip: the folded residuals are summed over frames and z is taken once, on the
     sum. Averaging per-frame z-scores (mean z x sqrt(n)) would be wrong: the frames of a video
     share their content, so their z-scores are nearly equal and the sqrt(n) factor turns one
     unlucky still scene into a confident false detection. Summing keeps the unit-variance null
     (the sum is still independent of the key) while the mark, identical in every frame, adds up.
   - Crops, mirroring and rescaling move the grid. When the frame's own grid finds nothing, a
     search tries every hypothesis on the clip's mean luma: SEARCH_SCALES cell counts across the
     shorter side (a crop keeping >= 50% of the area leaves 24-48; a uniform rescale changes
     none), PHASES x PHASES sub-cell offsets, all TILE x TILE cyclic shifts of the key (any crop
     offset; one FFT per grid) and the mirrored key. Each hypothesis alone is the same Rademacher
     sum, so by the union bound the largest of N exceeds t with probability <= N exp(-t^2 / 2):
     SEARCH_THRESHOLD (7.17 for N = 597,600) keeps that below 4e-6, and a file's overall false
     alarm rate below 8e-6.
   Measured figures (detection after H.264 CRF 23/28, a 0.5x downscale, crops, mirroring and
   rescales; false positives on all the shared clips; PSNR, ms per frame) are in
   docs/provenance.md, from tools/measure_watermark.py.

3. **C2PA manifest** (`sign_output`, see marionette.content_credentials): a signed record of who
   made the file and from what (hashes of the inputs), built from the tags above; `verify` checks it.

`verify`'s verdict is a `Level`: only a valid manifest whose signer is on the user's trust list
says who made a file; a tag, an untrusted manifest or the watermark only claim it (anyone can
write them: the watermark's default key is public); a manifest that fails validation means the
file changed after it was signed. The threat model is in docs/provenance.md.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from marionette import __version__
from marionette.content_credentials import (
    Ingredient,
    ManifestReport,
    manifest_definition,
    read_manifest,
    sign_file,
    trust_anchors,
)
from marionette.errors import InputError
from marionette.media import IMAGE_EXTS, VIDEO_EXTS, atomic_path, iter_video, load_image, save_image

TAG_KEY = "synthetic_media"  # machine-readable key; value "marionette/<version>; renderer=<name>"
COMMENT_KEY = "comment"  # the human line; kept by the mp4, mov and mkv muxers without options
INPUTS_KEY = "marionette_inputs"  # JSON list of the inputs' role, file name and SHA-256 (C2PA ingredients)
TAG_MARKER = "made by marionette"  # substring that identifies our human line when reading
MOV_MUXER_OPTIONS = {"movflags": "use_metadata_tags"}  # mp4/mov: keep custom keys such as TAG_KEY

DEFAULT_KEY = 0x6D61726F  # "maro"; ours: a fixed public key, so anyone can run `marionette verify`
WATERMARK_KEY_ENV = "MARIONETTE_WATERMARK_KEY"  # a deployment's secret key (any string), used in place of DEFAULT_KEY
CELLS = 48  # ours: square cells across the frame's shorter side; 11 px cells at 512 px, 2.7 px after
#   256 px is halved (measured on the shared clips after CRF 28: per-frame z 1.5x that of 32; 64 fell to
#   z 3-5 on halved 256 px clips)
TILE = 20  # ours: the key is a TILE x TILE block of +-1 cells repeated over the frame (2.4 tiles across 48
#   cells); with 16, which divides 48, three stacked panels (the demo's sheet) fold their similar content
#   onto the same tile cells: the demo sheet scored z 3.8 and a 3-panel test sheet 6.6; with 20, 11.4
EDGE_SOFTNESS = 0.25  # ours: Gaussian sigma softening cell edges, in cells
DEFAULT_STRENGTH = 3.4  # ours: luma offset (0-255 levels) where the texture gain is 1 (3.0 left 5 of 18 hard
#   cropped clips under the search threshold, 3.4 one; most frames then reach MAX_OFFSET_RMS)
TEXTURE_REF = 8.0  # ours: local luma std (levels) at which the gain is 1
GAIN_RANGE = (0.9, 1.2)  # ours: gain limits for flat / busy regions; a lower floor lost the mark in
#   flat regions under H.264, which are the ones the detector trusts most
MAX_OFFSET_RMS = 2.4  # ours: cap on the RMS offset of a frame (levels): PSNR >= 40.2 dB with rounding (2.5 let
#   one shared photo fall to 39.9 dB)
_NEIGHBOURS = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], np.float32)  # 4-neighbour mean (cell high-pass)
WHITEN_EPS = 0.3  # floor (levels) added to the local residual spread before dividing by it
THRESHOLD = 5.0  # decision on z; Hoeffding: false alarm <= exp(-12.5) < 4e-6 per file
SEARCH_SCALES = np.geomspace(22.0, 50.0, 83)  # ours: cells across the shorter side searched; a crop that keeps
#   >= 50% of the area leaves 24-48 (1% apart: a 0.5% scale error moves the edge cells of a 48-cell side 0.25 cell)
PHASES = 3  # ours: sub-cell offsets searched per axis (0, 1/3, 2/3 of a cell)
SEARCH_HYPOTHESES = len(SEARCH_SCALES) * PHASES * PHASES * TILE * TILE * 2  # x 2: as is and mirrored
SEARCH_THRESHOLD = float(np.sqrt(2 * np.log(SEARCH_HYPOTHESES / 4e-6)))  # union bound: N exp(-t^2/2) <= 4e-6
MAX_VERIFY_FRAMES = 300  # frames read by `verify` (12 s at 25 fps); more only slows it
VERIFIABLE_EXTS = VIDEO_EXTS + IMAGE_EXTS + (".gif",)  # what `verify` reads (a folder: these files)


@dataclass(frozen=True)
class Match:
    """The best grid of the search (a cropped, mirrored or rescaled copy)."""

    score: float  # largest z over the searched hypotheses; decided against SEARCH_THRESHOLD
    cells: float  # cells across the shorter side
    mirrored: bool  # matched the horizontally mirrored key
    shift: tuple[int, int]  # cyclic shift of the key tile (rows, cols)
    phase: tuple[float, float]  # sub-cell offset of the grid (rows, cols), in cells


@dataclass(frozen=True)
class Detection:
    present: bool  # score >= threshold, or the search's score >= SEARCH_THRESHOLD
    public_key: bool  # looked for with DEFAULT_KEY (else a deployment's secret key)
    score: float  # z-score of the accumulated residual against the key at the frame's own grid
    frames: int  # frames that contributed
    threshold: float  # decision threshold on score
    search: Match | None  # the search's best hypothesis, when the search ran


class Level(enum.Enum):
    """`verify`'s verdict on a file; the value is its exit status. Listed from the strongest
    evidence to the most alarming: several files exit with the status of the last level among them."""

    TRUSTED = 0  # a valid manifest naming marionette, signed by a certificate whose root is on the trust list
    CLAIMS = 3  # a container tag, an untrusted manifest or the watermark names marionette: forgeable
    UNMARKED = 1  # no mark at all (which does not show the file is real)
    EDITED = 4  # a manifest that fails validation: the file was changed after it was signed

    @property
    def label(self) -> str:
        """The JSON value (`verify --json`): trusted, claims, unmarked, edited."""
        return self.name.lower()


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

    @property
    def level(self) -> Level:
        """The verdict: a failing manifest first (whatever else the file carries), then a trusted one."""
        m = self.manifest
        if m is not None and not m.valid:
            return Level.EDITED
        if m is not None and m.by_marionette and m.trusted:
            return Level.TRUSTED
        return Level.CLAIMS if self.marked else Level.UNMARKED

    def to_dict(self) -> dict:
        """JSON-ready form (`marionette verify --json`)."""
        return {"path": str(self.path), "kind": self.kind, "level": self.level.label, "exit_status": self.level.value,
                "marked": self.marked, "tag": self.tag, "watermark": asdict(self.watermark),
                "c2pa": asdict(self.manifest) if self.manifest else None}


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


def sign_output(path: Path, final: Path, tags: dict[str, str]) -> bytes | None:
    """Sign the finished output `path` with a C2PA manifest built from `tags` (see container_tags)
    before it is moved to `final`: embedded (a folder: in each PNG frame), or, for an mkv, returned
    for the caller to write beside `final` once it is in place (content_credentials.write_sidecar).
    Untagged files (not declared marionette output) are left as they are."""
    if TAG_KEY not in tags:
        return None
    renderer = tags[TAG_KEY].split("renderer=", 1)[-1]
    ingredients = [Ingredient(**i) for i in json.loads(tags.get(INPUTS_KEY, "[]"))]
    if path.is_dir():
        for frame in sorted(path.glob("*.png")):
            sign_file(frame, ".png", manifest_definition(frame.name, tags[TAG_KEY], renderer, ingredients))
        return None
    return sign_file(path, final.suffix, manifest_definition(final.name, tags[TAG_KEY], renderer, ingredients))


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


def watermark_key() -> int:
    """DEFAULT_KEY, or the deployment's secret key: the string in WATERMARK_KEY_ENV, hashed to 256 bits."""
    secret = os.environ.get(WATERMARK_KEY_ENV)
    return int.from_bytes(hashlib.sha256(secret.encode()).digest(), "big") if secret else DEFAULT_KEY


class Watermark:
    """Keyed, texture-adaptive luma pattern, tiled; see the module docstring for the scheme.
    `key` None: watermark_key() (the public key unless a deployment set its own)."""

    def __init__(self, key: int | None = None, strength: float = DEFAULT_STRENGTH):
        self.key, self.strength = watermark_key() if key is None else key, strength
        self.tile = np.random.default_rng(self.key).choice(np.array([-1.0, 1.0], np.float32), size=(TILE, TILE))  # (T, T)
        spectrum = np.fft.fft2(self.tile)
        self._spectra = (np.conj(spectrum), np.conj(np.fft.fft2(self.tile[:, ::-1])))  # as is, mirrored
        self._patterns: dict[tuple[int, int], np.ndarray] = {}  # (H, W) -> pattern; a run has one size

    def pattern(self, height: int, width: int) -> np.ndarray:
        """(H, W) float32 pattern: square +-1 cells (CELLS across the shorter side) repeating the
        tile from the top-left corner, edges softened (cached)."""
        if (height, width) not in self._patterns:
            self._patterns[(height, width)] = self._render(height, width)
        return self._patterns[(height, width)]

    def _render(self, height: int, width: int) -> np.ndarray:
        pitch = min(height, width) / CELLS  # cell side, pixels
        rows = np.floor((np.arange(height) + 0.5) / pitch).astype(int) % TILE
        cols = np.floor((np.arange(width) + 0.5) / pitch).astype(int) % TILE
        blocky = self.tile[rows[:, None], cols[None, :]]  # (H, W)
        sigma = EDGE_SOFTNESS * pitch
        return cv2.GaussianBlur(blocky, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)

    def gain(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 texture gain in GAIN_RANGE from the local luma spread (about a cell wide)."""
        h, w = luma.shape
        small = cv2.resize(luma, (4 * CELLS, 4 * CELLS), interpolation=cv2.INTER_AREA)  # (4C, 4C)
        mean = cv2.blur(small, (5, 5))
        spread = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0.0))
        gain = np.clip(spread / TEXTURE_REF, *GAIN_RANGE)
        return cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> the same, marked."""
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8, frame.shape
        luma = _luma(frame)
        offset = self.strength * self.gain(luma) * self.pattern(*luma.shape)  # (H, W)
        rms = float(np.sqrt(np.mean(offset * offset)))
        if rms > MAX_OFFSET_RMS:
            offset *= MAX_OFFSET_RMS / rms
        # the same offset on R, G and B moves Y only; cv2.add rounds and saturates to uint8
        return cv2.add(frame, cv2.merge([offset, offset, offset]), dtype=cv2.CV_8U)  # (H, W, 3)

    def residual(self, frame: np.ndarray) -> np.ndarray:
        """(T, T) folded residual of a frame at the embedding's own grid: what the key is correlated with."""
        return _fold(_whiten(_cell_means(_luma(frame), CELLS, 1)[0]))

    def _z(self, folded: np.ndarray) -> float:
        norm = float(np.sqrt(np.sum(folded * folded)))
        return float(np.sum(self.tile * folded)) / norm if norm > 0 else 0.0

    def score(self, frame: np.ndarray) -> float:
        """Per-frame z-score against the key at the frame's own grid; ~N(0, 1) on unmarked frames."""
        return self._z(self.residual(frame))

    def search(self, stack: np.ndarray) -> Match:
        """The best of SEARCH_HYPOTHESES z-scores over a `search_stack`: SEARCH_SCALES cell counts
        across the shorter side x PHASES^2 sub-cell offsets x TILE^2 cyclic shifts of the key x
        as is / mirrored. Each z is a unit-variance Rademacher sum on unmarked media, so the
        largest exceeds SEARCH_THRESHOLD with probability <= 4e-6 (union bound)."""
        scores = self.shift_scores(stack)  # (S, P*P, 2, T, T)
        at = np.unravel_index(int(np.argmax(scores)), scores.shape)
        phase = divmod(int(at[1]), PHASES)
        return Match(score=float(scores[at]), cells=float(SEARCH_SCALES[at[0]]), mirrored=bool(at[2]),
                     shift=(int(at[3]), int(at[4])), phase=(phase[0] / PHASES, phase[1] / PHASES))

    def shift_scores(self, folded: np.ndarray) -> np.ndarray:
        """(..., 2, T, T) z-scores of (..., T, T) folded residuals against the key at every cyclic
        shift, as is and mirrored (index 1)."""
        norm = np.sqrt(np.sum(folded * folded, axis=(-2, -1)))[..., None, None, None]  # (..., 1, 1, 1)
        spectrum = np.fft.fft2(folded)[..., None, :, :]  # (..., 1, T, T)
        corr = np.real(np.fft.ifft2(spectrum * np.stack(self._spectra)))  # (..., 2, T, T)
        return corr / np.maximum(norm, 1e-12)

    def detect(self, frames: Iterable[np.ndarray], threshold: float = THRESHOLD,
               search: bool | None = None) -> Detection:
        """Sum the folded residuals over `frames` and score the sum once at the frames' own grid
        (see module docstring). The search over grids, offsets and mirroring runs on the frames'
        mean luma (the mark is the same in every frame, the codec's noise is not) when asked, or
        by default when the frames' own grid finds nothing."""
        total, count, luma_sum = np.zeros((TILE, TILE), np.float32), 0, None
        for frame in frames:
            luma = _luma(frame)
            total += _fold(_whiten(_cell_means(luma, CELLS, 1)[0]))
            luma_sum = luma if luma_sum is None else luma_sum + luma
            count += 1
        score = self._z(total)
        if search is None:
            search = score < threshold
        found = self.search(search_stack(luma_sum / count)) if search and count else None
        present = score >= threshold or (found is not None and found.score >= SEARCH_THRESHOLD)
        return Detection(present=present, public_key=self.key == DEFAULT_KEY, score=score, frames=count,
                         threshold=threshold, search=found)


def search_stack(luma: np.ndarray) -> np.ndarray:
    """(S, P*P, T, T) folded residuals of an (H, W) luma image at every searched grid (key-free:
    shared by every key tried on the same image)."""
    return np.stack([np.stack([_fold(_whiten(c)) for c in _cell_means(luma, cells, PHASES)]) for cells in SEARCH_SCALES])


def _luma(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)  # (H, W)


def _cell_means(luma: np.ndarray, cells: float, phases: int) -> list[np.ndarray]:
    """Cell means of `luma` on square cells, `cells` across its shorter side, for each of
    phases x phases sub-cell offsets (a list of (rows, cols) arrays, offsets row-major)."""
    h, w = luma.shape
    pitch = min(h, w) / (cells * phases)  # pixels per sample
    samples = cv2.resize(luma, (max(round(w / pitch), phases), max(round(h / pitch), phases)),
                         interpolation=cv2.INTER_AREA)  # phases samples per cell
    out = []
    for dy in range(phases):
        for dx in range(phases):
            part = samples[dy:, dx:]
            rows, cols = part.shape[0] // phases, part.shape[1] // phases
            part = part[: rows * phases, : cols * phases].reshape(rows, phases, cols, phases)
            out.append(part.mean(axis=(1, 3)))  # (rows, cols)
    return out


def _whiten(cells: np.ndarray) -> np.ndarray:
    """Cell-level high-pass (cell minus its four neighbours' mean) over the local residual spread."""
    neighbours = cv2.filter2D(cells, -1, _NEIGHBOURS, borderType=cv2.BORDER_REFLECT)
    high = cells - neighbours
    energy = cv2.blur(high * high, (3, 3), borderType=cv2.BORDER_REFLECT)  # a box filter's running sums can dip below 0
    spread = np.sqrt(np.maximum(energy, 0.0)) + WHITEN_EPS
    return high / spread


def _fold(residual: np.ndarray) -> np.ndarray:
    """(rows, cols) -> (T, T): residuals summed over cells that share a tile position."""
    rows, cols = residual.shape
    padded = np.zeros((-(-rows // TILE) * TILE, -(-cols // TILE) * TILE), np.float32)
    padded[:rows, :cols] = residual
    return padded.reshape(padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE).sum(axis=(0, 2))


def verify(path: str | Path, watermark: Watermark | None = None, anchors: str | None = None) -> VerifyReport:
    """Look for our C2PA manifest, container tag and watermark in a video (first MAX_VERIFY_FRAMES)
    or image. `anchors`: the trusted PEM root certificates (None: trust_anchors())."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    watermark = watermark or Watermark()
    anchors = trust_anchors() if anchors is None else anchors
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS or suffix == ".gif":  # an animated GIF decodes like a video
        frames = iter_video(path)
        detection = watermark.detect(frame for _, frame in zip(range(MAX_VERIFY_FRAMES), frames))
        if detection.frames == 0:
            raise InputError(f"{path}: video holds no frames")
        return VerifyReport(path=path, kind="video", tag=read_container_tag(path), watermark=detection,
                            manifest=read_manifest(path, anchors))
    if suffix in IMAGE_EXTS:
        detection = watermark.detect([load_image(path)])
        return VerifyReport(path=path, kind="image", tag=read_container_tag(path), watermark=detection,
                            manifest=read_manifest(path, anchors))
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
    """The C2PA part of a report: validity, signer and its trust, claim, ingredients."""
    if manifest is None:
        return "C2PA: no manifest"
    if not manifest.valid:
        return f"C2PA: manifest INVALID ({', '.join(manifest.failures) or manifest.state})"
    signer = manifest.signer
    if manifest.local_signer:
        signer += "; a marionette self-generated local certificate, not a public identity"
    signer += "; its root is on the trust list" if manifest.trusted else "; certificate not on the trust list"
    inputs = "; ingredients: " + ", ".join(manifest.ingredients) if manifest.ingredients else ""
    return f"C2PA: valid manifest signed by {signer}; claim: {manifest.generator}, {manifest.action}{inputs}"


def format_verdict(report: VerifyReport) -> str:
    """One line: the level, with what it rests on and what it does not prove."""
    level, m, w = report.level, report.manifest, report.watermark
    if level is Level.TRUSTED:
        return f"synthetic, made by marionette: signed by a trusted signer, {m.signer}"
    if level is Level.EDITED:
        return "EDITED AFTER SIGNING: its C2PA manifest fails validation (the file changed after it was signed)"
    if level is Level.UNMARKED:
        return "no marionette mark found (this does not show the file is real)"
    marks = [name for name, present in (("an untrusted C2PA manifest", m is not None and m.by_marionette),
                                        ("the container tag", report.tag is not None),
                                        ("the watermark" + ("" if w.public_key else " (this deployment's key)"), w.present))
             if present]
    return f"claims to be synthetic, made by marionette ({', '.join(marks)}): unverified, anyone can forge these marks"


def format_report(report: VerifyReport) -> str:
    """The verdict, then one line per mark: C2PA manifest, container tag, watermark."""
    w = report.watermark
    mark = "present" if w.present else "not found"
    key = "public key" if w.public_key else "this deployment's key"
    return "\n  ".join([
        f"{report.path}: {format_verdict(report)}",
        format_manifest(report.manifest),
        f"container tag: {report.tag}" if report.tag else "container tag: none",
        f"watermark: {mark} ({key}), score {w.score:.1f} over {w.frames} frame{'s' * (w.frames != 1)} "
        f"(threshold {w.threshold:.1f})"
        + (f"; search for a crop, mirror or rescale: best z {w.search.score:.1f} (threshold {SEARCH_THRESHOLD:.1f}; "
           f"{w.search.cells:.0f} cells across{', mirrored' if w.search.mirrored else ''})" if w.search else ""),
    ])
