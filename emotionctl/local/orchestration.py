"""Orchestration in the embedded AWS, from template.yaml's own definitions.

:func:`prepare_moto` applies the moto patches and switches moto to real Step Functions execution (first:
state machines created before the switch vanish) with ECS tasks that stay ``RUNNING`` until stopped.
:func:`create_orchestration` then creates, from the template's resources: a VPC/subnet (moto needs one for
``awsvpc`` tasks; the template takes them as parameters), the analyzer security group, roles and log groups,
the ECS cluster, the analyzer task definition (its CloudFormation properties converted with botocore's
model of ``RegisterTaskDefinition``), the event bus and the session state machine (the ASL file of
``DefinitionUri`` with its ``DefinitionSubstitutions`` resolved locally). Every resource is registered in
the ``refs``/``attributes`` maps that resolve ``!Ref``/``!GetAtt`` for the rest of the local stack.
Local physical names are ``<prefix>-<LogicalId>``, as for the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion_shared.lifecycle_events import EVENT_SOURCE

from . import moto_patches
from .lambda_runtime import FunctionError, LambdaFunction
from .resolve import Resolver
from .template import TEMPLATE_PATH, load_template

if TYPE_CHECKING:
    from .stack import LocalStack

logger = logging.getLogger(__name__)

LOCAL_IMAGE = "local/emotion-stream-analyzer:dev"
# moto keeps ECS tasks RUNNING until stopped (the local Fargate agent stops them when their process exits).
_MANUAL_TASKS = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}}
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_LIST_PARAMETER = re.compile(r"^(List<.*>|CommaDelimitedList)$")


class OrchestrationError(RuntimeError):
    pass


# ---------------------------------------------------------------- moto switches
def prepare_moto(endpoint: str) -> None:
    """Patch moto (in-process), switch on real Step Functions execution, make ECS tasks wait for the agent.

    Must run before any state machine is created on this moto server. Idempotent.
    """
    moto_patches.apply()
    _post(f"{endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
    _post(f"{endpoint}/moto-api/state-manager/set-transition", _MANUAL_TASKS)


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the embedded AWS on 127.0.0.1
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        if response.status >= 300:
            raise OrchestrationError(f"{url} answered {response.status}")


# ---------------------------------------------------------------- CloudFormation → API
@cache
def _input_shape(service: str, operation: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape


def cfn_to_api(value: Any, shape: Any) -> Any:
    """CloudFormation properties (PascalCase, numbers as strings) → API parameters of ``shape`` (botocore).

    Structure members are matched case-insensitively; map keys are kept; scalars take the shape's type.
    A property the API does not know is an error (it would be silently lost otherwise)."""
    type_name = shape.type_name
    if type_name == "structure":
        if not isinstance(value, Mapping):
            raise OrchestrationError(f"expected an object for {shape.name}, got {value!r}")
        members = {name.lower(): name for name in shape.members}
        out: dict[str, Any] = {}
        for key, item in value.items():
            member = members.get(key.lower())
            if member is None:
                raise OrchestrationError(f"{shape.name} has no member {key!r}")
            out[member] = cfn_to_api(item, shape.members[member])
        return out
    if type_name == "list":
        return [cfn_to_api(item, shape.member) for item in value]
    if type_name == "map":
        return {str(k): cfn_to_api(v, shape.value) for k, v in value.items()}
    if type_name in ("integer", "long"):
        return int(value)
    if type_name == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if type_name in ("float", "double"):
        return float(value)
    return str(value)


class _LocalResolver(Resolver):
    """The stack's resolver, plus CloudFormation's rule that ``!Ref`` of a list parameter is a list."""

    def __init__(self, base: Resolver, list_parameters: set[str]) -> None:
        super().__init__(base.parameters, base.pseudo, base.refs, base.attributes)
        self._lists = list_parameters

    def ref(self, name: str) -> Any:
        if name in self._lists:
            return [part for part in str(self.parameters[name]).split(",") if part]
        return super().ref(name)


# ---------------------------------------------------------------- resources
@dataclass(frozen=True)
class LocalNetwork:
    vpc_id: str
    subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Orchestration:
    """What the rest of the local stack needs to know about the orchestration resources."""

    cluster_name: str
    cluster_arn: str
    task_definition_arn: str
    container_name: str
    event_bus_name: str
    event_bus_arn: str
    state_machine_arn: str
    state_machine_name: str
    network: LocalNetwork

    def env(self) -> dict[str, str]:
        return {
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "EVENT_BUS_NAME": self.event_bus_name,
            "ECS_CLUSTER": self.cluster_name,
        }


def local_parameters(network: LocalNetwork) -> dict[str, str]:
    """Values for the template parameters that have no local default (set only where not given)."""
    return {
        "AnalyzerImageUri": LOCAL_IMAGE,
        "VpcId": network.vpc_id,
        "SubnetIds": ",".join(network.subnet_ids),
        "AssignPublicIp": "DISABLED",
    }


def create_network(ec2: Any, prefix: str) -> LocalNetwork:
    """A VPC (with DNS hostnames: moto's awsvpc tasks need them) and one subnet, for the analyzer tasks."""
    vpc_id = ec2.create_vpc(
        CidrBlock="10.20.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"{prefix}-analyzer"}]}],
    )["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    return LocalNetwork(vpc_id, (subnet_id,))


class _Builder:
    def __init__(
        self,
        clients: Callable[[str], Any],
        resolver: Resolver,
        refs: MutableMapping[str, Any],
        attributes: MutableMapping[tuple[str, str], Any],
        template: dict[str, Any],
        template_dir: Path,
        prefix: str,
    ) -> None:
        self.client = clients
        self.refs = refs
        self.attributes = attributes
        self.template = template
        self.template_dir = template_dir
        self.prefix = prefix
        declared = template.get("Parameters", {})
        lists = {name for name, spec in declared.items() if _LIST_PARAMETER.match(str(spec.get("Type", "")))}
        self.resolver = _LocalResolver(resolver, lists)
        self.region = str(resolver.pseudo["AWS::Region"])
        self.account = str(resolver.pseudo["AWS::AccountId"])

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template.get("Resources", {}).items() if v.get("Type") == resource_type}

    def one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(resource_type)
        if len(found) != 1:
            raise OrchestrationError(f"template.yaml must declare exactly one {resource_type} (found {len(found)})")
        return next(iter(found.items()))

    def props(self, resource: dict[str, Any]) -> dict[str, Any]:
        return dict(resource.get("Properties", {}))

    def name(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    # -- individual resources
    def security_groups(self, network: LocalNetwork) -> None:
        ec2 = self.client("ec2")
        for logical, resource in self.resources("AWS::EC2::SecurityGroup").items():
            props = self.props(resource)
            group_id = ec2.create_security_group(
                GroupName=self.name(logical),
                Description=str(self.resolver.resolve(props.get("GroupDescription", logical))),
                VpcId=network.vpc_id,
            )["GroupId"]
            self.refs[logical] = group_id
            self.attributes[(logical, "GroupId")] = group_id
            self.attributes[(logical, "VpcId")] = network.vpc_id

    def log_groups(self) -> None:
        logs = self.client("logs")
        for logical, resource in self.resources("AWS::Logs::LogGroup").items():
            props = self.props(resource)
            try:
                name = str(self.resolver.resolve(props.get("LogGroupName", self.name(logical))))
            except LookupError:  # names a function or API the local stack does not create as a resource
                continue
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=name)  # names come from the template: shared between stacks
            self.refs[logical] = name
            self.attributes[(logical, "Arn")] = f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}:*"

    def roles(self) -> None:
        iam = self.client("iam")
        for logical, resource in self.resources("AWS::IAM::Role").items():
            props = self.props(resource)
            arn = iam.create_role(
                RoleName=self.name(logical),
                AssumeRolePolicyDocument=json.dumps(self.resolver.resolve(props["AssumeRolePolicyDocument"])),
            )["Role"]["Arn"]
            self.refs[logical] = self.name(logical)
            self.attributes[(logical, "Arn")] = arn

    def event_bus(self) -> tuple[str, str]:
        logical, _ = self.one("AWS::Events::EventBus")
        name = self.name(logical)
        arn = self.client("events").create_event_bus(Name=name)["EventBusArn"]
        self.refs[logical] = name
        self.attributes[(logical, "Arn")] = arn
        self.attributes[(logical, "Name")] = name
        return name, arn

    def cluster(self) -> tuple[str, str]:
        logical, _ = self.one("AWS::ECS::Cluster")
        name = self.name(logical)
        arn = self.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"]
        self.refs[logical] = name
        self.attributes[(logical, "Arn")] = arn
        return name, arn

    def task_definition(self) -> tuple[str, str]:
        logical, resource = self.one("AWS::ECS::TaskDefinition")
        props = self.resolver.resolve(self.props(resource))
        props["Family"] = self.name(logical)
        params = cfn_to_api(props, _input_shape("ecs", "RegisterTaskDefinition"))
        definition = self.client("ecs").register_task_definition(**params)["taskDefinition"]
        containers = [c for c in definition["containerDefinitions"] if c.get("essential", True)]
        self.refs[logical] = definition["taskDefinitionArn"]
        return definition["taskDefinitionArn"], containers[0]["name"]

    def state_machine(self) -> tuple[str, str]:
        logical, resource = self.one("AWS::Serverless::StateMachine")
        props = self.props(resource)
        path = self.template_dir / str(props["DefinitionUri"])
        substitutions = {k: self.resolver.resolve(v) for k, v in props.get("DefinitionSubstitutions", {}).items()}
        text = path.read_text(encoding="utf-8")

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in substitutions:
                raise OrchestrationError(f"{path.name} uses ${{{key}}}, which DefinitionSubstitutions does not define")
            return str(substitutions[key])

        definition = _SUBSTITUTION.sub(substitute, text)
        json.loads(definition)  # a substitution must not break the JSON
        name = self.name(logical)
        arn = self.client("stepfunctions").create_state_machine(
            name=name,
            definition=definition,
            roleArn=f"arn:aws:iam::{self.account}:role/{name}Role",
            type=str(props.get("Type", "STANDARD")),
        )["stateMachineArn"]
        self.refs[logical] = arn
        self.attributes[(logical, "Name")] = name
        self.attributes[(logical, "Arn")] = arn
        return arn, name


