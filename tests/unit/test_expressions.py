"""analyzer.expressions: label order mapped by name, the loader, ensembles, crop adaptation, evaluation."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from analyzer import expressions, model_files
from analyzer.align import Face, align_faces
from analyzer.expressions import (
    EMOTIONS,
    EnsembleClassifier,
    OnnxExpressionClassifier,
    adapt_crops,
    domain_permutation,
    evaluate,
    evaluate_predictions,
    load_classifier,
)
from analyzer.modelbuild import BuildResult, build
from skimage import data

ASTRONAUT_FACE = (175.0, 71.0, 277.0, 173.0)


@pytest.fixture(scope="session")
def built() -> BuildResult:
    return build()


def _luma() -> np.ndarray:
    return np.clip(np.rint(data.astronaut() @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


def test_domain_order_is_the_shared_one() -> None:
    from emotion_shared import emotions

    assert expressions.EMOTIONS is emotions.EMOTIONS
    assert EMOTIONS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def test_label_orders_are_mapped_by_name() -> None:
    faceapi = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    # written out by hand: where each domain emotion sits in face-api's output
    assert domain_permutation(faceapi).tolist() == [3, 5, 4, 1, 2, 6, 0]
    assert domain_permutation(expressions.FER_LABELS).tolist() == [0, 1, 2, 3, 4, 5, 6]
    probs = np.eye(7, dtype=np.float32)  # one-hot per face-api class
    mapped = probs[:, domain_permutation(faceapi)]
    for i, label in enumerate(faceapi):
        expected = {"angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear"}.get(label, label)
        expected = {"disgusted": "disgust", "surprised": "surprise"}.get(expected, expected)
        assert EMOTIONS[int(mapped[i].argmax())] == expected


@pytest.mark.parametrize(
    "labels",
    [
        ("angry", "disgust", "fear", "happy", "sad", "surprise"),  # one missing
        ("angry", "angry", "fear", "happy", "sad", "surprise", "neutral"),  # duplicate
        ("angry", "disgust", "fear", "happy", "sad", "surprise", "contempt"),  # unknown
    ],
)
def test_bad_label_lists_are_refused(labels: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="label"):
        domain_permutation(labels)


def test_faceapi_output_is_reordered_to_the_domain(built: BuildResult) -> None:
    """The raw ONNX output on a smiling face peaks at face-api's index 1 ('happy'); classify() puts it at
    EMOTIONS' index 3 ('happiness'). A model taken in its own order would say 'disgust' (index 1)."""
    classifier = load_classifier("faceapi")
    crops = align_faces(_luma(), [Face(ASTRONAUT_FACE)], classifier.size, classifier.crop_scale)
    rgb = np.repeat(crops[..., None], 3, axis=-1).astype(np.float32)
    x = ((rgb - np.array([122.782, 117.001, 104.298], np.float32)) / 255.0).transpose(0, 3, 1, 2)
    sess = ort.InferenceSession(str(built.files.path("faceapi_expression")), providers=["CPUExecutionProvider"])
    (raw,) = sess.run(None, {"input": np.ascontiguousarray(x)})
    assert int(raw[0].argmax()) == 1
    probs = classifier.classify(crops)
    assert int(probs[0].argmax()) == EMOTIONS.index("happiness")
    np.testing.assert_allclose(probs[0], raw[0][[3, 5, 4, 1, 2, 6, 0]], atol=1e-6)


def test_every_model_reads_its_labels_from_the_manifest(built: BuildResult) -> None:
    entries = built.files.manifest["models"]
    assert entries["faceapi_expression"]["labels"] == [
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgusted",
        "surprised",
    ]
    assert entries["human_emotion"]["labels"] == list(expressions.FER_LABELS)
    for name in expressions.MODEL_SPECS:
        classifier = load_classifier(name)
        assert isinstance(classifier, OnnxExpressionClassifier)
        assert list(classifier.labels) == entries[expressions.MODEL_SPECS[name].key]["labels"]


