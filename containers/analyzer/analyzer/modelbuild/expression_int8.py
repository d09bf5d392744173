"""Static int8 quantisation of a 64x64 gray expression classifier (Human's ``emotion`` model).

The analyzer's default ensemble runs Human's ``emotion`` model on every tracked face of every analysed frame: in a
crowd it is the largest per-face cost after the re-locator (~0.6 ms per face on one x86 core in float). As a static
QDQ int8 model (onnxruntime.quantization: per-channel int8 weights, uint8 activations, percentile calibration) it runs
~2.5x faster where the CPU has int8 dot products (AVX-512 VNNI / AVX-VNNI), with the same predictions of the
default ensemble on the labelled photo faces (bench/quality.py; README "Expression classifiers").

Calibration inputs: the faces of face-api's demo pictures (the pictures the int8 CenterFace is calibrated on, not
part of the evaluation set), found by the float CenterFace, cropped upright on their eyes at the crop scales the
analyzer uses, and mirrored. The float model stays in the build as the reference the int8 one is checked against.

Calibration method: of min/max, min/max with the first or the last convolution left in float, and percentile
(99.999 %), percentile gave the int8 model closest to the float one on the evaluation set's 232 labelled faces (all
with the softmax quantised too; min/max, the analyzer's ensemble: 98.7 % same top class, percentile 99.1 %). Leaving
the head (pooling, softmax) in float then brought the default ensemble to the float ensemble's top class on 229 of
the 232 faces, mean |probability difference| 0.003, and the same accuracy (photos 84.2 %, 1080p scenes 76.3 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from . import centerface_onnx
from .int8 import Calibration, quantize_static_qdq
from .keras_onnx import INPUT_NAME

CALIBRATION_CROP_SCALES = (1.0, 1.25)  # human_emotion's own crop, and the ensemble's wider one
CALIBRATION_SIZE = 64
CALIBRATION_FACE_THRESHOLD = 0.35  # CenterFace score of a calibration face
CALIBRATION_MIN_FACE = 16.0  # px
# The int8 model's check on the calibration faces: top classes and probabilities close to the float model's.
CHECK_MIN_AGREEMENT = 0.85
CHECK_MAX_MEAN_DIFF = 0.05
FLOAT_HEAD_OPS = ("GlobalAveragePool", "Flatten", "Softmax")  # after the last convolution: cheap, left in float
INT8_CALIBRATION: Calibration = "percentile"  # why: the module's docstring


class ExpressionQuantizationError(RuntimeError):
    """No calibration faces, or the int8 model departs from the float one."""


def calibration_crops(centerface: onnx.ModelProto, pictures: Sequence[np.ndarray]) -> np.ndarray:
    """``uint8[N, 64, 64]`` upright crops of the faces the float CenterFace finds in grey ``pictures`` (each at its
    own size), at :data:`CALIBRATION_CROP_SCALES`, each also mirrored. Deterministic.

    A face is a local maximum of CenterFace's heatmap above :data:`CALIBRATION_FACE_THRESHOLD`; its box and eyes
    are read from the maps at that cell as CenterFace defines them (what ``analyzer.detectors.decode_centerface``
    does, without its NMS: the model build uses the analyzer's geometry only, not its runtime modules)."""
    from ..align import Face, align_faces

    session = centerface_onnx._session(centerface.SerializeToString())
    stride = 4  # CenterFace's output stride
    crops = []
    for picture in pictures:
        h, w = picture.shape
        x = np.zeros((1, 3, math.ceil(h / 32) * 32, math.ceil(w / 32) * 32), np.float32)
        x[0, :, :h, :w] = picture
        cells, _, _ = centerface_onnx._peaks(session, x, CALIBRATION_FACE_THRESHOLD)
        _, scale, offset, landmarks = (
            m[0] for m in session.run(list(centerface_onnx.OUTPUT_NAMES), {centerface_onnx.INPUT_NAME: x})
        )
        faces = []
        for cy, cx in cells:
            box_h, box_w = np.exp(scale[:, cy, cx].astype(np.float64)) * stride
            y0 = (cy + offset[0, cy, cx] + 0.5) * stride - box_h / 2
            x0 = (cx + offset[1, cy, cx] + 0.5) * stride - box_w / 2
            if box_h < CALIBRATION_MIN_FACE:
                continue
            points = landmarks[:, cy, cx].astype(np.float64).reshape(5, 2)  # (y, x) pairs relative to the box
            eyes = [(float(x0 + px * box_w), float(y0 + py * box_h)) for py, px in points[:2]]
            faces.append(Face((float(x0), float(y0), float(x0 + box_w), float(y0 + box_h)), eyes))
        for crop_scale in CALIBRATION_CROP_SCALES:
            aligned = align_faces(picture, faces, CALIBRATION_SIZE, crop_scale)
            crops.extend([aligned, aligned[:, :, ::-1]])
    out = np.ascontiguousarray(np.concatenate(crops)) if crops else np.zeros((0, 64, 64), np.uint8)
    if len(out) == 0:
        raise ExpressionQuantizationError("no face on the calibration pictures")
    return out


def classifier_inputs(crops: np.ndarray) -> np.ndarray:
    """FER2013 preprocessing, as the analyzer feeds the model: ``(x / 255 - 0.5) * 2``, ``float32[N, 1, 64, 64]``."""
    x = crops.astype(np.float32)[:, None]
    x *= np.float32(2.0 / 255.0)
    x -= np.float32(1.0)
    return x


def quantize_classifier(model: onnx.ModelProto, inputs: np.ndarray, name: str) -> onnx.ModelProto:
    """``model`` as a static int8 QDQ model calibrated on ``inputs`` ``float32[N, 1, 64, 64]`` (percentile
    calibration, see the module's docstring); the head after the last convolution stays float: probabilities that
    sum to 1, not steps of 1/255."""
    batches = (inputs[i : i + 16] for i in range(0, len(inputs), 16))
    quantized = quantize_static_qdq(
        model, INPUT_NAME, batches, calibration=INT8_CALIBRATION, float_ops=frozenset(FLOAT_HEAD_OPS)
    )
    quantized.graph.name = name
    quantized.producer_name = "analyzer.modelbuild (expression_int8, onnxruntime.quantization)"
    return quantized


def check_quantized(
    float_model: onnx.ModelProto, int8_model: onnx.ModelProto, inputs: np.ndarray
) -> tuple[float, float]:
    """The int8 model agrees with the float one on ``inputs``: the same top class for at least
    :data:`CHECK_MIN_AGREEMENT` of them and a mean absolute probability difference of at most
    :data:`CHECK_MAX_MEAN_DIFF`. Returns ``(agreement, mean difference)``."""
    onnx.checker.check_model(int8_model)
    reference = centerface_onnx._session(float_model.SerializeToString()).run(None, {INPUT_NAME: inputs})[0]
    quantized = centerface_onnx._session(int8_model.SerializeToString()).run(None, {INPUT_NAME: inputs})[0]
    if reference.shape != quantized.shape or not np.all(np.isfinite(quantized)):
        raise ExpressionQuantizationError(f"int8 output {quantized.shape} for float {reference.shape}")
    agreement = float(np.mean(reference.argmax(axis=1) == quantized.argmax(axis=1)))
    mean_diff = float(np.abs(reference - quantized).mean())
    if agreement < CHECK_MIN_AGREEMENT or mean_diff > CHECK_MAX_MEAN_DIFF:
        raise ExpressionQuantizationError(
            f"the int8 model departs from the float one on {len(inputs)} calibration faces: top class agrees on "
            f"{agreement:.1%} (>= {CHECK_MIN_AGREEMENT:.0%}), mean |probability difference| {mean_diff:.3f} "
            f"(<= {CHECK_MAX_MEAN_DIFF})"
        )
    return agreement, mean_diff
