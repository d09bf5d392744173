"""Start moto in server mode as the local stack's AWS side."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from emotionctl.ports import free_port

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"


def local_aws_env(endpoint: str) -> dict[str, str]:
    """What a process needs in its environment to use the embedded AWS through plain boto3."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
    }


@dataclass
class MotoHandle:
    server: Any
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def start_moto(port: int | None = None) -> MotoHandle:
    """Start a threaded moto server on 127.0.0.1. Sets ``MOTO_PORT`` first (moto's Step Functions
    interpreter builds its own clients on ``localhost:$MOTO_PORT``) and isolates DynamoDB requests."""
    port = port or free_port()
    os.environ["MOTO_PORT"] = str(port)
    from moto.server import ThreadedMotoServer  # imported late: reads MOTO_PORT

    from .moto_patches import isolate_dynamodb

    isolate_dynamodb()  # transactions must not erase concurrent writes (moto_patches, defect 7)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return MotoHandle(server=server, port=port)
