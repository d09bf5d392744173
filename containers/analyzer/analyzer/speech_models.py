"""Where the built speech model lives (``<models>/speech/``) and its manifest (checked before use).

Runtime code: standard library only. Built by :mod:`analyzer.modelbuild.speech`.
"""

from __future__ import annotations

from pathlib import Path

from .model_files import ModelsError, default_model_dir, read_manifest, sha256_file

SPEECH_DIR = "speech"
WHISPER_DIR = "whisper-tiny.en"
MANIFEST_FILE = "manifest.json"
NOTICE_FILE = "NOTICE"
MANIFEST_FORMAT = 1

__all__ = ["ModelsError", "load_speech_manifest"]


def load_speech_manifest(model_dir: Path | None = None, *, verify: bool = True) -> Path:
    """The verified directory of the Whisper model (for ``faster_whisper.WhisperModel``).

    Raises :class:`ModelsError` with a hint to build the models when anything is missing or altered.
    """
    base = Path(model_dir) if model_dir is not None else default_model_dir()
    out = base / SPEECH_DIR
    hint = f"build it with `python -m analyzer.modelbuild --out {base}`"
    path = out / MANIFEST_FILE
    manifest = read_manifest(path, f"no speech model in {out}", hint, manifest_format=MANIFEST_FORMAT)
    entry = manifest.get("speech_recognizer")
    if not isinstance(entry, dict) or entry.get("directory") != WHISPER_DIR:
        raise ModelsError(f"{path}: unsupported or malformed speech manifest; {hint}")
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelsError(f"{path}: no files listed; {hint}")
    for rel, info in files.items():
        file = out / str(rel)
        if ".." in Path(str(rel)).parts or not file.is_file():
            raise ModelsError(f"{file} missing; {hint}")
        if verify and sha256_file(file) != (info or {}).get("sha256"):
            raise ModelsError(f"{file} does not match the sha256 in {MANIFEST_FILE}; {hint}")
    return out / WHISPER_DIR