def create_orchestration(
    clients: Callable[[str], Any],
    resolver: Resolver,
    refs: MutableMapping[str, Any],
    attributes: MutableMapping[tuple[str, str], Any],
    parameters: MutableMapping[str, str],
    *,
    prefix: str,
    template_path: Path = TEMPLATE_PATH,
) -> Orchestration:
    """Create the orchestration resources of the template (tables must exist and be registered already).

    ``clients(service)`` returns a boto3 client of the embedded AWS; ``parameters`` is the mapping the
    ``resolver`` reads parameters from (local network parameters are added where missing)."""
    template = load_template(template_path)
    network = create_network(clients("ec2"), prefix)
    for key, value in local_parameters(network).items():
        parameters.setdefault(key, value)
    builder = _Builder(clients, resolver, refs, attributes, template, template_path.parent, prefix)
    builder.security_groups(network)
    builder.log_groups()
    builder.roles()
    bus_name, bus_arn = builder.event_bus()
    cluster_name, cluster_arn = builder.cluster()
    task_definition_arn, container_name = builder.task_definition()
    state_machine_arn, state_machine_name = builder.state_machine()
    logger.info("orchestration ready: state machine %s, cluster %s", state_machine_arn, cluster_name)
    return Orchestration(
        cluster_name=cluster_name,
        cluster_arn=cluster_arn,
        task_definition_arn=task_definition_arn,
        container_name=container_name,
        event_bus_name=bus_name,
        event_bus_arn=bus_arn,
        state_machine_arn=state_machine_arn,
        state_machine_name=state_machine_name,
        network=network,
    )


