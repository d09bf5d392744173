"""Shared fixtures: a real moto server (the AWS side) with the tables of template.yaml."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from emotionctl.local.moto_server import MotoHandle, local_aws_env, start_moto
from emotionctl.local.tables import create_tables, table_env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoHandle]:
    """One moto server for the test session; every process/client reaches it through AWS_ENDPOINT_URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                              "AWS_DEFAULT_REGION", "AWS_REGION", "MOTO_PORT")}
    handle = start_moto()
    os.environ.update(local_aws_env(handle.endpoint))
    yield handle
    handle.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def dynamodb(moto_server: MotoHandle) -> Any:
    return boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)


@pytest.fixture
def tables(moto_server: MotoHandle, dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh tables for one test (a unique prefix), created from template.yaml; their env vars are set."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    create_tables(dynamodb, prefix)
    env = table_env(prefix)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def model_dir() -> Any:
    """The real ONNX models, built once from the pinned wheels (a cached no-op when already built)."""
    from analyzer.modelbuild import build

    return build().out_dir
