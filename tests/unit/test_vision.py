"""The vision stage with the real models: a real photo, frame geometry, crops, and the API contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from analyzer import model_files
from analyzer.modelbuild import BuildResult, build
from analyzer.vision import Detection, EmotionClassifier, FaceDetector, crop_faces, load_models, resize_luma
from emotion_shared.emotions import EMOTIONS
from skimage import data, transform

# Where the astronaut's face is in the 512x512 photo (x0, y0, x1, y1), by eye and by the detector.
FACE = (175.0, 71.0, 277.0, 173.0)


@pytest.fixture(scope="session")
def built() -> BuildResult:
    return build()


@pytest.fixture(scope="module")
def detector(built: BuildResult) -> FaceDetector:
    return FaceDetector(built.files.face_detector)


@pytest.fixture(scope="module")
def classifier(built: BuildResult) -> EmotionClassifier:
    return EmotionClassifier(built.files.emotion_classifier)


def astronaut_luma() -> np.ndarray:
    rgb = data.astronaut().astype(np.float64)
    return np.clip(np.rint(rgb @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


def scaled(img: np.ndarray, side: int) -> np.ndarray:
    out = transform.resize(img, (side, side), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_emotion_names_follow_fers_label_order(built: BuildResult) -> None:
    assert EMOTIONS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    labels = built.files.manifest["models"]["emotion_classifier"]["labels"]
    assert [lab[:3] for lab in labels] == ["ang", "dis", "fea", "hap", "sad", "sur", "neu"]


def test_astronaut_one_happy_face_at_the_right_place(detector: FaceDetector, classifier: EmotionClassifier) -> None:
    luma = astronaut_luma()
    faces = detector.detect(luma)
    assert len(faces) == 1
    (face,) = faces
    cx, cy = centre(face.box)
    assert abs(cx - 226) < 12 and abs(cy - 122) < 12
    assert 85 < face.box[2] - face.box[0] < 125 and 85 < face.box[3] - face.box[1] < 125
    assert face.score > 0.8
    assert face.keypoints is not None and len(face.keypoints) == 6
    (r_eye, l_eye, nose, mouth, _, _) = face.keypoints
    assert r_eye[0] < nose[0] < l_eye[0] and max(r_eye[1], l_eye[1]) < nose[1] < mouth[1]  # a face, upright

    probs = classifier.classify(crop_faces(luma, [face.box], scale=1.25))
    assert probs.shape == (1, 7) and probs.dtype == np.float32
    assert EMOTIONS[int(probs[0].argmax())] == "happiness"
    assert probs[0, EMOTIONS.index("happiness")] > 0.9
    assert abs(float(probs.sum()) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("height", "width", "side", "left", "top"),
    [
        (1080, 1920, 1080, 700, 0),  # 1080p landscape: bars above and below in the detector input
        (720, 1280, 720, 100, 0),  # 720p
        (1280, 720, 720, 0, 400),  # portrait: bars left and right
        (1000, 1000, 900, 60, 40),  # square, not a multiple of the block size
    ],
)
def test_boxes_map_back_to_frame_pixels(
    detector: FaceDetector, height: int, width: int, side: int, left: int, top: int
) -> None:
    frame = np.full((height, width), 70, np.uint8)
    frame[top : top + side, left : left + side] = scaled(astronaut_luma(), side)
    faces = detector.detect(frame)
    assert len(faces) == 1
    k = side / 512
    expected = (left + FACE[0] * k, top + FACE[1] * k, left + FACE[2] * k, top + FACE[3] * k)
    got_cx, got_cy = centre(faces[0].box)
    exp_cx, exp_cy = centre(expected)
    size = expected[2] - expected[0]
    assert abs(got_cx - exp_cx) < 0.1 * size and abs(got_cy - exp_cy) < 0.1 * size
    assert 0.8 < (faces[0].box[2] - faces[0].box[0]) / size < 1.25


def test_no_face_in_empty_or_faceless_frames(detector: FaceDetector) -> None:
    rng = np.random.default_rng(1)
    assert detector.detect(np.zeros((720, 1280), np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (1080, 1920), dtype=np.uint8)) == []
    coffee = np.clip(np.rint(data.coffee().astype(np.float64) @ [0.299, 0.587, 0.114]), 0, 255).astype(np.uint8)
    assert detector.detect(coffee) == []


def test_strided_luma_plane_gives_the_same_result(detector: FaceDetector) -> None:
    """PyAV's Y plane has a line size > width: a non-contiguous view must work as is."""
    luma = astronaut_luma()
    padded = np.zeros((512, 576), np.uint8)
    padded[:, :512] = luma
    view = padded[:, :512]
    assert not view.flags.c_contiguous
    assert detector.detect(view) == detector.detect(luma)


