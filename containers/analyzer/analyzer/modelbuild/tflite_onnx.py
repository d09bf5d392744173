"""BlazeFace (MediaPipe full range) .tflite → ONNX with ``tflite2onnx``, at build time only.

``tflite2onnx`` (0.4.1, 2022) emits opset 11 with an NCHW input; the result is lifted to opset 13
with ONNX's version converter and the two outputs get stable names:

- ``regressors`` ``[1, 2304, 16]``: box (cx, cy, w, h) and 6 keypoints, in input pixels, relative to anchors;
- ``classificators`` ``[1, 2304, 1]``: face logits.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
from onnx import version_converter

from .keras_onnx import OPSET

log = logging.getLogger(__name__)

INPUT_NAME = "input"
REGRESSORS = "regressors"
CLASSIFICATORS = "classificators"


class DetectorConversionError(RuntimeError):
    """tflite2onnx is missing or produced a graph of an unexpected shape."""


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in graph.output:
        if value.name == old:
            value.name = new


def _last_dim(value: onnx.ValueInfoProto) -> int:
    return int(value.type.tensor_type.shape.dim[-1].dim_value)


def convert_tflite(tflite_bytes: bytes) -> onnx.ModelProto:
    """Convert the BlazeFace full-range tflite flatbuffer to an opset-13 ONNX model."""
    try:
        import tflite2onnx  # build-time dependency (requirements-build.txt)
    except ImportError as exc:
        raise DetectorConversionError("tflite2onnx is not installed: pip install -r requirements-build.txt") from exc

    t2o_log = logging.getLogger("tflite2onnx")
    previous = t2o_log.level
    # It warns once per float16 weight ("not supported/tested yet"); the weights are dequantised to
    # float32 correctly, which the tests check against LiteRT on the original file.
    t2o_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="tflite2onnx-") as tmp:
            src = Path(tmp) / "model.tflite"
            dst = Path(tmp) / "model.onnx"
            src.write_bytes(tflite_bytes)
            tflite2onnx.convert(str(src), str(dst))
            model = onnx.load(str(dst))
    finally:
        t2o_log.setLevel(previous)
    log.info(
        "tflite2onnx %s: %d nodes, opset %d",
        tflite2onnx.__version__,
        len(model.graph.node),
        model.opset_import[0].version,
    )

    model = version_converter.convert_version(model, OPSET)
    graph = model.graph
    if [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}] != [INPUT_NAME]:
        raise DetectorConversionError(f"unexpected inputs {[i.name for i in graph.input]}")
    by_dim = {_last_dim(o): o.name for o in graph.output}
    if sorted(by_dim) != [1, 16]:
        raise DetectorConversionError(f"unexpected outputs {[o.name for o in graph.output]}")
    _rename_value(graph, by_dim[16], REGRESSORS)
    _rename_value(graph, by_dim[1], CLASSIFICATORS)
    # tflite2onnx collects initializers in a set: sort them so the same input gives the same bytes.
    initializers = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    graph.name = "blazeface_full_range"
    model.producer_name = "analyzer.modelbuild (tflite2onnx)"
    return model


def converter_version() -> str:
    try:
        import tflite2onnx
    except ImportError:
        return "unavailable"
    return str(tflite2onnx.__version__)
