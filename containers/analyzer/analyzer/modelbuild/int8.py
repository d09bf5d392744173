"""Static int8 quantisation with onnxruntime's quantiser, shared by the models the build ships in int8.

Every int8 model of the build is a QDQ model with per-channel int8 weights and uint8 activations: the format
onnxruntime's CPU provider runs fastest where the CPU has int8 dot products. What differs between models is the
calibration (inputs and method) and which nodes stay float; each model's module says why it chose them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

Calibration = Literal["minmax", "percentile"]
# How the manifest describes an int8 model of this module (its ``converter``).
QDQ_FORMAT = "static QDQ: int8 per-channel weights, uint8 activations"
CALIBRATION_NAMES: dict[Calibration, str] = {"minmax": "min/max", "percentile": "percentile"}


def quantize_static_qdq(
    model: onnx.ModelProto,
    input_name: str,
    batches: Iterable[np.ndarray],
    *,
    calibration: Calibration,
    float_ops: frozenset[str] = frozenset(),
) -> onnx.ModelProto:
    """``model`` as a static int8 QDQ model, its activation ranges calibrated on ``batches`` (network inputs fed
    to ``input_name``): ``minmax`` takes each activation's extremes, ``percentile`` its 0.001-99.999 percentiles
    (a few extreme calibration values then do not coarsen every step). Nodes whose op type is in ``float_ops``
    stay float.

    onnxruntime's quantiser works on files and its shape inference writes scratch files to the working
    directory: everything happens in a temporary directory, which is the working directory meanwhile."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._batches, None)
            return None if x is None else {input_name: x}

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[calibration]
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        os.chdir(tmp)
        try:
            source, prepared, output = (Path(tmp) / n for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
            onnx.save(model, source)
            # ONNX's own shape inference suffices; the symbolic one cannot follow dynamic upsampling (CenterFace)
            # and needs sympy, which the image's build stage does not have
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(output),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=[n.name for n in model.graph.node if n.op_type in float_ops],
            )
            return onnx.load(output)
        finally:
            os.chdir(previous)