def test_two_faces_are_two_detections(detector: FaceDetector) -> None:
    face = scaled(astronaut_luma(), 600)
    frame = np.full((720, 1280), 60, np.uint8)
    frame[60:660, 20:620] = face
    frame[60:660, 660:1260] = face
    faces = detector.detect(frame)
    assert len(faces) == 2
    xs = sorted(centre(f.box)[0] for f in faces)
    assert xs[0] < 640 < xs[1]
    assert detector.detect(frame) == faces  # deterministic
    assert faces[0].score >= faces[1].score  # best first


def test_detector_options(built: BuildResult) -> None:
    luma = astronaut_luma()
    assert FaceDetector(built.files.face_detector, min_face_size=200).detect(luma) == []
    assert len(FaceDetector(built.files.face_detector, min_face_size=50).detect(luma)) == 1
    assert FaceDetector(built.files.face_detector, score_threshold=0.99).detect(luma) == []
    with pytest.raises(ValueError, match="score_threshold"):
        FaceDetector(built.files.face_detector, score_threshold=1.5)
    with pytest.raises(ValueError, match="threads"):
        FaceDetector(built.files.face_detector, threads=0)


def test_detect_rejects_non_luma_input(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10), np.float32))


def test_detection_is_a_frozen_value() -> None:
    d = Detection(box=(1.0, 2.0, 3.0, 4.0), score=0.9)
    assert d.keypoints is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.score = 0.1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------- crops
def test_crop_is_square_enlarged_and_centred() -> None:
    # pixel value encodes the column: the crop's columns must span the expected range
    luma = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    (crop,) = crop_faces(luma, [(100.0, 50.0, 164.0, 90.0)], scale=1.25, size=64)  # 64 wide, 40 high
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    # side = 64 * 1.25 = 80, centred on x = 132: columns 92..171, each crop pixel ~1.25 columns
    assert abs(int(crop[32, 0]) - 92) <= 1 and abs(int(crop[32, -1]) - 171) <= 1
    assert abs(int(crop[0, 32]) - 132) <= 1  # every row is the same gradient
    assert np.all(np.diff(crop[10].astype(int)) >= 0)


def test_crop_downscale_is_an_area_average() -> None:
    rng = np.random.default_rng(2)
    luma = rng.integers(0, 256, (400, 400), dtype=np.uint8)
    # box side 204.8 * 1.25 = 256 -> an exact 4x4 block average
    (crop,) = crop_faces(luma, [(97.6, 97.6, 302.4, 302.4)], scale=1.25, size=64)
    expected = luma[72:328, 72:328].reshape(64, 4, 64, 4).mean(axis=(1, 3))
    assert np.abs(crop.astype(float) - expected).max() <= 0.5 + 1e-9


def test_crop_at_the_frame_edge_repeats_the_border() -> None:
    luma = np.zeros((100, 100), np.uint8)
    luma[:, :50] = 200
    # a 120 px square from (-30, -30): columns -30..89, rows -30..89
    (crop,) = crop_faces(luma, [(-30.0, -30.0, 90.0, 90.0)], scale=1.0, size=64)
    assert crop.shape == (64, 64)
    assert np.all(crop[:, :20] == 200)  # columns -30..7: outside repeats column 0 (200), then 200 inside
    assert np.all(crop[:, 45:] == 0)  # columns >= 54: the black half
    assert np.all(crop[:16] == crop[20])  # rows above the frame repeat row 0


def test_crop_upscales_small_faces_and_handles_no_boxes() -> None:
    luma = np.full((50, 50), 123, np.uint8)
    (crop,) = crop_faces(luma, [(20.0, 20.0, 30.0, 30.0)])
    assert np.all(crop == 123)
    assert crop_faces(luma, []).shape == (0, 64, 64)


def test_resize_luma_keeps_levels_and_reports_the_used_extent() -> None:
    flat = np.full((1080, 1920), 77, np.uint8)
    small, used = resize_luma(flat, 108, 192)
    assert small.shape == (108, 192) and np.allclose(small, 77)
    assert used == (1080.0, 1920.0)
    _, used = resize_luma(np.zeros((725, 1283), np.uint8), 108, 192)
    assert used == (720.0, 1278.0)  # 6x6 blocks; the last partial rows/columns are left out


# ------------------------------------------------------------------------------------ classifier
def test_classifier_batches_like_single_calls(classifier: EmotionClassifier) -> None:
    rng = np.random.default_rng(4)
    luma = astronaut_luma()
    crops = np.concatenate(
        [crop_faces(luma, [FACE]), rng.integers(0, 256, (2, 64, 64), dtype=np.uint8), np.zeros((1, 64, 64), np.uint8)]
    )
    batch = classifier.classify(crops)
    singles = np.concatenate([classifier.classify(c[None]) for c in crops])
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    assert np.allclose(batch.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.classify(np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)
    with pytest.raises(ValueError, match="64, 64"):
        classifier.classify(np.zeros((2, 48, 48), np.uint8))


def test_load_models_from_the_verified_default_dir(built: BuildResult) -> None:
    detector, classifier = load_models(threads=1)
    assert isinstance(detector, FaceDetector) and isinstance(classifier, EmotionClassifier)
    assert detector.input_size == 192
    assert model_files.load_manifest().directory == built.out_dir
