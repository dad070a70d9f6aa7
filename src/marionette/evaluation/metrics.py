"""The metric registry, shared by training-time validation and `marionette evaluate`.

Paper §Experiments: self-reenactment is scored against the ground-truth driver frame (CSIM, SSIM,
PSNR, LPIPS); reenacting a different identity against the targets' identity (CSIM) and the
driver's motion (PRMSE, AUCON). ours: L1 is added to the self metrics; AUCON is replaced by
landmark-based expression agreement (expression.py) plus the correlation of the landmark
transformer's expression coefficients; landmark NME and the rate of results with a detectable
face are added. Also ours: a calibrated identity score (calibration.py); an LPIPS-style
perceptual distance without learned weights on the shipped VGG19; PSNR and perceptual distance in
the mouth and eye boxes of the ground truth; a kernel distance (KID) between the results and the
ground-truth frames as sets, on the same VGG's features; blink and gaze agreement with the
driver; pose and expression measured against the driven landmarks (what the renderer was asked
for) beside the driver's; the motion fidelity and stillness of rendered videos (temporal.py).
Each metric measures one `Sample` (one reenacted frame and what it is compared
with) and reduces a list of per-sample values to one figure.

Training validation: build `Sample(mode="self", output=..., truth=...)` from a batch
(`marionette.tensors.to_uint8` turns a (3, S, S) tensor in [-1, 1] into an image) and call `measure_sample(sample, ["l1", "psnr",
"ssim"], tools)`; then `summarize`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from marionette.evaluation.calibration import Reference, identity_score
from marionette.evaluation.config import MODES
from marionette.evaluation.expression import ExpressionConfig, eye_ratio, gaze_offset, indicators
from marionette.evaluation.judges import IdentityJudge, cosine, make_judge
from marionette.evaluation.temporal import flicker, jumps, landmark_jitter, motion_correlation, motion_error
from marionette.landmarks.layout import LEFT_EYE, MOUTH, RIGHT_EYE, inter_ocular, mesh_to_ibug68
from marionette.landmarks.pose import head_pose
from marionette.model.vgg import load_vgg19_normalised

# metrics of the result's video (measured with videos=true): its frames' ground truth, motion fidelity, stillness
TEMPORAL = ("video_psnr", "motion_correlation", "motion_error", "landmark_jitter", "flicker", "jumps")
Value = float | list[float] | None  # one sample's measurement (None: not measurable, e.g. no face)


@dataclass(frozen=True)
class Sample:
    """One reenacted frame and what it is compared with. Images (S, S, 3) uint8 RGB; meshes
    (478, 3) in the pixels of their own image. Only `mode` and `output` are always needed."""

    mode: str  # self (ground truth exists) or cross (targets and driver of different identities)
    output: np.ndarray  # (S, S, 3) the result
    truth: np.ndarray | None = None  # (S, S, 3) the driver frame itself (self mode)
    truth_mesh: np.ndarray | None = None  # (478, 3) its mesh
    targets: np.ndarray | None = None  # (K, S, S, 3) the target frames
    target_meshes: np.ndarray | None = None  # (K, 478, 3)
    driver_mesh: np.ndarray | None = None  # (478, 3) the driver's landmarks (in the driver's crop)
    driver_clip_meshes: np.ndarray | None = None  # (F, 478, 3) the driver's clip: its expression baseline
    driven_mesh: np.ndarray | None = None  # (478, 3) transformed driver landmarks the renderer was given
    output_mesh: np.ndarray | None = None  # (478, 3) face mesh measured on the output (None: no face)
    truth_key: str | None = None  # cache key of the truth's identity embedding
    target_keys: tuple[str, ...] = ()  # cache keys of the targets' identity embeddings
    identity_reference: Reference | None = None  # the target identity's references (calibration.py)
    # video evaluation (`evaluate --videos`): the result over the whole driver clip, frame by frame
    output_frames: np.ndarray | None = None  # (F, S, S, 3), one per frame of driver_clip_meshes
    output_frame_meshes: tuple[np.ndarray | None, ...] = ()  # F face meshes measured on them (None: no face)
    driven_frame_meshes: np.ndarray | None = None  # (F, 478, 3) the driven landmarks of each frame
    truth_frames: np.ndarray | None = None  # (F, S, S, 3) self mode: the driver clip, each video frame's ground truth
    target_positions: tuple[int, ...] = ()  # frames of the clip that are targets (self mode: left out of video_psnr)


class Tools:
    """What metrics need beyond the sample, built on first use: the identity judge, the landmark
    transformer, VGG19, LPIPS; identity embeddings are cached by key (default: image content), and
    VGG features of a ground truth by its key."""

    def __init__(self, arcface: str | Path | None = None, expression: ExpressionConfig = ExpressionConfig()):
        self.arcface = arcface  # ArcFace ONNX file (None: dlib's ResNet)
        self.expression_config = expression
        self._judge: IdentityJudge | None = None
        self._transformer = None
        self._lpips = None
        self._vgg = None
        self._embeddings: dict[str, np.ndarray | None] = {}
        self._features: dict[str, np.ndarray] = {}

    @property
    def judge(self) -> IdentityJudge:
        if self._judge is None:
            self._judge = make_judge(self.arcface)
        return self._judge

    @property
    def transformer(self):
        if self._transformer is None:
            from marionette.landmark_transformer.model import LandmarkTransformer

            self._transformer = LandmarkTransformer.load()
        return self._transformer

    def embedding(self, image: np.ndarray, mesh: np.ndarray | None, key: str | None = None) -> np.ndarray | None:
        """The judge's embedding of `image`, cached by `key` (default: the image's content)."""
        if key is None:
            key = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest() + str(image.shape)
        if key not in self._embeddings:
            self._embeddings[key] = self.judge.embed(image, mesh)
        return self._embeddings[key]

    @property
    def vgg(self) -> torch.nn.Module:
        if self._vgg is None:
            self._vgg = load_vgg19_normalised()
        return self._vgg

    def perceptual(self, a: np.ndarray, b: np.ndarray) -> float:
        return perceptual_distance(self.vgg, a, b)

    def features(self, image: np.ndarray, key: str | None = None) -> np.ndarray:
        """(S, S, 3) uint8 -> (256,) the shipped VGG19's relu3_1 features averaged over positions
        (its deepest layer, standing in for KID's Inception pool features); cached by `key` if given."""
        if key is None or key not in self._features:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, S, S)
            with torch.no_grad():
                found = self.vgg(x)[-1].mean((2, 3))[0].double().numpy()  # (256,)
            if key is None:
                return found
            self._features[key] = found
        return self._features[key]

    @staticmethod
    def lpips_missing() -> str | None:
        """Why LPIPS cannot run here (None when it can): it needs the lpips package (its linear
        heads) and torchvision's AlexNet weights in the torch hub cache; nothing is downloaded."""
        if importlib.util.find_spec("lpips") is None:
            return "LPIPS omitted: the lpips package (its linear-head weights) is not installed"
        weights = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
        if not weights.is_file():
            return f"LPIPS omitted: AlexNet backbone weights not found at {weights}"
        return None

    def lpips(self, a: np.ndarray, b: np.ndarray) -> float:
        if self._lpips is None:
            import lpips  # optional

            self._lpips = lpips.LPIPS(net="alex", verbose=False).eval()

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, 3, S, S)

        with torch.no_grad():
            return float(self._lpips(tensor(a), tensor(b)).item())


