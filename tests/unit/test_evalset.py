"""The labelled evaluation set (emotionctl.media.evalset): manifest, build, scenes, ground truth, luma, clips.

The set is built from its pinned packages by `make setup` (`emotionctl media evalset`); the `evalset` fixture
calls the same idempotent build, a no-op when it is cached.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from emotionctl.media.evalset import (
    EXPRESSIONS,
    LABELS,
    POSES,
    EvalSet,
    LabelledFace,
    ManifestError,
    Scene,
    build_evalset,
    compose,
    crop_box,
    load_manifest,
    rgb_to_luma,
)
from emotionctl.media.evalset.manifest import MANIFEST_PATH, parse_manifest


@pytest.fixture(scope="module")
def evalset() -> EvalSet:
    return build_evalset()


def _raw() -> dict:
    return json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------- manifest
def test_manifest_is_well_formed_and_every_file_is_pinned() -> None:
    manifest = load_manifest()
    assert manifest.photos and manifest.face_free
    for archive in manifest.archives.values():
        assert len(archive.sha256) == 64 and archive.version and archive.registry in ("pypi", "npm")
    for entry in manifest.entries():
        provenance = entry.provenance
        assert provenance.archive.id in manifest.archives
        assert len(provenance.member_sha256) == 64
        assert provenance.licence and provenance.licence_basis
        assert provenance.licence_clear == (provenance.licence != "unclear")
        for face in entry.faces:
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= entry.width and 0 <= y0 < y1 <= entry.height, entry.id
            assert face.pose in POSES and face.expression in LABELS
    assert set(LABELS) == {*EXPRESSIONS, "unclear"}


def test_manifest_rejects_a_box_outside_its_image() -> None:
    raw = _raw()
    photo = raw["photos"][0]
    photo["faces"][0]["box"] = [0, 0, photo["width"] + 1, 10]
    with pytest.raises(ManifestError, match="not inside"):
        parse_manifest(raw)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("expression", "joy", "expression must be one of"), ("pose", "upside-down", "pose must be one of")],
)
def test_manifest_rejects_unknown_labels(field: str, value: str, message: str) -> None:
    raw = _raw()
    raw["photos"][0]["faces"][0][field] = value
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw)


def test_manifest_rejects_an_unpinned_file_and_duplicate_ids() -> None:
    raw = _raw()
    raw["photos"][0]["member_sha256"] = "latest"
    with pytest.raises(ManifestError, match="sha256"):
        parse_manifest(raw)
    raw = _raw()
    raw["photos"].append(copy.deepcopy(raw["photos"][0]))
    with pytest.raises(ManifestError, match="used twice"):
        parse_manifest(raw)


# ------------------------------------------------------------------------------------------------- build
def test_build_gives_every_picture_at_its_manifest_size(evalset: EvalSet) -> None:
    for picture in evalset.photos + evalset.face_free_pictures:
        image = picture.image
        assert image.dtype == np.uint8 and image.shape == (picture.height, picture.width, 3), picture.id
    again = build_evalset(evalset.cache_dir)  # idempotent: the cached set, same pictures
    assert [p.id for p in again.photos] == [p.id for p in evalset.photos]


def test_expression_faces_cover_every_labelled_class(evalset: EvalSet) -> None:
    samples = evalset.expression_faces()
    assert samples and all(s.face.expression in EXPRESSIONS for s in samples)
    assert {s.face.expression for s in samples} == set(EXPRESSIONS)  # at least one of each class
    clear = evalset.expression_faces(licence_clear_only=True)
    assert clear and all(s.photo.provenance.licence_clear for s in clear)
    summary = evalset.summary()
    assert sum(summary.expressions.values()) == summary.photo_faces == len(evalset.faces())


# ------------------------------------------------------------------------------------------------ scenes
def test_scenes_cover_every_size_bucket_and_crowds(evalset: EvalSet) -> None:
    scenes = evalset.scenes(1080)
    kinds = {s.kind for s in scenes}
    assert kinds == {"photo", "single", "group5", "crowd30", "crowd50"}
    photo_buckets = {s.bucket for s in scenes if s.kind == "photo"}
    assert photo_buckets == {name for name, _, _ in compose.BUCKETS}  # every real photo at every size
    buckets = evalset.summary().scene_face_buckets_1080
    assert all(buckets[name] > 0 for name, _, _ in compose.BUCKETS)
    assert len(evalset.face_free(720)) >= 100


def test_every_scene_renders_with_its_faces_inside_the_frame(evalset: EvalSet) -> None:
    """All 720p scenes and face-free frames (1080p is the same layouts, exercised by the tests below)."""
    for scene in evalset.scenes(720) + evalset.face_free(720):
        rgb, faces = scene.render()
        assert rgb.shape == (720, 1280, 3), scene.id
        expected = len(scene.layout.placements) + (len(scene.layout.photo.faces) if scene.layout.photo else 0)
        assert len(faces) == expected, scene.id
        for face in faces:
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720, (scene.id, face)
        if scene.kind == "face-free":
            assert not faces


def test_scene_rendering_is_deterministic(evalset: EvalSet) -> None:
    other = build_evalset(evalset.cache_dir)  # a fresh instance: layouts drawn again from the seed
    for height in (720, 1080):
        first = next(s for s in evalset.scenes(height) if s.kind == "crowd30")
        second = next(s for s in other.scenes(height) if s.id == first.id)
        (a, faces_a), (b, faces_b) = first.render(), second.render()
        assert a.shape == (height, height * 16 // 9, 3)
        assert np.array_equal(a, b) and faces_a == faces_b
    frame_a = evalset.face_free(720)[5].render()[0]
    frame_b = other.face_free(720)[5].render()[0]
    assert np.array_equal(frame_a, frame_b)


def test_720p_scenes_are_the_1080p_layouts_scaled_by_two_thirds(evalset: EvalSet) -> None:
    big = [s for s in evalset.scenes(1080) if s.kind == "group5"][3]
    small = next(s for s in evalset.scenes(720) if s.id == big.id)
    faces_big, faces_small = big.render()[1], small.render()[1]
    assert len(faces_big) == len(faces_small) == 5
    for fb, fs in zip(faces_big, faces_small, strict=True):
        assert np.allclose(np.array(fs.box) * 1.5, np.array(fb.box), atol=2.5)
        assert (fs.photo_id, fs.face_index, fs.expression) == (fb.photo_id, fb.face_index, fb.expression)


def test_scene_faces_land_where_they_were_pasted(evalset: EvalSet) -> None:
    """The ground-truth box of a real scene shows the labelled face: the frame's crop at the box matches the
    source photo's crop at the labelled box, resized (correlation of the luma)."""
    scenes = evalset.scenes(1080)
    group = next(s for s in scenes if s.kind == "group5" and s.bucket == "96+")
    photo = next(s for s in scenes if s.id == "photo-48-96-faceapi-sample4")
    for scene in (group, photo):
        _check_faces_at_their_boxes(evalset, scene)


