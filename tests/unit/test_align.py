"""analyzer.align: rotated faces come out upright, at the right place and scale, from gray or yuv420p planes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analyzer.align import Face, align_faces, eye_angle, yuv_to_rgb
from scipy import ndimage
from skimage import data, transform


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


def _synthetic_face(angle_deg: float, centre: tuple[float, float] = (200.0, 150.0), eye_gap: float = 40.0):
    """A drawn face (two dark eyes, a dark mouth) turned by ``angle_deg`` (image coordinates, y down).

    Rendered point by point from the face's own coordinates, independently of the code under test.
    Returns the image, the face box and the two eyes (image-left first when upright).
    """
    h, w = 300, 400
    cx, cy = centre
    t = math.radians(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    # face coordinates: u along the eye line, v down the face
    u = (xs - cx) * math.cos(t) + (ys - cy) * math.sin(t)
    v = -(xs - cx) * math.sin(t) + (ys - cy) * math.cos(t)
    img = np.full((h, w), 150.0)
    img[(u / 60) ** 2 + (v / 75) ** 2 <= 1] = 200.0  # face oval
    for side in (-1, 1):
        img[(u - side * eye_gap / 2) ** 2 + (v + 15) ** 2 <= 6**2] = 20.0  # eyes
    img[(np.abs(u) <= 18) & (np.abs(v - 35) <= 4)] = 40.0  # mouth
    eyes = [
        (
            cx + s * eye_gap / 2 * math.cos(t) - (-15) * math.sin(t),
            cy + s * eye_gap / 2 * math.sin(t) + (-15) * math.cos(t),
        )
        for s in (-1, 1)
    ]
    half = 75.0
    box = (cx - half, cy - half, cx + half, cy + half)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), box, eyes


def _dark_blobs(crop: np.ndarray, threshold: int = 90) -> list[tuple[float, float, int]]:
    """(x, y, area) of the dark blobs in a crop, largest first."""
    labels, n = ndimage.label(crop < threshold)
    blobs = []
    for i in range(1, n + 1):
        ys, xs = np.nonzero(labels == i)
        blobs.append((float(xs.mean()), float(ys.mean()), len(xs)))
    return sorted(blobs, key=lambda b: -b[2])


@pytest.mark.parametrize("angle", [-40.0, -15.0, 0.0, 8.0, 25.0, 45.0, 150.0])
def test_rotated_synthetic_face_comes_out_upright(angle: float) -> None:
    img, box, eyes = _synthetic_face(angle)
    (crop,) = align_faces(img, [Face(box, eyes)], 64, 1.0)
    blobs = _dark_blobs(crop)
    mouth = blobs[0]  # the largest dark blob
    eye_blobs = sorted(blobs[1:3])  # left to right
    assert len(eye_blobs) == 2
    (lx, ly, _), (rx, ry, _) = eye_blobs
    assert abs(ly - ry) < 0.75, f"eyes not level: {ly:.2f} vs {ry:.2f}"
    # eyes 40 px apart in a 150 px crop side → 17.1 px at 64; symmetric about the centre; mouth below
    assert rx - lx == pytest.approx(40 * 64 / 150, abs=1.0)
    assert (lx + rx) / 2 == pytest.approx(31.5, abs=0.75)
    assert mouth[1] > ly + 10 and mouth[0] == pytest.approx(31.5, abs=1.0)


def test_without_keypoints_or_rotation_the_crop_stays_axis_aligned() -> None:
    img, box, eyes = _synthetic_face(30.0)
    plain = align_faces(img, [Face(box, None)], 64, 1.0)[0]
    no_rotation = align_faces(img, [Face(box, eyes)], 64, 1.0, rotate=False)[0]
    np.testing.assert_array_equal(plain, no_rotation)
    eyes_plain = sorted(_dark_blobs(plain)[1:3])
    assert eyes_plain[1][1] - eyes_plain[0][1] > 4  # still tilted by 30 degrees
    assert eye_angle(None) == 0.0
    assert eye_angle([(10.0, 10.0), (10.2, 10.1)]) == 0.0  # eyes too close: no angle
    assert eye_angle([(0.0, 0.0), (1.0, 1.0)]) == pytest.approx(math.pi / 4)


def test_unrotated_crop_matches_a_plain_resize_of_the_box() -> None:
    """No rotation, integer geometry: the crop is the box window resized (area averaging), nothing shifted."""
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.uniform(0, 255, (240, 320)), 3).astype(np.uint8)
    box = (100.0, 40.0, 228.0, 168.0)  # 128 px → 64: 2x2 blocks exactly
    (crop,) = align_faces(img, [Face(box)], 64, 1.0)
    expected = img[40:168, 100:228].astype(np.float64).reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.abs(crop - expected).max() <= 1.0


def test_rotated_real_photo_is_turned_back_upright() -> None:
    """The astronaut turned by 25 degrees, aligned with its (rotated) eye points, matches the upright crop."""
    from analyzer.vision import load_models

    rgb = data.astronaut()
    luma = _luma(rgb)
    detector, _ = load_models()
    (upright,) = detector.detect(luma)[:1]
    centre = ((upright.box[0] + upright.box[2]) / 2, (upright.box[1] + upright.box[3]) / 2)
    turned = _luma(np.clip(transform.rotate(rgb, 25.0, center=centre, mode="edge") * 255, 0, 255))
    found = detector.detect(turned)
    assert found, "BlazeFace finds the turned face"
    face = found[0]
    assert abs(math.degrees(eye_angle(face.keypoints)) + 25.0) < 8.0  # skimage turns anticlockwise
    # BlazeFace run again on the crops: the eyes are level in the aligned crop, not in the plain one
    aligned = align_faces(turned, [face], 192, 1.8)[0]
    unaligned = align_faces(turned, [face], 192, 1.8, rotate=False)[0]
    (again,) = detector.detect(aligned)[:1]
    (plain,) = detector.detect(unaligned)[:1]
    upright_angle = math.degrees(eye_angle(upright.keypoints))  # the photo's own tilt, ~3 degrees
    assert abs(math.degrees(eye_angle(again.keypoints))) < 5.0
    assert abs(math.degrees(eye_angle(plain.keypoints)) - (upright_angle - 25.0)) < 8.0
    # and the aligned face is centred and upright: its eyes are above its mouth (keypoint 3)
    (_, ey0), (_, ey1), _, (mx, my) = again.keypoints[:4]
    assert my > max(ey0, ey1) + 20 and abs(mx - 96) < 20


def _yuv420p(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited-range yuv420p of an RGB image (chroma: mean of each 2x2 block)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    q = lambda c: np.clip(np.rint(c), 0, 255).astype(np.uint8)  # noqa: E731
    return q(y), q(sub(u)), q(sub(v))


def test_rgb_crops_from_yuv420p_match_the_rgb_photo() -> None:
    rgb = data.astronaut()
    y, u, v = _yuv420p(rgb)
    face = Face((175.0, 71.0, 277.0, 173.0), [(203.0, 103.0), (247.0, 105.0)])
    (crop,) = align_faces(y, [face], 112, 1.1, chroma=(u, v))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # the same warp applied to each RGB channel of the original photo
    direct = np.stack([align_faces(rgb[..., c].copy(), [face], 112, 1.1)[0] for c in range(3)], axis=-1)
    diff = np.abs(crop.astype(int) - direct)
    assert diff.mean() < 4.0, diff.mean()
    # colour survives: the mean colour of the crop matches
    np.testing.assert_allclose(crop.reshape(-1, 3).mean(0), direct.reshape(-1, 3).mean(0), atol=3.0)


def test_yuv_to_rgb_reference_colours() -> None:
    y = np.array([16.0, 235.0, 81.0, 145.0, 41.0])
    u = np.array([128.0, 128.0, 90.0, 54.0, 240.0])
    v = np.array([128.0, 128.0, 240.0, 34.0, 110.0])
    expected = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    np.testing.assert_allclose(yuv_to_rgb(y, u, v), expected, atol=1)  # the codes above are rounded
    np.testing.assert_array_equal(
        yuv_to_rgb(np.array([0.0]), np.array([128.0]), np.array([128.0]), full_range=True), [[0, 0, 0]]
    )


def test_faces_at_the_border_repeat_the_edge_pixels() -> None:
    img = np.tile(np.arange(100, dtype=np.uint8)[None, :] + 50, (80, 1))  # brightness rises to the right
    (crop,) = align_faces(img, [Face((-40.0, 10.0, 20.0, 70.0))], 60, 1.0)  # 40 px of 60 left of the frame
    assert np.all(crop[:, :35] == 50)  # column 0 repeated
    assert crop[30, 59] > 60
    (corner,) = align_faces(img, [Face((90.0, 70.0, 130.0, 110.0), [(95.0, 80.0), (120.0, 95.0)])], 32, 1.5)
    assert corner.min() >= 50 and corner.max() <= 149


def test_bad_input_is_refused() -> None:
    img = np.zeros((60, 80), np.uint8)
    with pytest.raises(ValueError, match="luma"):
        align_faces(img.astype(np.float32), [], 64, 1.0)
    with pytest.raises(ValueError, match="chroma"):
        align_faces(img, [], 64, 1.0, chroma=(np.zeros((30, 40), np.uint8), np.zeros((60, 80), np.uint8)))
    with pytest.raises(ValueError, match="no size"):
        align_faces(img, [Face((10.0, 10.0, 10.0, 10.0))], 64, 1.0)
    assert align_faces(img, [], 64, 1.0).shape == (0, 64, 64)
    assert align_faces(img, [], 64, 1.0, chroma=(np.zeros((30, 40), np.uint8),) * 2).shape == (0, 64, 64, 3)
