"""TensorFlow.js models → ONNX, without TensorFlow: weights manifests + numpy + ``onnx.helper``.

Two converters, both producing an NCHW graph ``input [N, C, H, W]`` → ``probabilities [N, 7]`` (opset 13):

- :func:`convert_faceapi_expression`: face-api's FaceExpressionNet. The file holds only weights (a TFJS
  weights manifest, most tensors uint8-quantised: value = q * scale + min); the architecture is written
  here from face-api's TypeScript (``FaceFeatureExtractor`` + ``denseBlock4`` + ``FaceProcessor``):
  four dense blocks (the first starts with a 3x3 stride-2 conv, the others with a stride-2 separable
  conv; each has three more separable convs whose inputs are the ReLU of the sum of all earlier outputs),
  a 7x7 average pool, a fully connected layer and a softmax. Input: 112x112 RGB, ``(x - mean_rgb) / 255``.
- :func:`convert_graph_model`: a TFJS *graph* model (``model.json`` topology + weights), for the op set of
  Human's ``emotion`` model: ``_FusedConv2D`` (batch norm already folded, fused BiasAdd [+ Relu]),
  ``Conv2D``, ``DepthwiseConv2dNative``, ``MaxPool``, ``AvgPool``, ``Mean`` over H and W, ``AddV2``,
  ``Relu``, ``Softmax``, ``Identity``. Any other op, data format or fusion raises
  :class:`UnsupportedOpError` instead of producing a wrong graph.

TensorFlow ``SAME`` padding puts the odd extra pixel at the end; explicit pads state it (as in keras_onnx).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .keras_onnx import INPUT_NAME, OPSET, OUTPUT_NAME, _same_pads

# face-api's FaceFeatureExtractor: normalize(batch, meanRgb).div(255), RGB order
FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)
FACEAPI_INPUT_SIZE = 112
FACEAPI_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


class UnsupportedOpError(ValueError):
    """The TFJS model uses an op, option or weight encoding this converter does not implement."""


# ------------------------------------------------------------------------------------------ weights
_DTYPES = {"float32": np.float32, "int32": np.int32}
_QUANT = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def decode_weights(manifest: Iterable[dict[str, Any]], data: bytes) -> dict[str, np.ndarray]:
    """Tensors of a TFJS weights manifest (one weights group) from its concatenated binary shards.

    Quantised entries are dequantised the way tfjs-core's ``decodeWeights`` does: uint8/uint16 as
    ``q * scale + min`` (float32), float16 by widening.
    """
    out: dict[str, np.ndarray] = {}
    offset = 0
    for entry in manifest:
        name, shape, dtype = entry["name"], tuple(int(d) for d in entry["shape"]), entry["dtype"]
        if dtype not in _DTYPES:
            raise UnsupportedOpError(f"weight {name}: dtype {dtype}")
        count = int(np.prod(shape, dtype=np.int64))
        quant = entry.get("quantization")
        stored = np.dtype(_QUANT[quant["dtype"]]) if quant else np.dtype(_DTYPES[dtype])
        if quant and quant["dtype"] not in _QUANT:
            raise UnsupportedOpError(f"weight {name}: quantisation {quant['dtype']}")
        size = count * stored.itemsize
        if offset + size > len(data):
            raise UnsupportedOpError(f"weight {name}: the weights data ends at {len(data)} bytes")
        raw = np.frombuffer(data, stored, count, offset).reshape(shape)
        offset += size
        if quant is None:
            out[name] = raw.copy()
        elif quant["dtype"] == "float16":
            out[name] = raw.astype(np.float32)
        else:
            value = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            out[name] = value.astype(np.float32)
    if offset != len(data):
        raise UnsupportedOpError(f"the weights data has {len(data) - offset} bytes more than its manifest lists")
    return out


def _manifest_entries(weights_manifest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(weights_manifest) != 1:
        raise UnsupportedOpError(f"{len(weights_manifest)} weight groups; one (one .bin) is supported")
    return list(weights_manifest[0]["weights"])


# ------------------------------------------------------------------------------------- graph builder
@dataclass(frozen=True)
class _Value:
    """A graph value and its NCHW shape without the batch dimension: (C, H, W) or (C,)."""

    name: str
    shape: tuple[int, ...]


class _OnnxGraph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def unique(self, base: str) -> str:
        base = base.replace(":", "_")
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.unique(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(
        self,
        base: str,
        x: _Value,
        kernel_hwio: np.ndarray,
        bias: np.ndarray | None,
        strides: tuple[int, int],
        padding: str,
        *,
        depthwise: bool = False,
    ) -> _Value:
        """A TF conv (kernel HWIO, or HWCM for depthwise) as an ONNX Conv with explicit pads."""
        kh, kw = int(kernel_hwio.shape[0]), int(kernel_hwio.shape[1])
        c, h, w = x.shape
        if depthwise:
            cin, mult = int(kernel_hwio.shape[2]), int(kernel_hwio.shape[3])
            if cin != c:
                raise UnsupportedOpError(f"{base}: depthwise kernel for {cin} channels, input has {c}")
            weight = kernel_hwio.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
            cout, group = cin * mult, cin
        else:
            if int(kernel_hwio.shape[2]) != c:
                raise UnsupportedOpError(f"{base}: kernel for {kernel_hwio.shape[2]} channels, input has {c}")
            weight = kernel_hwio.transpose(3, 2, 0, 1)
            cout, group = int(kernel_hwio.shape[3]), 1
        pads, out_hw = _pads(base, padding, (h, w), (kh, kw), strides)
        inputs = [x.name, self.const(f"{base}/W", weight.astype(np.float32))]
        if bias is not None:
            if bias.shape != (cout,):
                raise UnsupportedOpError(f"{base}: bias {bias.shape} for {cout} channels")
            inputs.append(self.const(f"{base}/B", bias.astype(np.float32)))
        name = self.node(
            "Conv",
            inputs,
            base,
            kernel_shape=[kh, kw],
            strides=list(strides),
            pads=pads,
            group=group,
            dilations=[1, 1],
        )
        return _Value(name, (cout, *out_hw))

    def pool(
        self, op: str, base: str, x: _Value, kernel: tuple[int, int], strides: tuple[int, int], padding: str
    ) -> _Value:
        pads, out_hw = _pads(base, padding, x.shape[1:], kernel, strides)  # type: ignore[arg-type]
        attrs: dict[str, Any] = {"kernel_shape": list(kernel), "strides": list(strides), "pads": pads}
        if op == "AveragePool":
            if any(pads):  # TF's SAME average pool divides by the in-image count
                raise UnsupportedOpError(f"{base}: padded average pooling")
            attrs["count_include_pad"] = 0
        return _Value(self.node(op, [x.name], base, **attrs), (x.shape[0], *out_hw))

    def model(self, graph_name: str, x: _Value, out: _Value, producer: str) -> onnx.ModelProto:
        # the last node writes the graph output under its stable name
        self.nodes[-1].output[0] = OUTPUT_NAME
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *x.shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *out.shape])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def _pads(
    base: str, padding: str, hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]
) -> tuple[list[int], tuple[int, int]]:
    if padding == "SAME":
        top, bottom, out_h = _same_pads(hw[0], kernel[0], strides[0], 1)
        left, right, out_w = _same_pads(hw[1], kernel[1], strides[1], 1)
        return [top, left, bottom, right], (out_h, out_w)
    if padding == "VALID":
        out = ((hw[0] - kernel[0]) // strides[0] + 1, (hw[1] - kernel[1]) // strides[1] + 1)
        if min(out) < 1:
            raise UnsupportedOpError(f"{base}: kernel {kernel} larger than its input {hw}")
        return [0, 0, 0, 0], out
    raise UnsupportedOpError(f"{base}: padding {padding}")


# --------------------------------------------------------------------------------------- face-api
def faceapi_architecture() -> list[tuple[str, str, int]]:
    """(weight prefix, kind, stride) of every conv of FaceExpressionNet's feature extractor, in order."""
    layers = []
    for block in range(4):
        first = "conv" if block == 0 else "separable"
        layers.append((f"dense{block}/conv0", first, 2))
        layers += [(f"dense{block}/conv{i}", "separable", 1) for i in (1, 2, 3)]
    return layers


