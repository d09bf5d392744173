"""Shared domain package of the emotion-stream service.

Used by every Lambda function (shipped as the ``SharedLayer``) and by the analyzer container.
Nothing here runs at import time beyond definitions; AWS clients are created lazily.
"""

SCHEMA_VERSION = 3
