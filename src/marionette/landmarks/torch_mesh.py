"""MediaPipe's legacy face mesh with iris refinement (478 points), in torch.

The same detector, models and geometry as `mediapipe.solutions.face_mesh.FaceMesh(
refine_landmarks=True)` of mediapipe 0.10.21 (graph mediapipe/modules/face_landmark/
face_landmark_front_cpu.pbtxt), with the weights converted once from its .tflite files
(tools/convert_face_mesh.py, docs/face_mesh.md):

1. BlazeFace short range (face_detection_short_range.pbtxt, face_detection.pbtxt): the whole image
   letterboxed into 128 x 128, 896 SSD anchors, boxes and 6 keypoints decoded, weighted
   non-maximum suppression.
2. A region of interest per face (face_detection_front_detection_to_roi.pbtxt): the box's centre,
   turned so the eyes are level, squared on its long side and scaled by 1.5.
3. That region cropped to 192 x 192 (ImageToTensorCalculator: OpenCV's warpPerspective, bilinear,
   border replicated) and the attention mesh run on it (face_landmark_cpu.pbtxt): 468 mesh points,
   then lips, eyes and irises refined (tensors_to_face_landmarks_with_attention.pbtxt) and the
   points mapped back to the image (LandmarkProjectionCalculator).
4. In video mode the next frame's region comes from the landmarks (face_landmark_landmarks_to_
   roi.pbtxt: their box, turned by the eye corners 33 -> 263); the detector runs again while fewer
   than `max_faces` faces are tracked, its regions replaced by tracked ones that overlap them
   (AssociationNormRectCalculator, IoU > 0.5); a face whose presence score falls to
   `min_confidence` is dropped.

Geometry is in MediaPipe's pixel units (a pixel spans [i, i + 1)) until the faces are returned,
in OpenCV's (pixel centres at integers) like `marionette.landmarks.layout.Face`. A region of
interest is a row (cx, cy, side, rotation): a square of `side` pixels centred at (cx, cy), turned
by `rotation` radians (x right, y down: positive turns x towards y).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from marionette.landmarks.layout import Face
from marionette.landmarks.tflite_net import TfliteNet
from marionette.resources import asset

DETECTOR_SIZE = 128  # face_detection_short_range.pbtxt: tensor_width, tensor_height
MESH_SIZE = 192  # face_landmark_cpu.pbtxt: output_tensor_width, output_tensor_height
NMS_IOU = 0.3  # face_detection.pbtxt: NonMaxSuppressionCalculator min_suppression_threshold (WEIGHTED)
ROI_SCALE = 1.5  # RectTransformationCalculator scale_x, scale_y (square_long) of both ROI graphs
TRACK_IOU = 0.5  # face_landmark_front_cpu.pbtxt: AssociationNormRectCalculator min_similarity_threshold
DETECTION_EYES = (0, 1)  # detection keypoints whose line sets the ROI's rotation (left eye, right eye)
MESH_EYES = (33, 263)  # mesh points that set a tracked ROI's rotation (left eye's outer corner, right eye's)
IRIS_Z_POINTS = 16  # tensors_to_face_landmarks_with_attention.pbtxt: an iris's z = mean z of its eye's first 16 points


def ssd_anchors() -> torch.Tensor:
    """(896, 2) anchor centres in [0, 1] (SsdAnchorsCalculator with face_detection_short_range's
    options: strides 8, 16, 16, 16 on 128 x 128; two anchors per cell for stride 8, six for the
    three stride-16 layers merged; fixed size 1, so only the centres matter)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = DETECTOR_SIZE // stride
        y, x = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        xy = (torch.stack([x, y], -1).reshape(-1, 2).float() + 0.5) / cells
        centres.append(xy.repeat_interleave(per_cell, 0))
    return torch.cat(centres)


def normalize_radians(angle: torch.Tensor) -> torch.Tensor:
    """The angle in [-pi, pi) (MediaPipe's NormalizeRadians)."""
    return angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))