def capture_events(events: Any, sqs: Any, bus_name: str, queue_name: str) -> str:
    """An EventBridge rule on ``bus_name`` (source ``emotion-stream``) → a new SQS queue. Returns its URL."""
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"{queue_name}-rule"
    events.put_rule(Name=rule, EventBusName=bus_name, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule=rule, EventBusName=bus_name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


# ---------------------------------------------------------------- local stack components
SWEEPER_EVENT = Path(__file__).resolve().parents[2] / "events" / "sweeper_schedule.json"
DEFAULT_SWEEP_SECONDS = 10.0


class MotoOrchestration:
    """Component, right after the moto component: patches moto and switches on real Step Functions
    execution (before any state machine exists) with ECS tasks that wait for the local Fargate agent."""

    name = "moto-orchestration"

    async def start(self, stack: LocalStack) -> None:
        for noisy in ("moto.stepfunctions",):  # logs every caught task failure with its whole parse tree
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        endpoint = stack.aws_endpoint
        if endpoint is None:
            raise OrchestrationError("the moto component must start before moto-orchestration")
        await asyncio.get_running_loop().run_in_executor(None, prepare_moto, endpoint)

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"motoPatches": moto_patches.MOTO_VERSION, "syncPollSeconds": moto_patches.SYNC_POLL_SECONDS}


