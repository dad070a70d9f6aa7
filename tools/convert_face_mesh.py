"""Convert MediaPipe's face detector and attention face mesh from .tflite to safetensors, once.

    pip install -e ".[mediapipe]" tflite   # the models' wheel (Python 3.10 to 3.12); a pure-Python reader of the TFLite schema
    PYTHONPATH=src python tools/convert_face_mesh.py [--out src/marionette/assets]

Reads the two models the legacy `mediapipe.solutions.face_mesh.FaceMesh(refine_landmarks=True)`
runs, from the installed mediapipe 0.10.21 wheel (Apache-2.0, Google):
`modules/face_detection/face_detection_short_range.tflite` (BlazeFace, 128 x 128 input) and
`modules/face_landmark/face_landmark_with_attention.tflite` (the 478-point mesh, 192 x 192 input),
and writes `face_detector.safetensors` and `face_landmarks.safetensors`.

Each file holds the model's weights, stored as fp16 (the .tflite files already keep them so:
every weight passes through a DEQUANTIZE op from fp16, so nothing is lost), in torch layout
(convolutions OIHW), and in its metadata, as JSON, the op graph that
`marionette.landmarks.tflite_net.TfliteNet` runs: every op but DEQUANTIZE in the model's order,
tensors numbered as in the .tflite file, with what the op needs (strides, explicit SAME padding,
reshape targets, the custom ops' options read from their flexbuffer). Activations are NHWC in
TFLite and NCHW in torch: pads are given in the order `torch.nn.functional.pad` takes for NCHW.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import tflite
import torch
from flatbuffers import flexbuffers
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "src" / "marionette" / "assets"
MODELS = {  # asset name: the .tflite file under mediapipe/modules/
    "face_detector": "face_detection/face_detection_short_range.tflite",
    "face_landmarks": "face_landmark/face_landmark_with_attention.tflite",
}
SAME, VALID = tflite.Padding.SAME, tflite.Padding.VALID
OP_NAMES = {getattr(tflite.BuiltinOperator, k): k for k in dir(tflite.BuiltinOperator) if not k.startswith("_")}
FLOAT16, FLOAT32, INT32 = tflite.TensorType.FLOAT16, tflite.TensorType.FLOAT32, tflite.TensorType.INT32
NUMPY_TYPES = {FLOAT16: np.float16, FLOAT32: np.float32, INT32: np.int32}


class Model:
    """One subgraph of a .tflite file: its ops, tensor shapes and constant buffers."""

    def __init__(self, path: Path):
        self.model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        assert self.model.SubgraphsLength() == 1, path
        self.graph = self.model.Subgraphs(0)

    def op_name(self, op: tflite.Operator) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        if code.CustomCode():
            return code.CustomCode().decode()
        return OP_NAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    def name(self, index: int) -> str:
        return self.graph.Tensors(index).Name().decode()

    def shape(self, index: int) -> list[int]:
        return self.graph.Tensors(index).ShapeAsNumpy().tolist()

    def constant(self, index: int) -> np.ndarray | None:
        """A tensor's stored value, or None for an activation."""
        tensor = self.graph.Tensors(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int):  # flatbuffers returns 0 for an empty vector
            return None
        return np.frombuffer(data.tobytes(), NUMPY_TYPES[tensor.Type()]).reshape(self.shape(index))

    def ops(self) -> list[tuple[str, tflite.Operator, list[int], list[int]]]:
        found = []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            found.append((self.op_name(op), op, op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()))
        return found


def options(op: tflite.Operator, kind: type) -> object:
    table = op.BuiltinOptions()
    parsed = kind()
    parsed.Init(table.Bytes, table.Pos)
    return parsed


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite's SAME padding of one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def weight_key(name: str) -> str:
    """`conv2d_20/Kernel` -> `conv2d_20.kernel`."""
    return name.lower().replace("/", ".")


