"""What the system sees in one image: the 68 3D points, the head pose, and a crop preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from marionette.landmarks.crop import CropConfig, crop_image
from marionette.landmarks.mesh import LARGEST, Face, choose_face, detect_all, pick_face
from marionette.landmarks.pose import head_pose
from marionette.landmarks.render import draw_points, render_landmarks
from marionette.media import load_image, save_image


def _summary(face: Face, number: int) -> dict[str, Any]:
    yaw, pitch, roll = head_pose(face.ibug68).tolist()
    return {"face": number, "box": [round(v, 1) for v in face.box], "face_width": round(face.width, 1),
            "pose": {"yaw": round(yaw, 2), "pitch": round(pitch, 2), "roll": round(roll, 2)}}


def landmark_report(path: Path, face_index: int = LARGEST, size: int = 256, preview: str | Path | None = None,
                    crop: CropConfig = CropConfig()) -> dict[str, Any]:
    """Detect every face and choose one (the largest, or the face_index-th from the left); return
    the chosen face's 68 points (image pixels), pose and crop box, and a summary of every face
    (numbered from 0, left to right: the numbers `face=N` takes), as a JSON-ready dict. With
    `preview`, write the chosen crop with the points drawn beside the rendered landmark image."""
    image = load_image(path)
    faces = detect_all(image)
    face = choose_face(faces, path, face_index)
    ordered = [pick_face(faces, i) for i in range(len(faces))]
    points = face.ibug68  # (68, 3) image pixels
    yaw, pitch, roll = head_pose(points).tolist()
    box = crop.box(face.mesh)
    if preview:
        crop_points = box.to_crop(points, size)
        left = draw_points(crop_image(image, box, size), crop_points)
        save_image(preview, np.concatenate([left, render_landmarks(crop_points, size)], axis=1))
    return {
        "image": str(path),
        "size": [int(image.shape[1]), int(image.shape[0])],
        "face_width": round(face.width, 1),
        "points68": np.round(points, 2).tolist(),
        "pose": {"yaw": round(yaw, 2), "pitch": round(pitch, 2), "roll": round(roll, 2)},
        "crop": {"cx": round(box.cx, 2), "cy": round(box.cy, 2), "side": round(box.side, 2)},
        "face": next(i for i, f in enumerate(ordered) if f is face),
        "faces": [_summary(f, i) for i, f in enumerate(ordered)],
    }
