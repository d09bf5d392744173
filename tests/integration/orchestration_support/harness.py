"""An orchestration harness on the shared moto server: tables + state machine + agent + event capture."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from emotion_shared.clock import now_ms
from emotion_shared.lifecycle_events import EventPublisher, validate_event
from emotion_shared.sessions import Limits, SessionRepository
from emotion_shared.sweeper import Sweeper
from testsupport import wait_for

from emotionctl.local.fargate import AgentConfig, FargateAgent
from emotionctl.local.moto_server import LOCAL_ACCOUNT, LOCAL_REGION, MotoHandle, local_aws_env
from emotionctl.local.orchestration import Orchestration, capture_events, create_orchestration, prepare_moto
from emotionctl.local.resolve import Resolver
from emotionctl.local.tables import create_tables
from emotionctl.local.template import load_template

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")
LIMITS = Limits(max_active=10, max_active_per_user=5, retention_days=30)


@dataclass
class Harness:
    endpoint: str
    prefix: str
    tables: dict[str, str]
    orchestration: Orchestration
    queue_url: str
    agent: FargateAgent
    session: boto3.session.Session = field(default_factory=boto3.session.Session)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint, region_name=LOCAL_REGION)

    @property
    def repo(self) -> SessionRepository:
        return SessionRepository(self.client("dynamodb"), self.tables["SessionsTable"], self.tables["ControlTable"])

    def create_session(self, user: str = "alice", created_ms: int | None = None) -> str:
        item = self.repo.create(
            user=user,
            product="standard",
            name="test",
            stream_uri="rtmp://127.0.0.1/live/x",
            config={"removeMedia": True, "analysisFps": 5},
            now_ms=created_ms if created_ms is not None else now_ms(),
            limits=LIMITS,
        )
        return str(item["id"])

    def start(self, session_id: str) -> str:
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=self.orchestration.state_machine_arn,
            name=session_id,
            input=json.dumps({"sessionId": session_id}),
        )
        return str(response["executionArn"])

    def wait_execution(self, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
        sfn = self.client("stepfunctions")
        description = wait_for(
            lambda: (d := sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING" and d,
            timeout,
            f"execution {execution_arn} to end",
        )
        return dict(description)

    def states_entered(self, execution_arn: str) -> list[str]:
        history = self.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
        return [
            e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e
        ]

    def events(self, expected: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Drain the capture queue until ``expected`` events arrived (then a short grace for extra ones); every
        event is checked against the lifecycle event contract (``validate_event`` raises on any mismatch)."""
        sqs = self.client("sqs")
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        grace_until: float | None = None
        while time.monotonic() < (grace_until or deadline):
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            for message in messages.get("Messages", []):
                event = json.loads(message["Body"])
                validate_event(event)
                received.append(event)
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if len(received) >= expected and grace_until is None:
                grace_until = time.monotonic() + 0.5
            time.sleep(0.05)
        return received

    def sweeper(self, *, clock: Callable[[], int] = now_ms, stale_seconds: int = 60) -> Sweeper:
        return Sweeper(
            self.repo,
            ecs=self.client("ecs"),
            sfn=self.client("stepfunctions"),
            events=EventPublisher(self.client("events"), self.orchestration.event_bus_name),
            cluster=self.orchestration.cluster_name,
            stale_seconds=stale_seconds,
            provisioning_grace_seconds=300,
            clock=clock,
        )

    def capacity(self, user: str = "alice") -> tuple[int, int]:
        return self.repo.active_count(), self.repo.active_count(user)


def template_resolver(refs: dict[str, Any], attributes: dict[tuple[str, str], Any], **overrides: str) -> Resolver:
    declared = load_template()["Parameters"]
    parameters = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    parameters.update(overrides)
    pseudo = {"AWS::Region": LOCAL_REGION, "AWS::AccountId": LOCAL_ACCOUNT, "AWS::Partition": "aws",
              "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "test", "AWS::NoValue": ""}
    return Resolver(parameters, pseudo, refs, attributes)


@contextmanager
def orchestration_harness(
    moto: MotoHandle, mode: str, command: tuple[str, ...] | None = None, **parameters: str
) -> Iterator[Harness]:
    """Fresh tables, orchestration resources and event capture (unique prefix) + an agent running the fake
    worker in ``mode``; the agent's processes are terminated on exit."""
    prepare_moto(moto.endpoint)
    session = boto3.session.Session()

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=moto.endpoint, region_name=LOCAL_REGION)

    prefix = f"o{uuid.uuid4().hex[:10]}"
    tables = create_tables(client("dynamodb"), prefix)
    refs: dict[str, Any] = dict(tables)
    attributes: dict[tuple[str, str], Any] = {
        (logical, "Arn"): f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"
        for logical, name in tables.items()
    }
    resolver = template_resolver(refs, attributes, **parameters)
    orchestration = create_orchestration(
        client, resolver, refs, attributes, resolver.parameters, prefix=prefix  # type: ignore[arg-type]
    )
    queue_url = capture_events(client("events"), client("sqs"), orchestration.event_bus_name, f"{prefix}-events")
    agent = FargateAgent(
        AgentConfig(
            cluster=orchestration.cluster_name,
            aws_env=local_aws_env(moto.endpoint),
            command=command or (sys.executable, str(FAKE_WORKER)),
            extra_env={"FAKE_WORKER_MODE": mode},
            poll_seconds=0.05,
        ),
        client("ecs"),
    )
    agent.start()
    try:
        yield Harness(moto.endpoint, prefix, tables, orchestration, queue_url, agent, session)
    finally:
        agent.stop()
