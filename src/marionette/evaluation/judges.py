"""Identity judges for CSIM (paper §Experiments: cosine similarity of ArcFace embeddings).

ours (offline stand-in, the default): dlib's 128-d face-recognition ResNet (the
face_recognition_models package), run by our torch port (identity.py; parity with dlib's
compute_face_descriptor within 1e-5). The face is found with dlib's HOG detector (falling back to
the box of the face mesh when it finds none) and its 5 landmarks with dlib's 5-point shape
predictor; the 150x150 chip (padding 0.25) and the network are ours, reproducing dlib's.
ArcFace runs when the user gives its ONNX file (an insightface-style model: 112x112 RGB aligned to
the standard 5-point template, pixels (x - 127.5) / 127.5, NCHW); it needs the optional
onnxruntime package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from marionette.errors import InputError
from marionette.evaluation.identity import DlibFaceNet, extract_chips, face_chip_transform
from marionette.landmarks.layout import LEFT_EYE, RIGHT_EYE, mesh_to_ibug68
from marionette.landmarks.reference import dlib_model_path

# ArcFace's 5-point template in 112x112 pixels: image-left eye, image-right eye, nose tip,
# image-left and image-right mouth corners (insightface's published alignment template).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


class IdentityJudge(Protocol):
    name: str  # how reports name the judge

    def embed(self, image: np.ndarray, mesh: np.ndarray | None) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB face image and its (478, 3) mesh in its pixels (or None) -> (D,)
        unit-norm identity embedding, or None when no face can be found."""
        ...


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two (D,) vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


class DlibJudge:
    name = ("dlib face-recognition ResNet v1 in torch (128-d, 5-point aligned 150x150 chip) "
            "[ours: stand-in for ArcFace]")

    def __init__(self) -> None:
        import dlib  # imported here: only evaluation needs it

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        self.net = DlibFaceNet.load(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    def points(self, image: np.ndarray, mesh: np.ndarray | None) -> np.ndarray | None:
        """(5, 2) dlib 5-point landmarks of the largest face, or None."""
        image = np.ascontiguousarray(image)
        box = self._box(image, mesh)
        if box is None:
            return None
        return np.array([[p.x, p.y] for p in self._shape(image, box).parts()], np.float64)

    def _box(self, image: np.ndarray, mesh: np.ndarray | None):
        found = self._detector(image, 0)  # no upsampling: faces in 256-px crops are ~100 px wide
        if len(found):
            return max(found, key=lambda r: r.area())
        if mesh is None:
            return None
        x0, y0 = mesh[:, :2].min(0)
        x1, y1 = mesh[:, :2].max(0)
        return self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))

    def descriptor(self, image: np.ndarray, mesh: np.ndarray | None) -> np.ndarray | None:
        """dlib's raw (128,) descriptor of the face in (H, W, 3) uint8 RGB `image`, or None."""
        points = self.points(image, mesh)
        if points is None:
            return None
        transform = torch.from_numpy(face_chip_transform(points))[None]  # (1, 2, 3)
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()  # (1, 3, H, W)
        chip = extract_chips(pixels, transform).floor().float()  # (1, 3, 150, 150), uint8 levels as dlib's
        with torch.no_grad():
            return self.net(chip)[0].numpy()

    def embed(self, image: np.ndarray, mesh: np.ndarray | None) -> np.ndarray | None:
        descriptor = self.descriptor(image, mesh)
        return None if descriptor is None else _unit(descriptor)


class ArcFaceJudge:
    def __init__(self, path: str | Path):
        try:
            import onnxruntime  # optional: only this judge needs it
        except ImportError:
            raise InputError("ArcFace judge needs onnxruntime (pip install onnxruntime)") from None
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such ArcFace ONNX file")
        self.name = f"ArcFace ONNX ({path.name}, 112x112, 5-point aligned)"
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def embed(self, image: np.ndarray, mesh: np.ndarray | None) -> np.ndarray | None:
        if mesh is None:
            return None
        p = mesh_to_ibug68(mesh)[:, :2]  # (68, 2)
        five = np.stack([p[RIGHT_EYE].mean(0), p[LEFT_EYE].mean(0), p[30], p[48], p[54]]).astype(np.float32)
        matrix, _ = cv2.estimateAffinePartial2D(five, ARCFACE_TEMPLATE)
        chip = cv2.warpAffine(image, matrix, (112, 112), borderMode=cv2.BORDER_REPLICATE)  # (112, 112, 3)
        x = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]  # (1, 3, 112, 112)
        return _unit(self._session.run(None, {self._input: x})[0][0])


def make_judge(arcface: str | Path | None) -> IdentityJudge:
    """ArcFace when an ONNX path is given, else dlib's ResNet."""
    return ArcFaceJudge(arcface) if arcface else DlibJudge()
