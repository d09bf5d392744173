"""BlazeFace (MediaPipe full range, short range) .tflite → ONNX with ``tflite2onnx``, at build time only.

``tflite2onnx`` (0.4.1, 2022) emits opset 11 with an NCHW input; the result is lifted to opset 13
with ONNX's version converter and the two outputs get stable names:

- ``regressors`` ``[N, anchors, 16]``: box (cx, cy, w, h) and 6 keypoints, in input pixels, relative to anchors;
- ``classificators`` ``[N, anchors, 1]``: face logits.

Full range: 192x192 input, 2304 anchors; short range: 128x128, 896 anchors. The batch dimension is made
dynamic (the tflite graph's only batch-bound ops are its final reshapes ``[1, -1, k]``, which become
``[0, -1, k]``: "keep the batch"), so many crops go through in one call.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

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


def _dynamic_batch(model: onnx.ModelProto) -> None:
    """Batch dimension ``N`` instead of 1: the input/outputs' first dim, the final reshapes' leading 1, and
    the full-range model's fixed-``sizes`` upsampling (2x, as ``scales``: the same resize for any batch)."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*inferred.value_info, *inferred.input)
    }
    for node in graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or node.input[3] not in initializers:
            continue
        sizes = numpy_helper.to_array(initializers[node.input[3]]).astype(np.float64)
        source = dims.get(node.input[0])
        if source is None or len(source) != 4 or 0 in source or sizes[0] != source[0] or sizes[1] != source[1]:
            raise DetectorConversionError(f"resize {node.name}: cannot turn sizes {sizes.tolist()} into scales")
        scales_name = f"{node.name}/scales"
        scales = np.array([1.0, 1.0, sizes[2] / source[2], sizes[3] / source[3]], np.float32)
        graph.initializer.append(numpy_helper.from_array(scales, scales_name))
        node.input[:] = [node.input[0], node.input[1], scales_name]
    shapes = {node.input[1] for node in graph.node if node.op_type == "Reshape"}  # shared by several reshapes
    for shape_name in sorted(shapes):
        shape_init = initializers.get(shape_name)
        if shape_init is None:
            raise DetectorConversionError(f"reshape to {shape_name} has a computed shape")
        shape = numpy_helper.to_array(shape_init)
        if shape.ndim != 1 or shape.size != 3 or shape[0] != 1:
            raise DetectorConversionError(f"reshape to {shape.tolist()} is not a [1, -1, k] head")
        shape_init.CopyFrom(numpy_helper.from_array(np.array([0, *shape[1:]], np.int64), shape_init.name))
    del graph.value_info[:]  # intermediate shapes inferred for batch 1
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]  # the replaced resize sizes go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in (*[i for i in graph.input if i.name not in initializers], *graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_value != 1:
            raise DetectorConversionError(f"{value.name} has batch {dim.dim_value}, expected 1")
        dim.dim_param = "N"


def convert_tflite(tflite_bytes: bytes, name: str = "blazeface_full_range") -> onnx.ModelProto:
    """Convert a BlazeFace tflite flatbuffer to an opset-13 ONNX model with a dynamic batch."""
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
    _dynamic_batch(model)
    onnx.checker.check_model(model)
    graph.name = name
    model.producer_name = "analyzer.modelbuild (tflite2onnx)"
    return model


def converter_version() -> str:
    try:
        import tflite2onnx
    except ImportError:
        return "unavailable"
    return str(tflite2onnx.__version__)


def grey_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model for grey pictures: one input channel instead of three.

    The analyzer feeds BlazeFace the luma plane replicated into the three RGB channels; for such an input the
    first convolution (the only reader of the input) computes the same as one whose kernel is the sum of its three
    channels' kernels on one channel. The folded model reads a third of the input and does a third of the first
    layer's work (~13 % of the short-range model per crop on one core); it equals the RGB model on grey inputs up
    to float rounding. Raises ``ValueError`` when the input is read by anything but convolutions with constant
    weights."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    (inp,) = [i for i in graph.input if i.name == INPUT_NAME]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"grey_input wants an NCHW input of 3 channels, got {dims}")
    readers = [n for n in graph.node if INPUT_NAME in n.input]
    initializers = {i.name: i for i in graph.initializer}
    if not readers or any(n.op_type != "Conv" or n.input[0] != INPUT_NAME or n.input[1] not in initializers
                          for n in readers):
        raise ValueError(f"the input is read by {[n.op_type for n in readers]}, not only by convolutions")
    if any(attr.name == "group" and attr.i != 1 for n in readers for attr in n.attribute):
        raise ValueError("grey_input cannot fold a grouped first convolution")
    for name in {n.input[1] for n in readers}:
        kernel = numpy_helper.to_array(initializers[name])
        if sum(1 for n in graph.node for i in n.input if i == name) != sum(1 for n in readers if n.input[1] == name):
            raise ValueError(f"the first convolution's weights {name} are shared with other nodes")
        summed = kernel.sum(axis=1, keepdims=True).astype(kernel.dtype)
        initializers[name].CopyFrom(numpy_helper.from_array(summed, name))
    dims[1].dim_value = 1
    onnx.checker.check_model(folded, full_check=True)
    return folded