def convert_faceapi_expression(manifest_json: bytes, weights_bin: bytes) -> onnx.ModelProto:
    """face-api's ``face_expression_model`` (weights manifest + .bin) → ONNX.

    Graph input ``[N, 3, 112, 112]``: RGB already normalised as face-api does, ``(x - mean_rgb) / 255``
    (:data:`FACEAPI_MEAN_RGB`). Output: softmax in face-api's order :data:`FACEAPI_LABELS`.
    """
    weights = decode_weights(_manifest_entries(json.loads(manifest_json)), weights_bin)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in weights:
            raise UnsupportedOpError(f"face-api weights have no {name}")
        used.add(name)
        return weights[name]

    g = _OnnxGraph()
    x = _Value(INPUT_NAME, (3, FACEAPI_INPUT_SIZE, FACEAPI_INPUT_SIZE))
    arch = faceapi_architecture()
    for block in range(4):
        outs: list[_Value] = []
        for prefix, kind, stride in arch[block * 4 : block * 4 + 4]:
            if not outs:
                inp = x
            elif len(outs) == 1:
                inp = outs[0]  # out1 is already ReLU'd
            else:  # relu(out1 + out2 [+ out3])
                total = g.node("Add", [outs[0].name, outs[1].name], f"{prefix}/in_sum")
                for extra in outs[2:]:
                    total = g.node("Add", [total, extra.name], f"{prefix}/in_sum")
                inp = _Value(g.node("Relu", [total], f"{prefix}/in"), outs[0].shape)
            if kind == "conv":
                y = g.conv(prefix, inp, take(f"{prefix}/filters"), take(f"{prefix}/bias"), (stride, stride), "SAME")
            else:
                dw = g.conv(
                    f"{prefix}/depthwise",
                    inp,
                    take(f"{prefix}/depthwise_filter"),
                    None,
                    (stride, stride),
                    "SAME",
                    depthwise=True,
                )
                y = g.conv(prefix, dw, take(f"{prefix}/pointwise_filter"), take(f"{prefix}/bias"), (1, 1), "VALID")
            if not outs:  # out1 = relu(conv0)
                y = _Value(g.node("Relu", [y.name], f"{prefix}/relu"), y.shape)
            outs.append(y)
        # block output: relu(out1 + out2 + out3 + out4)
        total = g.node("Add", [outs[0].name, outs[1].name], f"dense{block}/out_sum")
        for extra in outs[2:]:
            total = g.node("Add", [total, extra.name], f"dense{block}/out_sum")
        x = _Value(g.node("Relu", [total], f"dense{block}/out"), outs[0].shape)
    pooled = g.pool("AveragePool", "avg_pool", x, (7, 7), (2, 2), "VALID")
    if pooled.shape[1:] != (1, 1):
        raise UnsupportedOpError(f"pooled features {pooled.shape}, expected 1x1")
    flat = g.node("Flatten", [pooled.name], "flatten", axis=1)
    fc_w, fc_b = take("fc/weights"), take("fc/bias")
    if fc_w.shape != (pooled.shape[0], len(FACEAPI_LABELS)):
        raise UnsupportedOpError(f"fc weights {fc_w.shape}")
    logits = g.node("Gemm", [flat, g.const("fc/W", fc_w), g.const("fc/B", fc_b)], "fc")
    g.node("Softmax", [logits], "softmax", axis=-1)
    unused = sorted(set(weights) - used)
    if unused:
        raise UnsupportedOpError(f"face-api weights not used by the architecture: {unused}")
    return g.model(
        "faceapi_expression",
        _Value(INPUT_NAME, (3, 112, 112)),
        _Value(OUTPUT_NAME, (7,)),
        "analyzer.modelbuild (tfjs_onnx)",
    )