def _check_faces_at_their_boxes(evalset: EvalSet, scene: Scene) -> None:
    from PIL import Image

    frame, faces = scene.render()
    assert faces
    for face in faces:
        photo = evalset.picture(face.photo_id)
        source = crop_box(photo.image, photo.faces[face.face_index].box)
        pasted = crop_box(frame, face.box)
        expected = np.asarray(Image.fromarray(source).resize(pasted.shape[1::-1], Image.Resampling.LANCZOS))
        a = rgb_to_luma(pasted).astype(float).ravel()
        b = rgb_to_luma(expected).astype(float).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.95, face
        # one box width to the right the face is not there
        width = face.box[2] - face.box[0]
        shifted = (face.box[0] + width, face.box[1], face.box[2] + width, face.box[3])
        if shifted[2] < frame.shape[1]:
            elsewhere = rgb_to_luma(np.asarray(Image.fromarray(crop_box(frame, shifted)).resize(pasted.shape[1::-1])))
            assert np.corrcoef(elsewhere.astype(float).ravel(), b)[0, 1] < 0.9


def test_paste_geometry_on_a_synthetic_face() -> None:
    """A grey photo with a red "face" rectangle exactly at the labelled box: after pasting at any scale the
    ground-truth box is red inside and grey just outside."""
    photo = np.full((300, 400, 3), 128, np.uint8)
    box = (150.0, 90.0, 230.0, 190.0)
    photo[90:190, 150:230] = (230, 20, 20)
    face = LabelledFace(box=box, pose="frontal", expression="neutral")
    for face_height, left, top in ((20.0, 13.3, 7.7), (37.0, 600.2, 300.9), (150.0, 40.0, 500.5)):
        frame = np.zeros((1080, 1920, 3), np.uint8)
        x0, y0, x1, y1 = compose.paste_face(frame, photo, face, left, top, face_height).box
        assert y1 - y0 == pytest.approx(face_height, abs=1.0)
        inner = frame[round(y0) + 2 : round(y1) - 2, round(x0) + 2 : round(x1) - 2].reshape(-1, 3)
        assert np.abs(inner.astype(int) - (230, 20, 20)).max() <= 12
        margin = max(2, round(0.1 * face_height))  # inside the patch's opaque part, outside the box
        for x, y in ((x0 - margin, (y0 + y1) / 2), (x1 + margin, (y0 + y1) / 2), ((x0 + x1) / 2, y0 - margin)):
            assert np.abs(frame[round(y), round(x)].astype(int) - 128).max() <= 12, (face_height, x, y)


