"""Worker-only settings (environment), validated at start.

The shared ones (tables, event bus, ``ALLOW_PRIVATE_STREAM_HOSTS``, ``MAX_SESSION_SECONDS``) come from
:class:`emotion_shared.config.Settings`; the models directory from ``EMOTION_MODELS_DIR``
(:func:`analyzer.model_files.default_model_dir`).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import ClassVar

from emotion_shared.config import EnvSettings
from pydantic import Field, field_validator

from .expressions import DEFAULT_CLASSIFIER, check_classifier_name
from .finder import DEFAULT_DISCOVERY_INTERVAL, DEFAULT_MAX_FACES, DEFAULT_MIN_FACE
from .pipeline import AnalyzerOptions

log = logging.getLogger(__name__)


class WorkerSettings(EnvSettings):
    label: ClassVar[str] = "worker configuration"

    session_id: str = Field(alias="SESSION_ID", min_length=1)
    task_arn: str | None = Field(default=None, alias="TASK_ARN")
    metadata_uri: str | None = Field(default=None, alias="ECS_CONTAINER_METADATA_URI_V4")
    reconnect_window_seconds: float = Field(default=30.0, alias="RECONNECT_WINDOW_SECONDS", ge=0, le=3600)
    open_timeout: float = Field(default=10.0, alias="OPEN_TIMEOUT", gt=0, le=120)
    read_timeout: float = Field(default=5.0, alias="READ_TIMEOUT", gt=0, le=120)
    heartbeat_seconds: float = Field(default=1.0, alias="HEARTBEAT_SECONDS", gt=0, le=10)
    # how long DynamoDB may keep failing the heartbeat before the worker gives up (worker_error)
    heartbeat_failure_seconds: float = Field(default=20.0, alias="HEARTBEAT_FAILURE_SECONDS", gt=0)
    model_threads: int = Field(default=1, alias="ANALYZER_THREADS", ge=1, le=16)
    # at most one SessionDegraded/SessionRecovered event per this many seconds (a change within it is published
    # when it is over, if it still holds)
    load_event_interval: float = Field(default=60.0, alias="LOAD_EVENT_INTERVAL_SECONDS", ge=0, le=3600)
    # perception (analyzer.pipeline.AnalyzerOptions): the smallest face as a fraction of the frame height,
    # seconds between full-frame discoveries, faces per frame, the expression classifier
    min_face_height: float = Field(default=DEFAULT_MIN_FACE, alias="MIN_FACE_HEIGHT", gt=0, lt=0.5)
    discovery_interval_seconds: float = Field(
        default=DEFAULT_DISCOVERY_INTERVAL, alias="DISCOVERY_INTERVAL_SECONDS", gt=0, le=10
    )
    max_faces: int = Field(default=DEFAULT_MAX_FACES, alias="MAX_FACES", ge=1, le=100)
    expression_model: str = Field(default=DEFAULT_CLASSIFIER, alias="EXPRESSION_MODEL", min_length=1)

    @field_validator("expression_model")
    @classmethod
    def _known_classifier(cls, value: str) -> str:
        check_classifier_name(value)
        return value

    def analyzer_options(self) -> AnalyzerOptions:
        return AnalyzerOptions(
            min_face=self.min_face_height,
            discovery_interval=self.discovery_interval_seconds,
            max_faces=self.max_faces,
            classifier=self.expression_model,
        )


    def resolve_task_arn(self) -> str | None:
        """``TASK_ARN``, else the ECS task metadata endpoint (v4) when running on ECS/Fargate."""
        if self.task_arn:
            return self.task_arn
        if not self.metadata_uri or not self.metadata_uri.startswith(("http://", "https://")):
            return None
        try:
            with urllib.request.urlopen(f"{self.metadata_uri}/task", timeout=2) as response:  # noqa: S310
                arn = json.load(response).get("TaskARN")
        except (OSError, ValueError) as exc:
            log.warning("task metadata unavailable: %s", exc)
            return None
        return str(arn) if arn else None
