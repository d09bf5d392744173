"""The two models converted from npm packages against INDEPENDENT float64 numpy forward passes.

The references below are written from the sources, not from our converter: the face-api network from
face-api's TypeScript (``FaceFeatureExtractor``, ``denseBlock4``, ``FaceProcessor``; NHWC, TensorFlow
"same" padding) with its weights dequantised here from the manifest; Human's ``emotion`` model by
interpreting its ``model.json`` node by node in NHWC. Inputs are real faces (the astronaut at several
crop scales, shifted, mirrored, darker) and non-faces.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from analyzer.align import Face, align_faces
from analyzer.modelbuild import BuildResult, build, default_cache_dir, npm
from numpy.lib.stride_tricks import sliding_window_view
from skimage import data, transform

ASTRONAUT_FACE = (175.0, 71.0, 277.0, 173.0)


@pytest.fixture(scope="session")
def built() -> BuildResult:
    return build()


@pytest.fixture(scope="module")
def faceapi_files(built: BuildResult) -> dict[str, bytes]:
    return npm.load(npm.FACEAPI_SOURCE, default_cache_dir()).members


@pytest.fixture(scope="module")
def human_files(built: BuildResult) -> dict[str, bytes]:
    return npm.load(npm.HUMAN_MODELS_SOURCE, default_cache_dir()).members


def _faces_rgb(size: int) -> np.ndarray:
    """Real face crops (RGB uint8) at several scales/shifts, mirrored, darker, plus non-faces."""
    img = data.astronaut()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    crops = []
    for scale in (0.9, 1.0, 1.1, 1.25, 1.4):
        for dx, dy in ((0, 0), (-8, 4), (6, -6)):
            cx, cy, half = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, (x1 - x0) * scale / 2
            window = img[round(cy - half) : round(cy + half), round(cx - half) : round(cx + half)]
            crops.append(transform.resize(window, (size, size), preserve_range=True, anti_aliasing=True))
    crops += [crops[0][:, ::-1], crops[3][:, ::-1], crops[1] * 0.6]
    rng = np.random.default_rng(5)
    coffee = data.coffee()[100:300, 200:400]
    crops += [
        transform.resize(coffee, (size, size), preserve_range=True, anti_aliasing=True),
        rng.integers(0, 256, (size, size, 3)),
        np.zeros((size, size, 3)),
        np.full((size, size, 3), 255.0),
        np.tile(np.linspace(0, 255, size)[None, :, None], (size, 1, 3)),
    ]
    return np.stack([np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in crops])


N_FACES = 18  # the first 18 crops above are the astronaut


# ------------------------------------------------------------------------------ float64 NHWC building blocks
def _same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, k: int, s: int, padding: str, fill: float = 0.0) -> np.ndarray:
    if padding == "VALID":
        return x
    (t, b), (left, r) = _same(x.shape[1], k, s), _same(x.shape[2], k, s)
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:  # (N, H', W', C, k, k)
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def conv2d(x: np.ndarray, w: np.ndarray, s: int, padding: str) -> np.ndarray:  # w: (kh, kw, cin, cout)
    k = w.shape[0]
    return np.einsum("nhwcij,ijco->nhwo", _windows(_pad(x, k, s, padding), k, s), w)


def depthwise(x: np.ndarray, w: np.ndarray, s: int, padding: str) -> np.ndarray:  # w: (kh, kw, c, 1)
    k = w.shape[0]
    return np.einsum("nhwcij,ijc->nhwc", _windows(_pad(x, k, s, padding), k, s), w[..., 0])


def maxpool(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    return _windows(_pad(x, k, s, padding, -np.inf), k, s).max(axis=(4, 5))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


relu = lambda x: np.maximum(x, 0.0)  # noqa: E731


# ----------------------------------------------------------------------------------------- face-api reference
def _faceapi_weights(manifest_json: bytes, data_bin: bytes) -> dict[str, np.ndarray]:
    """tfjs-core's decodeWeights for uint8 quantisation: value = q * scale + min; float32 otherwise."""
    (group,) = json.loads(manifest_json)
    out, offset = {}, 0
    for spec in group["weights"]:
        n = int(np.prod(spec["shape"]))
        q = spec.get("quantization")
        if q:
            assert q["dtype"] == "uint8"
            raw = np.frombuffer(data_bin, np.uint8, n, offset).astype(np.float64)
            out[spec["name"]] = (raw * q["scale"] + q["min"]).reshape(spec["shape"])
            offset += n
        else:
            out[spec["name"]] = np.frombuffer(data_bin, "<f4", n, offset).astype(np.float64).reshape(spec["shape"])
            offset += 4 * n
    assert offset == len(data_bin)
    return out


def faceapi_forward(w: dict[str, np.ndarray], rgb: np.ndarray) -> np.ndarray:
    """face-api FaceExpressionNet on uint8 RGB 112x112 crops → softmax in face-api's label order."""
    x = (rgb.astype(np.float64) - np.array([122.782, 117.001, 104.298])) / 255.0

    def sep(x: np.ndarray, p: str, s: int) -> np.ndarray:  # tf.separableConv2d(..., 'same') + bias
        return (
            conv2d(depthwise(x, w[f"{p}/depthwise_filter"], s, "SAME"), w[f"{p}/pointwise_filter"], 1, "VALID")
            + w[f"{p}/bias"]
        )

    for block in range(4):
        p = f"dense{block}"
        if block == 0:
            out1 = relu(conv2d(x, w[f"{p}/conv0/filters"], 2, "SAME") + w[f"{p}/conv0/bias"])
        else:
            out1 = relu(sep(x, f"{p}/conv0", 2))
        out2 = sep(out1, f"{p}/conv1", 1)
        out3 = sep(relu(out1 + out2), f"{p}/conv2", 1)
        out4 = sep(relu(out1 + out2 + out3), f"{p}/conv3", 1)
        x = relu(out1 + out2 + out3 + out4)
    pooled = _windows(x, 7, 2).mean(axis=(4, 5))  # avgPool 7x7 stride 2 valid
    return softmax(pooled.reshape(len(x), -1) @ w["fc/weights"] + w["fc/bias"])


