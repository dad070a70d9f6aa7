"""The torch port of dlib's face-recognition ResNet: the file parses into the published network,
and the port (chip extraction + network) gives dlib's own descriptors on real faces."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch
from helpers import missing, require

from marionette.evaluation.identity import (
    DlibFaceNet,
    _expected_names,
    extract_chips,
    face_chip_transform,
    read_dlib_network,
)

NETWORK = "dlib_face_recognition_resnet_model_v1.dat"


def _model(name: str):
    if importlib.util.find_spec("face_recognition_models") is None:  # not imported: it needs pkg_resources
        missing("face_recognition_models (dlib's model files) is not installed")
    from marionette.landmarks.reference import dlib_model_path

    return dlib_model_path(name)


@pytest.fixture(scope="module")
def net() -> DlibFaceNet:
    return DlibFaceNet.load(_model(NETWORK))


def test_file_parses_into_the_published_network():
    mean, layers = read_dlib_network(_model(NETWORK))
    assert mean == pytest.approx([122.782, 117.001, 104.298], abs=1e-4)  # dlib's input_rgb_image mean
    assert [layer.name for layer in layers] == _expected_names()
    convs = [layer for layer in layers if layer.name == "con_4"]
    assert len(convs) == 29 and convs[0].fields["filter_shape"] == (32, 3, 7, 7)
    assert convs[-1].fields["filter_shape"] == (256, 256, 3, 3)
    assert layers[-1].fields == {"outputs": 128, "inputs": 256, "bias_mode": 1}  # fc without bias


def test_batched_and_differentiable(net):
    chips = torch.rand(3, 3, 150, 150, dtype=torch.float32) * 255
    chips.requires_grad_(True)
    batch = net(chips)  # (3, 128)
    assert batch.shape == (3, 128)
    single = torch.cat([net(chips[i:i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)
    batch[0].norm().backward()
    assert chips.grad is not None and chips.grad[0].abs().sum() > 0 and chips.grad[1:].abs().sum() == 0


def test_descriptors_match_dlib_on_real_faces(net, shared_data):
    dlib = require("dlib", "dlib is not installed: parity with its descriptors cannot be checked")
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(_model("shape_predictor_5_face_landmarks.dat")))
    reference = dlib.face_recognition_model_v1(str(_model(NETWORK)))
    checked = 0
    for path in sorted((shared_data / "faces").glob("*.jpg"))[:8]:
        image = dlib.load_rgb_image(str(path))
        scale = 300 / max(image.shape[:2])  # faces under 2x the chip: dlib samples without its pyramid
        image = np.ascontiguousarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        boxes = detector(image, 1)
        if not boxes:
            continue
        landmarks = shape(image, boxes[0])
        expected = np.array(reference.compute_face_descriptor(image, landmarks))  # (128,)
        points = np.array([[p.x, p.y] for p in landmarks.parts()], np.float64)  # (5, 2)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].double()  # (1, 3, H, W)
        chip = extract_chips(pixels, torch.from_numpy(face_chip_transform(points))[None]).floor()
        dlib_chip = dlib.get_face_chip(image, landmarks, size=150, padding=0.25)  # (150, 150, 3)
        assert np.mean(chip[0].permute(1, 2, 0).numpy() != dlib_chip) < 1e-3  # a few pixels a level off at most
        with torch.no_grad():
            ours = net(chip.float())[0].numpy()
            on_dlib_chip = net(torch.from_numpy(dlib_chip).permute(2, 0, 1)[None].float())[0].numpy()
        assert np.abs(on_dlib_chip - expected).max() < 1e-5  # the network alone
        assert np.abs(ours - expected).max() < 1e-4  # chip extraction + network
        checked += 1
    assert checked >= 6


def test_mesh_five_points_stand_in_for_dlibs(net, hopper):
    """Without dlib's predictor (e.g. as a training loss), the mesh's 5 points align the chip
    nearly as dlib's do: the same person's descriptor."""
    dlib = require("dlib", "dlib is not installed")
    from marionette.evaluation.identity import five_points_from_mesh

    image, face = hopper
    shape = dlib.shape_predictor(str(_model("shape_predictor_5_face_landmarks.dat")))
    box = dlib.get_frontal_face_detector()(image, 0)[0]
    theirs = np.array([[p.x, p.y] for p in shape(image, box).parts()], np.float64)  # (5, 2)
    ours = five_points_from_mesh(face.mesh)
    eye_distance = np.linalg.norm(theirs[0] - theirs[2])
    assert np.linalg.norm(ours - theirs, axis=1).max() < 0.05 * eye_distance  # measured: 0.024
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    chips = torch.cat([extract_chips(pixels, torch.from_numpy(face_chip_transform(p))[None]) for p in (theirs, ours)])
    with torch.no_grad():
        a, b = net(chips.float())  # (128,) each
    assert torch.linalg.norm(a - b) < 0.15  # measured 0.08; dlib: under 0.6 is the same person


def test_a_file_that_is_not_the_network_is_a_one_line_error(tmp_path):
    from marionette.errors import InputError

    data = _model(NETWORK).read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[: len(data) // 2])
    (tmp_path / "other.dat").write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(InputError, match="cut.dat: truncated dlib network file"):
        read_dlib_network(tmp_path / "cut.dat")
    with pytest.raises(InputError, match="other.dat: not dlib's face-recognition network"):
        read_dlib_network(tmp_path / "other.dat")
    with pytest.raises(InputError, match="no such dlib network file"):
        DlibFaceNet.load(tmp_path / "missing.dat")