def crop(image: np.ndarray, roi: list[float], size: int, replicate: bool) -> np.ndarray:
    """ImageToTensorCalculator's CPU path (image_to_tensor_converter_opencv.cc): the ROI of an
    (H, W, 3) uint8 image as a (size, size, 3) uint8 crop, by OpenCV itself, whose rounding (sample
    points to 1/32 pixel, through a matrix inverted in double) torch cannot repeat bit for bit: the
    ROI's corners map onto the crop's corners (0 and size), bilinear, outside the image the border
    pixel repeated (`replicate`) or 0."""
    cx, cy, side, rotation = roi
    corners = cv2.boxPoints(((cx, cy), (side, side), math.degrees(rotation)))
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, target), (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT)


def weighted_nms(scores: torch.Tensor, boxes: torch.Tensor, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NonMaxSuppressionCalculator, WEIGHTED, IoU: from the best remaining detection, the ones that
    overlap it by more than NMS_IOU become one, their boxes and keypoints averaged by score.
    scores: (K,), boxes: (K, 4) x0, y0, x1, y1, keypoints: (K, 6, 2) -> boxes (D, 4) and keypoints
    (D, 6, 2) of the D detections kept, best first."""
    remaining = torch.argsort(scores, descending=True, stable=True)
    kept_boxes, kept_points = [boxes[:0]], [keypoints[:0]]
    while len(remaining):
        others = boxes[remaining]  # the best first
        inter = (torch.minimum(others[:, 2:], others[0, 2:]) - torch.maximum(others[:, :2], others[0, :2])).clamp(min=0).prod(1)
        areas = (others[:, 2:] - others[:, :2]).prod(1)
        union = areas + areas[0] - inter
        iou = torch.where(union > 0, inter / union, torch.zeros_like(union))
        cluster, rest = remaining[iou > NMS_IOU], remaining[iou <= NMS_IOU]
        if len(cluster):
            w, total = scores[cluster, None], scores[cluster].sum()
            kept_boxes.append((boxes[cluster] * w).sum(0, keepdim=True) / total)
            kept_points.append((keypoints[cluster] * w[:, :, None]).sum(0, keepdim=True) / total)
        else:  # a box of no area overlaps nothing, not even itself: kept as is, and the search ends
            kept_boxes.append(others[:1])
            kept_points.append(keypoints[remaining[:1]])
        if len(rest) == len(remaining):
            break
        remaining = rest
    return torch.cat(kept_boxes), torch.cat(kept_points)


def roi_from_points(box: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """DetectionsToRectsCalculator + RectTransformationCalculator: the box's centre, turned so that
    left -> right is level, squared on its long side, scaled by ROI_SCALE. box: (..., 4) x0, y0, x1,
    y1; left, right: (..., 2) -> (..., 4) ROI rows."""
    centre = (box[..., :2] + box[..., 2:]) / 2
    side = (box[..., 2:] - box[..., :2]).amax(-1) * ROI_SCALE
    rotation = normalize_radians(-torch.atan2(-(right[..., 1] - left[..., 1]), right[..., 0] - left[..., 0]))
    return torch.cat([centre, side[..., None], rotation[..., None]], -1)


def roi_from_landmarks(points: torch.Tensor) -> torch.Tensor:
    """face_landmark_landmarks_to_roi.pbtxt: (N, 478, 3) MediaPipe pixels -> (N, 4) ROI rows."""
    box = torch.cat([points[..., :2].amin(-2), points[..., :2].amax(-2)], -1)
    return roi_from_points(box, points[:, MESH_EYES[0], :2], points[:, MESH_EYES[1], :2])


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two ROIs' unturned squares (AssociationNormRectCalculator ignores rotation)."""
    half_a, half_b = a[2] / 2, b[2] / 2
    ix = (torch.minimum(a[0] + half_a, b[0] + half_b) - torch.maximum(a[0] - half_a, b[0] - half_b)).clamp(min=0)
    iy = (torch.minimum(a[1] + half_a, b[1] + half_b) - torch.maximum(a[1] - half_a, b[1] - half_b)).clamp(min=0)
    inter = ix * iy
    return float(inter / (a[2] ** 2 + b[2] ** 2 - inter))


def associate(detected: torch.Tensor, tracked: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """AssociationNormRectCalculator: ROIs (K, 4) detected, then (M, 4) tracked, each replacing the
    earlier ones it overlaps by more than TRACK_IOU -> (R, 4), and whether a detected one is among
    them (a face not tracked yet)."""
    rois = torch.cat([detected, tracked])  # (K + M, 4)
    kept: list[int] = []
    for i, roi in enumerate(rois):
        kept = [k for k in kept if overlap(rois[k], roi) <= TRACK_IOU] + [i]
    return rois[kept], any(k < len(detected) for k in kept)


def refined_regions(mesh: TfliteNet, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """The mesh points each refined region of the attention mesh `mesh` replaces: (lips, left eye,
    right eye), in the model's order. tensors_to_face_landmarks_with_attention.pbtxt writes each
    region's points to the points its crop was taken around: the Landmarks2TransformMatrix subsets,
    the very same lists."""
    return tuple(torch.tensor(op["options"]["subset_idxs"], device=device)
                 for op in mesh.ops if op["op"] == "Landmarks2TransformMatrix")


def refined_mesh(out: dict[str, torch.Tensor], regions: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The attention mesh's outputs -> (N, 468, 3) points in its crop's pixels (0..192): the whole
    mesh with the x, y of the lips and eyes from their refined regions (`refined_regions`)."""
    n = len(out["output_mesh_identity"])
    points = out["output_mesh_identity"].reshape(n, 468, 3).clone()
    for name, region in zip(("output_lips", "output_left_eye", "output_right_eye"), regions):
        points[:, region, :2] = out[name].reshape(n, -1, 2)
    return points


class TorchFaceMesh:
    """MediaPipe face mesh in torch, the surface of `marionette.landmarks.mesh.FaceMesh`:
    `video=True` tracks across consecutive frames."""

    def __init__(self, video: bool = False, max_faces: int = 4, min_confidence: float = 0.5,
                 device: str | torch.device = "cpu"):
        self.video, self.max_faces, self.min_confidence = video, max_faces, min_confidence
        self.device = torch.device(device)
        self.detector = TfliteNet(asset("face_detector.safetensors")).to(self.device).eval()
        self.mesh = TfliteNet(asset("face_landmarks.safetensors")).to(self.device).eval()
        self.anchors = ssd_anchors().to(self.device)  # (896, 2)
        self.regions = refined_regions(self.mesh, self.device)
        self.tracked = torch.zeros(0, 4, device=self.device)  # video mode: (M, 4) ROIs from the last frame's landmarks

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first."""
        return self.detect_batch(image[None])[0]

    @torch.inference_mode()
    def detect_batch(self, images: np.ndarray) -> list[list[Face]]:
        """Faces in each of (B, H, W, 3) uint8 RGB frames, largest first. Image mode detects all
        frames in one batch. Video mode takes the frames as consecutive: the detector, which does
        not depend on tracking, runs on all B in one batch (a frame that tracks `max_faces` faces
        leaves its detections unused), then the landmark model tracks frame by frame, in order.
        Where a detection starts a track, that frame is detected again alone: a batch's float
        rounding differs from a lone frame's (on the CPU torch convolves the detector's two 1 x 1
        classifier heads another way at batch 1: 1e-5 px in the region), which tracking would grow
        to 0.1-0.3 px; so the faces are those `detect` finds frame by frame (to the bit, measured)."""
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected (B, H, W, 3) uint8 RGB frames, got {images.shape} {images.dtype}")
        detected = self.detect_rois(images)  # per frame, (K, 4) ROIs
        if not self.video:
            index = [b for b, rois in enumerate(detected) for _ in range(len(rois))]
            points, keep = self.landmarks(images, index, torch.cat(detected))
            frame = torch.tensor(index, dtype=torch.long, device=self.device)
            return [self.faces(points[(frame == b) & keep]) for b in range(len(images))]
        results = []
        for image, found in zip(images, detected):
            rois = self.tracked
            if len(rois) < self.max_faces:  # face_landmark_front_cpu.pbtxt: detect while too few are tracked
                rois, fresh = associate(found, self.tracked)
                if fresh and len(images) > 1:  # a track starts here: its region from this frame detected alone, as `detect` does
                    rois, _ = associate(self.detect_rois(image[None])[0], self.tracked)
            points, keep = self.landmarks(image[None], [0] * len(rois), rois)
            self.tracked = roi_from_landmarks(points[keep])
            results.append(self.faces(points[keep]))
        return results

    def tensor(self, crops: list[np.ndarray], scale: float, offset: float) -> torch.Tensor:
        """(S, S, 3) uint8 crops -> (N, 3, S, S) float32 on the device, value * scale + offset."""
        return torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float() * scale + offset

    def detect_rois(self, images: np.ndarray) -> list[torch.Tensor]:
        """face_detection_short_range + face_detection_front_detection_to_roi: (B, H, W, 3) frames ->
        per frame, (K, 4) ROIs of its best `max_faces` detections, best first."""
        height, width = images.shape[1:3]
        side = max(height, width)  # ImageToTensorCalculator keep_aspect_ratio: letterboxed, zero border
        letterbox = [width / 2, height / 2, side, 0.0]
        crops = [crop(image, letterbox, DETECTOR_SIZE, replicate=False) for image in images]
        out = self.detector(self.tensor(crops, 2 / 255, -1.0))  # float range -1..1
        raw, logits = out["regressors"], out["classificators"][..., 0]  # (B, 896, 16), (B, 896)
        # TensorsToDetectionsCalculator (reverse_output_order: x, y, w, h; keypoints x, y; scale 128)
        scores = torch.sigmoid(logits.clamp(-100, 100))
        centre = raw[..., :2] / DETECTOR_SIZE + self.anchors
        size = raw[..., 2:4] / DETECTOR_SIZE
        boxes = torch.cat([centre - size / 2, centre + size / 2], -1)  # (B, 896, 4) in the 128 x 128 tensor, 0..1
        keypoints = raw[..., 4:].reshape(*raw.shape[:2], 6, 2) / DETECTOR_SIZE + self.anchors[:, None]
        # DetectionProjectionCalculator: tensor 0..1 -> image pixels (the letterbox square, no rotation)
        offset = torch.tensor([width - side, height - side], device=self.device) / 2
        rois = []
        for b in range(len(images)):
            valid = (scores[b] >= self.min_confidence) & (size[b] >= 0).all(-1)
            found, points = weighted_nms(scores[b][valid], boxes[b][valid], keypoints[b][valid])
            found, points = found[: self.max_faces] * side + offset.repeat(2), points[: self.max_faces] * side + offset
            rois.append(roi_from_points(found, points[:, DETECTION_EYES[0]], points[:, DETECTION_EYES[1]]))
        return rois

    def landmarks(self, images: np.ndarray, index: list[int], rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """face_landmark_cpu.pbtxt with attention: (N, 4) ROIs of images[index] -> (N, 478, 3)
        points in MediaPipe pixels (z in the pixel scale of x), and (N,) whether the face's presence
        score is above min_confidence."""
        n = len(rois)
        if not n:
            return torch.zeros(0, 478, 3, device=self.device), torch.zeros(0, dtype=torch.bool, device=self.device)
        crops = [crop(images[b], roi, MESH_SIZE, replicate=True) for b, roi in zip(index, rois.tolist())]
        out = self.mesh(self.tensor(crops, 1 / 255, 0.0))  # float range 0..1
        points = refined_mesh(out, self.regions)  # crop pixels, 0..192
        irises = []
        for name, eye in (("output_left_iris", self.regions[1]), ("output_right_iris", self.regions[2])):
            z = points[:, eye[:IRIS_Z_POINTS], 2].mean(1, keepdim=True)  # (N, 1)
            irises.append(torch.cat([out[name].reshape(n, 5, 2), z[:, :, None].expand(n, 5, 1)], -1))
        points = torch.cat([points, *irises], 1) / MESH_SIZE - torch.tensor([0.5, 0.5, 0.0], device=self.device)
        # LandmarkProjectionCalculator: crop units (centred) -> image pixels, z scaled as x
        cx, cy, side, rotation = rois.T[:, :, None]  # each (N, 1)
        cos, sin = torch.cos(rotation), torch.sin(rotation)
        x, y, z = points.unbind(-1)
        projected = torch.stack([(cos * x - sin * y) * side + cx, (sin * x + cos * y) * side + cy, z * side], -1)
        presence = torch.sigmoid(out["conv_faceflag"].reshape(n))
        return projected, presence > self.min_confidence

    def faces(self, points: torch.Tensor) -> list[Face]:
        """(N, 478, 3) MediaPipe pixels -> Faces (OpenCV pixels), largest first."""
        shifted = (points - torch.tensor([0.5, 0.5, 0.0], device=points.device)).cpu().numpy()
        return sorted((Face(p) for p in shifted), key=lambda f: -f.width)

    def close(self) -> None:
        self.tracked = self.tracked[:0]

    def __enter__(self) -> TorchFaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