def test_classifiers_state_their_crop_and_refuse_wrong_ones(built: BuildResult) -> None:
    gray = load_classifier("human_emotion")
    assert (gray.size, gray.colour) == (64, "gray")
    assert gray.classify(np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)
    with pytest.raises(ValueError, match="uint8"):
        gray.classify(np.zeros((1, 112, 112), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        gray.classify(np.zeros((1, 64, 64), np.float32))
    rgb = load_classifier("faceapi")
    assert (rgb.size, rgb.colour) == (112, "rgb")
    # gray crops are replicated to RGB: same result as an explicit gray RGB crop
    crop = align_faces(_luma(), [Face(ASTRONAUT_FACE)], 112, rgb.crop_scale)
    np.testing.assert_allclose(rgb.classify(crop), rgb.classify(np.repeat(crop[..., None], 3, -1)), atol=1e-6)


def test_load_classifier_names_and_errors(built: BuildResult) -> None:
    assert set(expressions.CLASSIFIER_NAMES) >= {"mini_xception", "human_emotion", "faceapi", "ensemble"}
    ensemble = load_classifier("ensemble")
    assert isinstance(ensemble, EnsembleClassifier)
    assert [m.name for m in ensemble.members] == list(expressions.DEFAULT_ENSEMBLE)
    pair = load_classifier("ensemble:mini_xception+human_emotion", weights=[3, 1])
    assert isinstance(pair, EnsembleClassifier)
    assert (pair.size, pair.colour) == (64, "gray")
    np.testing.assert_allclose(pair.weights, [0.75, 0.25])
    with pytest.raises(ValueError, match="unknown classifier"):
        load_classifier("vgg")
    with pytest.raises(ValueError, match="ensemble members"):
        load_classifier("ensemble:mini_xception+mini_xception")
    with pytest.raises(ValueError, match="ensembles only"):
        load_classifier("faceapi", weights=[1.0])


def test_missing_model_in_an_old_manifest_is_explained(built: BuildResult, tmp_path: object) -> None:
    import json
    import shutil
    from pathlib import Path

    copy = Path(str(tmp_path)) / "models"
    shutil.copytree(built.out_dir, copy)
    manifest = json.loads((copy / model_files.MANIFEST_FILE).read_text())
    del manifest["models"]["human_emotion"]
    (copy / model_files.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(model_files.ModelsError, match="human_emotion"):
        load_classifier("human_emotion", copy)


def test_ensemble_is_the_weighted_mean_of_its_members(built: BuildResult) -> None:
    members = [load_classifier(n) for n in ("mini_xception", "human_emotion", "faceapi")]
    ensemble = EnsembleClassifier(members, weights=[1.0, 2.0, 1.0])
    assert (ensemble.size, ensemble.colour, ensemble.crop_scale) == (112, "rgb", 1.25)
    luma = _luma()
    boxes = [Face(ASTRONAUT_FACE), Face((60.0, 60.0, 160.0, 160.0))]  # a face and a patch of background
    crops = align_faces(luma, boxes, ensemble.size, ensemble.crop_scale)
    probs = ensemble.classify(crops)
    expected = sum(
        w * m.classify(adapt_crops(crops, ensemble.crop_scale, m)) for w, m in zip([0.25, 0.5, 0.25], members)
    )
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert EMOTIONS[int(probs[0].argmax())] == "happiness"
    with pytest.raises(ValueError, match="weights"):
        EnsembleClassifier(members, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        EnsembleClassifier([])


def test_adapt_crops_matches_a_direct_crop() -> None:
    """A 112 px crop at scale 1.25, adapted to 64 px at scale 1.1, ≈ the 64 px crop made directly at 1.1."""

    class Target:
        name, size, colour, crop_scale = "t", 64, "gray", 1.1

        def classify(self, crops: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol only
            raise NotImplementedError

    luma = _luma()
    face = [Face(ASTRONAUT_FACE)]
    wide = align_faces(luma, face, 112, 1.25)
    adapted = adapt_crops(wide, 1.25, Target())
    direct = align_faces(luma, face, 64, 1.1)
    assert adapted.shape == direct.shape == (1, 64, 64)
    assert np.abs(adapted.astype(int) - direct).mean() < 4.0
    with pytest.raises(ValueError, match="crop scale"):
        adapt_crops(align_faces(luma, face, 112, 1.0), 1.0, Target())


def test_evaluate_counts_the_confusion_matrix() -> None:
    labels = ["happiness", "happiness", "anger", "neutral", "surprise"]
    predicted = ["happiness", "neutral", "anger", "neutral", "fear"]
    probs = np.zeros((5, 7), np.float32)
    for i, p in enumerate(predicted):
        probs[i, EMOTIONS.index(p)] = 1.0
    result = evaluate_predictions(probs, labels)
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.count == 5
    assert result.confusion.sum() == 5
    assert result.confusion[EMOTIONS.index("happiness"), EMOTIONS.index("neutral")] == 1
    assert result.confusion[EMOTIONS.index("surprise"), EMOTIONS.index("fear")] == 1
    assert result.per_class_recall["happiness"] == pytest.approx(0.5)
    assert result.per_class_recall["anger"] == 1.0
    assert np.isnan(result.per_class_recall["disgust"])
    assert "accuracy 60.0% on 5 faces" in result.table()
    with pytest.raises(ValueError):
        evaluate_predictions(probs[:4], labels)


def test_evaluate_runs_a_real_classifier(built: BuildResult) -> None:
    classifier = load_classifier("mini_xception")
    crops = align_faces(_luma(), [Face(ASTRONAUT_FACE)], 64, classifier.crop_scale)
    result = evaluate(classifier, crops, ["happiness"])
    assert result.accuracy == 1.0


def test_vision_classifier_is_the_mini_xception_one(built: BuildResult) -> None:
    from analyzer.vision import EmotionClassifier, load_models

    _, classifier = load_models()
    assert isinstance(classifier, EmotionClassifier)
    crops = align_faces(_luma(), [Face(ASTRONAUT_FACE)], 64, 1.25)
    np.testing.assert_array_equal(classifier.classify(crops), load_classifier("mini_xception").classify(crops))


def test_large_batches_are_classified_in_chunks_with_the_same_result(built: BuildResult) -> None:
    classifier = load_classifier("human_emotion")
    rng = np.random.default_rng(4)
    crops = rng.integers(0, 256, (2 * expressions.MAX_BATCH + 1, 64, 64), dtype=np.uint8)
    together = classifier.classify(crops)
    one_by_one = np.concatenate([classifier.classify(c[None]) for c in crops])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_classify_faces_crops_as_the_classifier_wants(built: BuildResult) -> None:
    from analyzer.vision import load_models

    luma = _luma()
    detector, _ = load_models()
    faces = detector.detect(luma)
    for name in ("ensemble", "faceapi", expressions.DEFAULT_CLASSIFIER):
        classifier = load_classifier(name)
        probs = expressions.classify_faces(classifier, luma, faces)
        crops = align_faces(luma, faces, classifier.size, classifier.crop_scale)
        np.testing.assert_array_equal(probs, classifier.classify(crops))
        assert EMOTIONS[int(probs[0].argmax())] == "happiness"
    assert expressions.classify_faces(classifier, luma, []).shape == (0, 7)


def test_human_emotion_runs_its_int8_build_close_to_the_float_model(built: BuildResult) -> None:
    """``human_emotion`` is the int8 model (analyzer.modelbuild.expression_int8); on real and synthetic crops it
    gives the float model's top class and probabilities within a few hundredths, summing to 1 (float head)."""
    int8 = load_classifier("human_emotion")
    assert isinstance(int8, OnnxExpressionClassifier)
    files = model_files.load_manifest()
    assert expressions.MODEL_SPECS["human_emotion"].key == "human_emotion_int8"
    reference = OnnxExpressionClassifier(
        "human_emotion_float", files.path("human_emotion"), expressions.FER_LABELS,
        size=64, colour="gray", crop_scale=1.0,
    )
    luma = _luma()
    faces = [Face(ASTRONAUT_FACE), Face((165.0, 61.0, 287.0, 183.0)), Face((185.0, 81.0, 267.0, 163.0))]
    crops = np.concatenate([align_faces(luma, faces, 64, 1.0), align_faces(luma, faces, 64, 1.0)[:, :, ::-1]])
    got, want = int8.classify(crops), reference.classify(crops)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    assert EMOTIONS[int(got[0].argmax())] == "happiness"
    assert float(np.abs(got - want).max()) < 0.1