def convert(model: Model) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, graph) of one model: see the module docstring."""
    weights: dict[str, torch.Tensor] = {}
    dequantized: dict[int, str] = {}  # activation index -> weight key of the fp16 constant it holds
    ops: list[dict] = []

    def constant(index: int) -> str:
        """Weight key of a constant input: an fp16 one through its DEQUANTIZE, or a float32 one as is."""
        if index in dequantized:
            return dequantized[index]
        key = weight_key(model.name(index))
        weights[key] = torch.from_numpy(np.array(model.constant(index), np.float32))
        return key

    for kind, op, inputs, outputs in model.ops():
        out = outputs[0]
        if kind == "DEQUANTIZE":
            value = model.constant(inputs[0])
            assert value is not None and value.dtype == np.float16, model.name(inputs[0])
            key = weight_key(model.name(inputs[0]))
            weights[key] = torch.from_numpy(value.copy())
            dequantized[out] = key
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w, b = inputs
            o = options(op, tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
            assert o.FusedActivationFunction() == 0 and o.DilationWFactor() == o.DilationHFactor() == 1
            assert o.StrideW() == o.StrideH()
            _, height, width, _ = model.shape(x)
            kh, kw = model.shape(w)[1:3]
            pad = [0, 0, 0, 0]
            if o.Padding() == SAME:
                pad = [*same_padding(width, kw, o.StrideW()), *same_padding(height, kh, o.StrideH())]
            # TFLite kernels: conv OHWI, depthwise 1HW(C*multiplier); torch: OIHW, depthwise C1HW
            depthwise = kind == "DEPTHWISE_CONV_2D"
            if depthwise:
                assert o.DepthMultiplier() == 1
            key = constant(w)
            weights[key] = weights[key].permute(3, 0, 1, 2) if depthwise else weights[key].permute(0, 3, 1, 2)
            ops.append({"op": "conv", "in": [x], "out": out, "weight": key, "bias": constant(b),
                        "stride": o.StrideW(), "pad": pad, "groups": model.shape(x)[3] if depthwise else 1})
        elif kind == "MAX_POOL_2D":
            o = options(op, tflite.Pool2DOptions)
            assert o.FusedActivationFunction() == 0 and o.FilterWidth() == o.FilterHeight() == o.StrideW() == o.StrideH()
            _, height, width, _ = model.shape(inputs[0])
            assert height % o.StrideH() == 0 and width % o.StrideW() == 0  # SAME adds no padding then
            ops.append({"op": "max_pool", "in": inputs, "out": out, "size": o.FilterWidth()})
        elif kind == "PAD":
            (n0, n1), (h0, h1), (w0, w1), (c0, c1) = model.constant(inputs[1]).tolist()
            assert n0 == n1 == 0
            ops.append({"op": "pad", "in": inputs[:1], "out": out, "pad": [w0, w1, h0, h1, c0, c1]})
        elif kind in ("ADD", "MUL"):
            o = options(op, tflite.AddOptions if kind == "ADD" else tflite.MulOptions)
            assert o.FusedActivationFunction() == 0
            if kind == "MUL":  # activation x constant
                ops.append({"op": "mul", "in": inputs[:1], "out": out, "constant": constant(inputs[1])})
            else:
                ops.append({"op": "add", "in": inputs, "out": out})
        elif kind == "RELU":
            ops.append({"op": "relu", "in": inputs, "out": out})
        elif kind == "PRELU":
            key = constant(inputs[1])
            weights[key] = weights[key].reshape(-1)  # (1, 1, C) -> (C,)
            ops.append({"op": "prelu", "in": inputs[:1], "out": out, "weight": key})
        elif kind == "RESHAPE":
            ops.append({"op": "reshape", "in": inputs[:1], "out": out, "shape": model.shape(out)[1:]})
        elif kind == "CONCATENATION":
            o = options(op, tflite.ConcatenationOptions)
            assert o.FusedActivationFunction() == 0 and all(len(model.shape(i)) == 3 for i in inputs)
            ops.append({"op": "concat", "in": inputs, "out": out, "axis": o.Axis()})
        elif kind == "STRIDED_SLICE":  # here only an identity (the mesh output's copy)
            begin, end, strides = (model.constant(i).tolist() for i in inputs[1:])
            assert begin == [0] * 4 and strides == [1] * 4 and end == model.shape(inputs[0])
            ops.append({"op": "identity", "in": inputs[:1], "out": out})
        elif kind in ("Landmarks2TransformMatrix", "TransformTensorBilinear", "TransformLandmarks"):
            raw = op.CustomOptionsAsNumpy()
            custom = flexbuffers.Loads(raw.tobytes()) if not isinstance(raw, int) else {}
            ops.append({"op": kind, "in": inputs, "out": out, "options": custom})
        else:
            raise NotImplementedError(f"{kind} is not converted")
    graph = {
        "inputs": model.graph.InputsAsNumpy().tolist(),
        "outputs": {model.name(i): i for i in model.graph.OutputsAsNumpy().tolist()},
        "ops": ops,
    }
    return weights, graph


def main() -> None:
    import mediapipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    modules = Path(mediapipe.__file__).parent / "modules"
    for asset, source in MODELS.items():
        weights, graph = convert(Model(modules / source))
        weights = {k: v.to(torch.float16).contiguous() for k, v in sorted(weights.items())}
        path = args.out / f"{asset}.safetensors"
        save_file(weights, str(path), metadata={"graph": json.dumps(graph, separators=(",", ":")),
                                                "source": f"mediapipe {mediapipe.__version__} modules/{source}"})
        print(f"{path}: {len(weights)} tensors, {len(graph['ops'])} ops, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