# ---------------------------------------------------------------------------------------------------- luma
def test_rgb_to_luma_matches_the_decoders_y_plane() -> None:
    import av

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    y_plane = np.frombuffer(frame.planes[0], np.uint8).reshape(64, frame.planes[0].line_size)[:, :96]
    assert np.abs(rgb_to_luma(rgb).astype(int) - y_plane.astype(int)).max() <= 1
    full = rgb_to_luma(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8), full_range=True)
    assert full.tolist() == [[255, 0]]
    with pytest.raises(ValueError):
        rgb_to_luma(np.zeros((4, 4), np.uint8))


# --------------------------------------------------------------------------------------------------- clips
def test_crossing_clip_ground_truth(evalset: EvalSet, tmp_path: Path) -> None:
    import av

    from emotionctl.media.evalset.clips import make_crossing_clip

    clip = make_crossing_clip(evalset, width=640, height=360, fps=10, seconds=3.0, directory=tmp_path)
    assert clip.identities() == [0, 1]
    with av.open(str(clip.path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == len(clip.frames) == 30
    # identity 0 moves right, identity 1 moves left, and 1 hides 0 for a moment when they cross
    first, last = clip.frames[0], clip.frames[-1]
    assert last[0].box[0] > first[0].box[0] and last[1].box[0] < first[1].box[0]
    assert min(frame[0].visible for frame in clip.frames) < 0.5
    assert all(frame[1].visible == 1.0 for frame in clip.frames)  # drawn last: never covered
    again = make_crossing_clip(evalset, width=640, height=360, fps=10, seconds=3.0, directory=tmp_path)
    assert again.path == clip.path and again.frames == clip.frames  # the cached clip and its ground truth


def test_occlusion_clip_hides_the_face_for_at_most_the_asked_time(evalset: EvalSet, tmp_path: Path) -> None:
    from emotionctl.media.evalset.clips import make_occlusion_clip

    clip = make_occlusion_clip(
        evalset, width=640, height=360, fps=10, seconds=6.0, hidden_seconds=1.5, directory=tmp_path
    )
    hidden = [frame[0].visible == 0.0 for frame in clip.frames]
    assert 10 <= sum(hidden) <= 16  # 1.5 s at 10 fps, give or take the slide's edge frames
    assert not hidden[0] and not hidden[-1]
    with pytest.raises(ValueError):
        make_occlusion_clip(evalset, hidden_seconds=2.5, directory=tmp_path)


# ----------------------------------------------------------------------------------------------------- cli
def test_cli_prints_the_summary(evalset: EvalSet, capsys: pytest.CaptureFixture[str]) -> None:
    from emotionctl.cli import main

    assert main(["media", "evalset", "--json", "--cache-dir", str(evalset.cache_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["photos"] == len(evalset.photos)
    assert summary["expressions"] == evalset.summary().expressions
    assert main(["media", "evalset", "--cache-dir", str(evalset.cache_dir)]) == 0
    out = capsys.readouterr().out
    assert "expressions   anger" in out and "face-free" in out