# --------------------------------------------------------------------------------------- Human emotion reference
def _attr(node: dict[str, Any], key: str) -> Any:
    v = node["attr"][key]
    if "s" in v:
        return base64.b64decode(v["s"]).decode()
    if "list" in v:
        return [base64.b64decode(s).decode() for s in v["list"].get("s", [])] or [int(i) for i in v["list"]["i"]]
    return v


def human_forward(model_json: bytes, data_bin: bytes, gray: np.ndarray) -> np.ndarray:
    """Interpret Human's emotion graph (NHWC, float64) on uint8 64x64 gray crops."""
    spec = json.loads(model_json)
    weights, offset = {}, 0
    for entry in spec["weightsManifest"][0]["weights"]:
        n = int(np.prod(entry["shape"]))
        dtype = {"float32": "<f4", "int32": "<i4"}[entry["dtype"]]
        weights[entry["name"]] = np.frombuffer(data_bin, dtype, n, offset).reshape(entry["shape"]).astype(np.float64)
        offset += 4 * n
    values: dict[str, np.ndarray] = dict(weights)
    values["input_1"] = ((gray.astype(np.float64) / 255.0 - 0.5) * 2.0)[..., None]
    result = None
    for node in spec["modelTopology"]["node"]:
        op, ins = node["op"], [values.get(i.split(":")[0]) for i in node.get("input", [])]
        if op in ("Const", "Placeholder"):
            continue
        if op == "_FusedConv2D":
            s = _attr(node, "strides")[1]
            y = conv2d(ins[0], ins[1], s, _attr(node, "padding")) + ins[2]
            y = relu(y) if _attr(node, "fused_ops") == ["BiasAdd", "Relu"] else y
        elif op == "DepthwiseConv2dNative":
            y = depthwise(ins[0], ins[1], _attr(node, "strides")[1], _attr(node, "padding"))
        elif op == "MaxPool":
            y = maxpool(ins[0], _attr(node, "ksize")[1], _attr(node, "strides")[1], _attr(node, "padding"))
        elif op == "AddV2":
            y = ins[0] + ins[1]
        elif op == "Relu":
            y = relu(ins[0])
        elif op == "Mean":
            y = ins[0].mean(axis=tuple(int(a) for a in ins[1]))
        elif op == "Softmax":
            y = softmax(ins[0])
        elif op == "Identity":
            y = ins[0]
        else:
            raise AssertionError(f"reference has no {op}")
        values[node["name"]] = result = y
    assert result is not None
    return result


def _onnx(path: object, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x.astype(np.float32)})
    return np.asarray(out, np.float64)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- tests
def test_faceapi_expression_matches_float64_numpy_forward_pass(
    built: BuildResult, faceapi_files: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    crops = _faces_rgb(112)
    w = _faceapi_weights(
        faceapi_files["package/model/face_expression_model-weights_manifest.json"],
        faceapi_files["package/model/face_expression_model.bin"],
    )
    reference = faceapi_forward(w, crops)
    x = ((crops.astype(np.float64) - np.array([122.782, 117.001, 104.298])) / 255.0).transpose(0, 3, 1, 2)
    converted = _onnx(built.files.path("faceapi_expression"), x)
    diff = float(np.abs(converted - reference).max())
    with capsys.disabled():
        print(f"\nface-api expression: ONNX vs float64 numpy, max abs diff {diff:.2e} on {len(crops)} inputs")
    assert converted.shape == (len(crops), 7)
    assert diff < 1e-4
    # the astronaut smiles: 'happy' is face-api's index 1
    assert (reference[:N_FACES].argmax(axis=1) == 1).mean() >= 0.9


def test_human_emotion_matches_float64_numpy_forward_pass(
    built: BuildResult, human_files: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    gray = _gray(_faces_rgb(64))
    reference = human_forward(
        human_files["package/models/emotion.json"], human_files["package/models/emotion.bin"], gray
    )
    x = ((gray.astype(np.float64) / 255.0 - 0.5) * 2.0)[:, None]
    converted = _onnx(built.files.path("human_emotion"), x)
    diff = float(np.abs(converted - reference).max())
    with capsys.disabled():
        print(f"\nhuman emotion: ONNX vs float64 numpy, max abs diff {diff:.2e} on {len(gray)} inputs")
    assert converted.shape == (len(gray), 7)
    assert diff < 1e-4
    # 'happy' is index 3 in the FER2013 order
    assert (reference[:N_FACES].argmax(axis=1) == 3).mean() >= 0.9


def test_models_agree_on_an_aligned_real_face(built: BuildResult) -> None:
    """The runtime path (align → classify) gives the smiling astronaut 'happiness' with every model."""
    from analyzer.expressions import CLASSIFIER_NAMES, load_classifier
    from emotion_shared.emotions import EMOTIONS

    luma = _gray(data.astronaut())
    for name in CLASSIFIER_NAMES:
        classifier = load_classifier(name)
        crops = align_faces(luma, [Face(ASTRONAUT_FACE)], classifier.size, classifier.crop_scale)
        probs = classifier.classify(crops)
        assert EMOTIONS[int(probs[0].argmax())] == "happiness", name
