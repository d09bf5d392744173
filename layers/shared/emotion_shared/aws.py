"""Lazily created, process-wide boto3 clients.

Clients are built once per process (never per request). The endpoint comes from boto3's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` handling, so the same code talks to AWS or to the
embedded local stack.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()

# Short connect/read timeouts: a Lambda or worker must not hang on a slow dependency.
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 4},
    max_pool_connections=32,
)


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    with _lock:  # boto3's default session is not thread-safe while creating clients
        return boto3.session.Session().client(service, config=_CONFIG, endpoint_url=endpoint_url)