class OrchestrationResources:
    """Component, after the tables and before the function environment: the cluster, task definition,
    event bus and state machine of template.yaml, registered for ``!Ref``/``!GetAtt``."""

    name = "orchestration"

    def __init__(self) -> None:
        self.orchestration: Orchestration | None = None

    async def start(self, stack: LocalStack) -> None:
        import boto3

        session = boto3.session.Session()

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=stack.aws_endpoint, region_name=stack.region)

        def create() -> Orchestration:
            return create_orchestration(
                client,
                stack.resolver(),
                stack.refs,
                stack.attributes,
                stack.parameters,
                prefix=stack.config.table_prefix,
                template_path=stack.config.template_path,
            )

        self.orchestration = await asyncio.get_running_loop().run_in_executor(None, create)

    async def stop(self) -> None:  # the resources live and die with moto
        return None

    def describe(self) -> dict[str, Any]:
        o = self.orchestration
        if o is None:
            return {}
        return {"stateMachine": o.state_machine_arn, "cluster": o.cluster_name, "eventBus": o.event_bus_name,
                "taskDefinition": o.task_definition_arn}


class SweeperSchedule:
    """Component (a background worker): the EventBridge schedule of the template's ``SweeperFunction``,
    locally — invokes it every ``interval`` seconds (in AWS: every minute) with the scheduled event of
    ``events/sweeper_schedule.json``."""

    name = "sweeper"

    def __init__(self, interval: float | None = None, function: str = "SweeperFunction") -> None:
        self.interval = interval if interval is not None else float(
            os.environ.get("EMOTIONCTL_SWEEP_SECONDS", DEFAULT_SWEEP_SECONDS)
        )
        self.function = function
        self.runs = 0
        self.swept = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, stack: LocalStack) -> None:
        if self.function not in stack.functions:
            raise OrchestrationError(f"template.yaml has no local function {self.function}")
        event = json.loads(SWEEPER_EVENT.read_text(encoding="utf-8"))
        self._task = asyncio.create_task(self._run(stack, stack.functions[self.function], event), name="sweeper")

    async def _run(self, stack: LocalStack, function: LambdaFunction, event: dict[str, Any]) -> None:
        while not stack.stopping.is_set():
            try:
                await asyncio.wait_for(stack.stopping.wait(), timeout=self.interval)
                return
            except TimeoutError:
                pass
            try:
                report = await function.invoke(event)
                self.runs += 1
                self.swept += len(report.get("swept", []))
            except FunctionError as exc:  # a failing sweep is logged and retried at the next tick, like a schedule
                self.errors += 1
                logger.error("sweeper run failed: %s", exc.describe())
            except Exception:
                self.errors += 1
                logger.exception("sweeper run failed")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def describe(self) -> dict[str, Any]:
        return {"intervalSeconds": self.interval, "runs": self.runs, "swept": self.swept, "errors": self.errors}