# ---------------------------------------------------------------------------------- TFJS graph model
def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    """A TF NodeDef attribute from TFJS JSON: strings are base64, ints are decimal strings."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "list" in value:
        lst = value["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode("utf-8") for s in lst["s"]]
        if "i" in lst:
            return [int(i) for i in lst["i"]]
        return []
    if "i" in value:
        return int(value["i"])
    if "b" in value:
        return bool(value["b"])
    if "f" in value:
        return float(value["f"])
    return value


def _nhwc_hw(node: dict[str, Any], key: str) -> tuple[int, int]:
    values = _attr(node, key, [1, 1, 1, 1])
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise UnsupportedOpError(f"{node['name']}: {key} {values}")
    return int(values[1]), int(values[2])


def convert_graph_model(model_json: bytes, weights_bin: bytes, graph_name: str) -> onnx.ModelProto:
    """A TFJS graph model (NHWC, one image input, one [N, K] output) → ONNX (NCHW input)."""
    spec = json.loads(model_json)
    if spec.get("format") != "graph-model":
        raise UnsupportedOpError(f"format {spec.get('format')!r}, expected 'graph-model'")
    weights = decode_weights(_manifest_entries(spec["weightsManifest"]), weights_bin)
    nodes: list[dict[str, Any]] = spec["modelTopology"]["node"]
    g = _OnnxGraph()
    values: dict[str, _Value] = {}
    input_value: _Value | None = None
    last: _Value | None = None

    def src(node: dict[str, Any], i: int) -> _Value:
        name = node["input"][i].split(":")[0]
        if name not in values:
            raise UnsupportedOpError(f"{node['name']}: input {name} is not computed before it")
        return values[name]

    def const(node: dict[str, Any], i: int) -> np.ndarray:
        name = node["input"][i].split(":")[0]
        if name not in weights:
            raise UnsupportedOpError(f"{node['name']}: input {name} is not a weight")
        return weights[name]

    for node in nodes:  # TFJS stores the nodes in a topological order
        op, name = node["op"], node["name"]
        data_format = _attr(node, "data_format", "NHWC")
        if data_format != "NHWC":
            raise UnsupportedOpError(f"{name}: data_format {data_format}")
        if op == "Const":
            if name not in weights:
                raise UnsupportedOpError(f"{name}: a Const without weights (inline values are not supported)")
            continue
        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in _attr(node, "shape")["shape"]["dim"]]
            if input_value is not None or len(dims) != 4 or min(dims[1:]) < 1:
                raise UnsupportedOpError(f"{name}: input shape {dims} (one fixed-size NHWC image input only)")
            input_value = values[name] = _Value(INPUT_NAME, (dims[3], dims[1], dims[2]))
            continue
        if op in ("_FusedConv2D", "Conv2D", "DepthwiseConv2dNative"):
            dilations = _attr(node, "dilations", [1, 1, 1, 1])
            if list(dilations) != [1, 1, 1, 1]:
                raise UnsupportedOpError(f"{name}: dilations {dilations}")
            relu = False
            bias = None
            if op == "_FusedConv2D":
                fused = _attr(node, "fused_ops", [])
                if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]) or _attr(node, "num_args", 1) != 1:
                    raise UnsupportedOpError(f"{name}: fused ops {fused}")
                bias, relu = const(node, 2), fused[-1] == "Relu"
            y = g.conv(
                name,
                src(node, 0),
                const(node, 1),
                bias,
                _nhwc_hw(node, "strides"),
                _attr(node, "padding"),
                depthwise=op == "DepthwiseConv2dNative",
            )
            if relu:
                y = _Value(g.node("Relu", [y.name], f"{name}/relu"), y.shape)
        elif op in ("MaxPool", "AvgPool"):
            y = g.pool(
                "MaxPool" if op == "MaxPool" else "AveragePool",
                name,
                src(node, 0),
                _nhwc_hw(node, "ksize"),
                _nhwc_hw(node, "strides"),
                _attr(node, "padding"),
            )
        elif op in ("AddV2", "Add"):
            a, b = src(node, 0), src(node, 1)
            if a.shape != b.shape:
                raise UnsupportedOpError(f"{name}: broadcasting add {a.shape} + {b.shape}")
            y = _Value(g.node("Add", [a.name, b.name], name), a.shape)
        elif op == "Relu":
            x = src(node, 0)
            y = _Value(g.node("Relu", [x.name], name), x.shape)
        elif op == "Mean":
            x = src(node, 0)
            axes = sorted(int(a) for a in np.asarray(const(node, 1)).ravel())
            if axes != [1, 2] or _attr(node, "keep_dims", False) or len(x.shape) != 3:
                raise UnsupportedOpError(f"{name}: Mean over axes {axes} (only global spatial mean supported)")
            pooled = g.node("GlobalAveragePool", [x.name], f"{name}/pool")
            y = _Value(g.node("Flatten", [pooled], name, axis=1), (x.shape[0],))
        elif op == "Softmax":
            x = src(node, 0)
            if len(x.shape) != 1:
                raise UnsupportedOpError(f"{name}: softmax over a {len(x.shape) + 1}-D tensor")
            y = _Value(g.node("Softmax", [x.name], name, axis=-1), x.shape)
        elif op == "Identity":
            y = src(node, 0)
        else:
            raise UnsupportedOpError(f"{name}: op {op}")
        values[name] = y
        last = y
    if input_value is None or last is None:
        raise UnsupportedOpError("the graph has no input or no computation")
    if len(last.shape) != 1:
        raise UnsupportedOpError(f"the graph ends in {last.shape}, expected [N, K]")
    if g.nodes[-1].output[0] != last.name:
        raise UnsupportedOpError("the graph's last value is not produced by its last node")
    return g.model(graph_name, input_value, last, "analyzer.modelbuild (tfjs_onnx)")