# ---- reductions: a list of per-sample values -> one figure ----------------------------------------

def values_array(values: Sequence[Value]) -> np.ndarray:
    """Per-sample values -> (N, D) float64, one row each (D = 1 for numbers), NaN rows where not measured."""
    width = next((len(v) if isinstance(v, list) else 1 for v in values if v is not None), 1)
    out = np.full((len(values), width), np.nan)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = v
    return out


@dataclass(frozen=True)
class Reduction:
    """Per-sample values -> one figure. `of(x, picks)` takes the (N, D) values_array and (B, N)
    sample indices and gives the figure of each row of picks at once, (B,): the bootstrap's
    resamples (report.py) and the plain figure (picks = every sample once) are one computation."""

    over: Callable[[np.ndarray, np.ndarray], np.ndarray]  # `of` once some sample was measured

    def of(self, x: np.ndarray, picks: np.ndarray) -> np.ndarray:
        if np.isnan(x[:, 0]).all():  # nothing measured (or no sample): no figure
            return np.full(len(picks), np.nan)
        return self.over(x, picks)

    def __call__(self, values: Sequence[Value]) -> float:
        x = values_array(values)
        return float(self.of(x, np.arange(len(x))[None])[0])


def _masked_mean(v: np.ndarray) -> np.ndarray:
    """(B, N) with NaN where not measured -> (B,) mean of the measured ones (NaN: none)."""
    ok = ~np.isnan(v)
    n = ok.sum(-1)
    total = np.where(ok, v, 0.0).sum(-1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _mean_over(x: np.ndarray, picks: np.ndarray) -> np.ndarray:
    return _masked_mean(x[picks, 0])


def _root_mean_square_over(x: np.ndarray, picks: np.ndarray) -> np.ndarray:
    return np.sqrt(_masked_mean(x[picks, 0] ** 2))


def _correlation_over(x: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Rows are [a_1..a_C, b_1..b_C]: per row of picks, the mean over components c of Pearson's r
    between a_c and b_c across the picked samples (components with no spread are skipped; NaN
    with fewer than 3 samples)."""
    v = x[picks]  # (B, N, 2C)
    ok = ~np.isnan(v[..., 0])  # (B, N)
    n = ok.sum(-1)  # (B,)
    a, b = np.split(np.where(ok[..., None], v, 0.0), 2, axis=-1)  # (B, N, C) each
    weight = ok[..., None].astype(np.float64)
    a = (a - a.sum(1, keepdims=True) / np.maximum(n, 1)[:, None, None]) * weight
    b = (b - b.sum(1, keepdims=True) / np.maximum(n, 1)[:, None, None]) * weight
    norm = np.sqrt((a**2).sum(1) * (b**2).sum(1))  # (B, C)
    spread = norm > 1e-12
    r = np.where(spread, (a * b).sum(1) / np.where(spread, norm, 1.0), 0.0)  # (B, C)
    figure = r.sum(-1) / np.maximum(spread.sum(-1), 1)
    return np.where((n >= 3) & spread.any(-1), figure, np.nan)


def _kernels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KID's polynomial kernel k(a, b) = (a . b / D + 1)^3 within and between (M, D) and (N, D)
    feature sets: (M, M), (N, N), (M, N)."""
    dims = x.shape[1]
    return tuple((a @ b.T / dims + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))  # type: ignore[return-value]


def _unbiased_mmd(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """The unbiased squared MMD from the kernel matrices (pairs of a sample with itself left out)."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD between (M, D) and
    (N, D) feature sets with the polynomial kernel; 0 in expectation for one distribution (a single
    estimate may be slightly negative), > 0 for two. M, N >= 2."""
    return _unbiased_mmd(*_kernels(x, y))


def _kid_over(x: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Rows are [output's D features, real frame's D features]: per row of picks, KID between the
    picked outputs and the picked real frames (NaN with fewer than 2)."""
    ok = ~np.isnan(x[:, 0])  # (N,)
    kernels = _kernels(*np.split(np.where(ok[:, None], x, 0.0), 2, axis=1))  # 3 x (N, N), once
    out = np.full(len(picks), np.nan)
    for i, pick in enumerate(picks):
        kept = pick[ok[pick]]  # (M,) the measured samples of this resample, repeats included
        if len(kept) >= 2:
            out[i] = _unbiased_mmd(*(k[np.ix_(kept, kept)] for k in kernels))
    return out


mean = Reduction(_mean_over)
root_mean_square = Reduction(_root_mean_square_over)
paired_correlation = Reduction(_correlation_over)
feature_kid = Reduction(_kid_over)


# ---- image measures -------------------------------------------------------------------------------

def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in [0, 1] units."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, dB (inf when identical)."""
    mse = float(np.square(a.astype(np.float64) - b.astype(np.float64)).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, radius: int = 5) -> float:
    """SSIM (Wang et al. 2004): Gaussian window (sigma 1.5, 11x11), K1 = 0.01, K2 = 0.03, L = 255,
    over windows wholly inside the image, per RGB channel, averaged."""
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma).astype(np.float64)  # (11, 1), sums to 1
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(x, cv2.CV_64F, kernel, kernel)[radius:-radius, radius:-radius]  # valid windows

    scores = []
    for channel in range(a.shape[-1]):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def perceptual_distance(network: torch.nn.Module, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS-style distance without learned weights [ours]: the features of two uint8 images at
    each of the network's layers (here VGG19 relu1_1, relu2_1, relu3_1), unit-normalised over
    channels at every position, squared difference summed over channels, averaged over positions
    and over the layers (LPIPS, Zhang et al. 2018, with all its linear weights 1). 0 for identical
    images; at most 2."""
    pair = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).float() / 127.5 - 1  # (2, 3, H, W)
    with torch.no_grad():
        distances = []
        for features in network(pair):  # (2, C, H', W')
            unit = features / (features.norm(dim=1, keepdim=True) + 1e-10)
            distances.append(float((unit[0] - unit[1]).pow(2).sum(0).mean()))
    return float(np.mean(distances))


# ---- regions of the ground truth ------------------------------------------------------------------

REGIONS = {"mouth": (MOUTH,), "eyes": (RIGHT_EYE, LEFT_EYE)}  # boxes per region, from 68-point groups
REGION_PAD = {"mouth": 0.25, "eyes": 0.5}  # box margin on each side, fraction of the box's longer side
MIN_BOX = 16  # smallest box side, pixels (the perceptual network pools twice)


def region_boxes(mesh: np.ndarray, region: str, shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) pixel boxes of `region` ("mouth" or "eyes") around a (478, 3) mesh's
    68-point groups, padded, at least MIN_BOX wide, inside an image of `shape`."""
    return landmark_boxes(mesh_to_ibug68(mesh), region, shape)


def landmark_boxes(landmarks: np.ndarray, region: str, shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """`region_boxes` around (68, >=2) points (what a training episode carries)."""
    points = np.asarray(landmarks)[:, :2]
    boxes = []
    for group in REGIONS[region]:
        lo, hi = points[group].min(0), points[group].max(0)
        half = (hi - lo) / 2 + REGION_PAD[region] * (hi - lo).max()
        half = np.maximum(half, MIN_BOX / 2)
        centre = np.clip((lo + hi) / 2, half, np.array([shape[1], shape[0]]) - half)
        x0, y0 = np.floor(centre - half).astype(int).clip(0)
        x1, y1 = np.minimum(np.ceil(centre + half).astype(int), [shape[1], shape[0]])
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
    return boxes


def _crops(image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]


def region_psnr(s: Sample, region: str) -> float:
    """PSNR over the pixels of the region's boxes (both eyes pooled)."""
    return boxes_psnr(s.output, s.truth, region_boxes(s.truth_mesh, region, s.truth.shape))


def boxes_psnr(output: np.ndarray, truth: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> float:
    """PSNR over the pixels of `boxes` (x0, y0, x1, y1) of two (S, S, 3) uint8 images, pooled."""
    out, truth = _crops(output, boxes), _crops(truth, boxes)
    return psnr(np.concatenate([o.reshape(-1, 3) for o in out]), np.concatenate([t.reshape(-1, 3) for t in truth]))


def region_perceptual(s: Sample, t: Tools, region: str) -> float:
    """Perceptual distance of each box of the region, averaged."""
    boxes = region_boxes(s.truth_mesh, region, s.truth.shape)
    return float(np.mean([t.perceptual(o, g) for o, g in zip(_crops(s.output, boxes), _crops(s.truth, boxes))]))


# ---- landmark measures ----------------------------------------------------------------------------

def pose_error(mesh: np.ndarray, reference: np.ndarray) -> float:
    """Euclidean norm of the (yaw, pitch, roll) difference of two (478, 3) meshes, degrees
    (their RMS over samples is PRMSE)."""
    delta = head_pose(mesh_to_ibug68(mesh)).astype(np.float64) - head_pose(mesh_to_ibug68(reference))
    delta = (delta + 180.0) % 360.0 - 180.0  # angles wrap
    return float(np.linalg.norm(delta))


def landmark_nme(mesh: np.ndarray, reference: np.ndarray) -> float:
    """Mean 2D distance of the 68 points of two (478, 3) meshes over the reference's inter-ocular distance."""
    p, q = mesh_to_ibug68(mesh)[:, :2], mesh_to_ibug68(reference)[:, :2]  # (68, 2)
    return float(np.linalg.norm(p - q, axis=-1).mean() / inter_ocular(q))


# ---- the registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    name: str
    modes: tuple[str, ...]  # episode modes it applies to
    higher_is_better: bool
    description: str  # one line for reports
    measure: Callable[[Sample, Tools], Value]
    reduce: Reduction = mean
    missing: Callable[[], str | None] = field(default=lambda: None)  # why it cannot run here (None: it can)


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> None:
    assert metric.name not in REGISTRY, metric.name
    REGISTRY[metric.name] = metric


def _csim_truth(s: Sample, t: Tools) -> Value:
    out = t.embedding(s.output, s.output_mesh)
    truth = t.embedding(s.truth, s.truth_mesh, s.truth_key)
    return None if out is None or truth is None else cosine(out, truth)


def _csim_targets(s: Sample, t: Tools) -> Value:
    out = t.embedding(s.output, s.output_mesh)
    keys = s.target_keys or (None,) * len(s.targets)
    found = [e for e in (t.embedding(im, m, k) for im, m, k in zip(s.targets, s.target_meshes, keys)) if e is not None]
    return None if out is None or not found else float(np.mean([cosine(out, e) for e in found]))


def _csim(s: Sample, t: Tools) -> Value:
    return _csim_truth(s, t) if s.mode == "self" else _csim_targets(s, t)


def _identity_score(s: Sample, t: Tools) -> Value:
    cos = _csim(s, t)
    ref = s.identity_reference
    return None if cos is None or ref is None else float(identity_score(cos, ref.same, ref.different))


def _expression_agreement(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    out = indicators(s.output_mesh, s.target_meshes, t.expression_config)
    driver = indicators(s.driver_mesh, s.driver_clip_meshes, t.expression_config)
    return float((out == driver).mean())


def _expression_coefficients(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    shapes, _ = t.transformer.normalize(np.stack([s.output_mesh, s.driver_mesh]))  # (2, 478, 3)
    coefficients = t.transformer.expression(shapes)  # (2, C)
    return coefficients.reshape(-1).tolist()  # [output's C, driver's C]


def _expression_agreement_driven(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    out = indicators(s.output_mesh, s.target_meshes, t.expression_config)
    asked = indicators(s.driven_mesh, s.target_meshes, t.expression_config)  # the driven face's baseline: the targets
    return float((out == asked).mean())


def _blink(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    return [float(eye_ratio(s.driver_mesh)), float(eye_ratio(s.output_mesh))]  # [driver's, output's]


def _closed_eye_recall(s: Sample, t: Tools) -> Value:
    """None unless the driver's eyes are closed; then whether the output's are too (1.0 / 0.0)."""
    closed = t.expression_config.eye_closed
    if s.output_mesh is None or eye_ratio(s.driver_mesh) >= closed:
        return None
    return float(eye_ratio(s.output_mesh) < closed)


def _closed_eye_recall_unseen(s: Sample, t: Tools) -> Value:
    """ours: the same, counted only where every target has its eyes open (lids the targets never showed)."""
    recall = _closed_eye_recall(s, t)
    if recall is None or s.target_meshes is None:
        return None
    return None if any(eye_ratio(m) < t.expression_config.eye_closed for m in s.target_meshes) else recall


def _gaze(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    return [*gaze_offset(s.driver_mesh).tolist(), *gaze_offset(s.output_mesh).tolist()]  # [driver's 2, output's 2]


def _gaze_error(s: Sample, t: Tools) -> Value:
    if s.output_mesh is None:
        return None
    return float(np.linalg.norm(gaze_offset(s.output_mesh) - gaze_offset(s.driver_mesh)))


def _video_psnr(s: Sample) -> float | None:
    """Mean PSNR of the video's frames against the clip's, over the frames that are not targets."""
    if s.truth_frames is None:
        return None
    kept = [f for f in range(len(s.truth_frames)) if f not in s.target_positions]
    return float(np.mean([psnr(s.output_frames[f], s.truth_frames[f]) for f in kept])) if kept else None


def _kid_features(s: Sample, t: Tools) -> Value:
    both = np.concatenate([t.features(s.output), t.features(s.truth, s.truth_key)])  # (512,) [output's, truth's]
    return np.round(both, 5).tolist()


def _temporal(fn: Callable[[Sample], float | None]) -> Callable[[Sample, Tools], Value]:
    """A measure of the result's video, for samples that have one."""
    return lambda s, t: None if s.output_frames is None else fn(s)


def _when_face(fn: Callable[[np.ndarray, np.ndarray], float], reference: str) -> Callable[[Sample, Tools], Value]:
    """A landmark measure of the output's mesh against the sample's `reference` mesh field."""
    return lambda s, t: None if s.output_mesh is None else fn(s.output_mesh, getattr(s, reference))


for _metric in (
    Metric("l1", ("self",), False, "mean absolute pixel error vs ground truth, [0, 1] units",
           lambda s, t: l1(s.output, s.truth)),
    Metric("psnr", ("self",), True, "PSNR vs ground truth, dB", lambda s, t: psnr(s.output, s.truth)),
    Metric("ssim", ("self",), True, "SSIM vs ground truth (Gaussian 11x11, sigma 1.5, RGB mean)",
           lambda s, t: ssim(s.output, s.truth)),
    Metric("lpips", ("self",), False, "LPIPS (AlexNet) vs ground truth",
           lambda s, t: t.lpips(s.output, s.truth), missing=Tools.lpips_missing),
    Metric("perceptual", ("self",), False, "LPIPS-style distance without learned weights [ours]: shipped "
           "ImageNet VGG19 relu1_1/2_1/3_1, channel-normalised, squared difference, mean over positions and "
           "layers, vs ground truth (0 = identical)", lambda s, t: t.perceptual(s.output, s.truth)),
    Metric("psnr_mouth", ("self",), True, "PSNR in the ground truth's mouth box (68-point mouth, 25% margin), dB",
           lambda s, t: region_psnr(s, "mouth")),
    Metric("perceptual_mouth", ("self",), False, "perceptual distance in the ground truth's mouth box",
           lambda s, t: region_perceptual(s, t, "mouth")),
    Metric("psnr_eyes", ("self",), True, "PSNR in the ground truth's two eye boxes (50% margin), dB",
           lambda s, t: region_psnr(s, "eyes")),
    Metric("perceptual_eyes", ("self",), False, "perceptual distance in the ground truth's eye boxes, averaged",
           lambda s, t: region_perceptual(s, t, "eyes")),
    Metric("kid", ("self",), False, "kernel distance between the results and the ground-truth frames as two "
           "sets (KID: unbiased squared MMD, polynomial kernel) on the shipped VGG19's relu3_1 features "
           "averaged over positions [ours: VGG, not Inception]; 0 = indistinguishable sets", _kid_features,
           reduce=feature_kid),
    Metric("csim", MODES, True, "identity cosine similarity: to the ground truth (self), mean to the K targets (cross)",
           _csim),
    Metric("identity_score", MODES, True, "calibrated identity [ours]: where CSIM falls between the target "
           "identity's different-person (0) and same-person (1) cosines on the dataset, clipped to 0..1",
           _identity_score),
    Metric("prmse", ("cross",), False, "head-pose RMSE vs the driver, degrees (RMS over samples of the "
           "(yaw, pitch, roll) error norm; poses from 3D landmarks)", _when_face(pose_error, "driver_mesh"),
           reduce=root_mean_square),
    Metric("prmse_driven", MODES, False, "head-pose RMSE vs the driven landmarks (what the renderer was "
           "asked for: relative mode = the targets' pose plus the driver's motion; self = the driver's own), degrees",
           _when_face(pose_error, "driven_mesh"), reduce=root_mean_square),
    Metric("expression_agreement", ("cross",), True, "fraction of 5 binarized landmark expression indicators "
           "(mouth open, smile, each eye closed, brows raised) equal to the driver's (AUCON stand-in)",
           _expression_agreement),
    Metric("expression_agreement_driven", MODES, True, "the same indicators vs the driven landmarks' "
           "(baseline: the targets)", _expression_agreement_driven),
    Metric("blink_correlation", MODES, True, "Pearson r of the eye aspect ratio (both eyes' mean), result vs "
           "driver, over the episode set", _blink, reduce=paired_correlation),
    Metric("closed_eye_recall", MODES, True, "of the samples whose driver has closed eyes (eye aspect ratio "
           "below the eye_closed threshold), the fraction whose result has them closed", _closed_eye_recall),
    Metric("closed_eye_recall_unseen", MODES, True, "ours: closed_eye_recall over the samples whose targets all "
           "have open eyes (closed lids the renderer had to draw, not copy)", _closed_eye_recall_unseen),
    Metric("gaze_correlation", MODES, True, "Pearson r of the iris offset within the eye (mesh iris centres; "
           "along and across the eye, averaged), result vs driver, over the episode set", _gaze,
           reduce=paired_correlation),
    Metric("gaze_error", MODES, False, "distance between the result's and the driver's iris offset within "
           "the eye, eye widths", _gaze_error),
    Metric("expression_correlation", ("cross",), True, "mean per-component Pearson r of the landmark "
           "transformer's expression coefficients, result vs driver, over the episode set",
           _expression_coefficients, reduce=paired_correlation),
    Metric("nme", MODES, False, "68-point landmark error of the result vs the driven landmarks, / "
           "inter-ocular distance", _when_face(landmark_nme, "driven_mesh")),
    Metric("video_psnr", ("self",), True, "video: mean PSNR of the result's frames against the driver clip's "
           "(each frame's ground truth), over the frames that are not targets, dB [ours: frame-level pairing, "
           "every frame of an episode instead of one]", _temporal(_video_psnr)),
    Metric("motion_correlation", MODES, True, "video: correlation of the result's landmark motion with the "
           "driven landmarks' motion (68-point trajectories centred over the video; 1 = moves as asked, "
           "0 = a frozen face)", _temporal(lambda s: motion_correlation(s.output_frame_meshes, s.driven_frame_meshes))),
    Metric("motion_error", MODES, False, "video: |result's landmark motion - driven motion| / |driven motion| "
           "(0 = exact, 1 = as far as a frozen face, > 1 = wrong motion)",
           _temporal(lambda s: motion_error(s.output_frame_meshes, s.driven_frame_meshes))),
    Metric("landmark_jitter", MODES, False, "video: RMS landmark acceleration the result adds to the driven "
           "trajectory's own, inter-ocular units per frame^2 (0 = no added shake; a frozen face is 0 too: "
           "read it beside motion fidelity)",
           _temporal(lambda s: landmark_jitter(s.output_frame_meshes, s.driven_frame_meshes))),
    Metric("flicker", MODES, False, "video: mean absolute frame-to-frame change outside the face, [0, 1] "
           "units (a frozen face is 0: read it beside motion fidelity)",
           _temporal(lambda s: flicker(s.output_frames, s.output_frame_meshes))),
    Metric("jumps", MODES, False, "video: frames whose change from the previous one exceeds 4x the video's "
           "median change (cuts, e.g. a switch to another target frame), per video",
           _temporal(lambda s: float(jumps(s.output_frames)))),
    Metric("face_found", MODES, True, "fraction of results in which the face mesh finds a face",
           lambda s, t: float(s.output_mesh is not None)),
):
    register(_metric)


def metrics_for(mode: str) -> list[Metric]:
    return [m for m in REGISTRY.values() if mode in m.modes]


def measure_sample(sample: Sample, names: Sequence[str], tools: Tools) -> dict[str, Value]:
    """{name: value} of the named metrics on one sample."""
    return {name: REGISTRY[name].measure(sample, tools) for name in names}


def summarize(records: Sequence[dict[str, Value]]) -> dict[str, float]:
    """Per-sample {name: value} records -> {name: figure}, by each metric's own reduction."""
    names = {name for record in records for name in record}
    return {name: REGISTRY[name].reduce([r.get(name) for r in records]) for name in sorted(names)}
