"""template.yaml: lint-clean, transforms offline with samtranslator, and keeps the promises other parts rely on."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from typing import Any

import pytest
from emotion_shared.config import Settings
from samtranslator.translator.transform import transform

from emotionctl.local.template import REPO_ROOT, TEMPLATE_PATH, load_template

REGION = "us-east-1"
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",  # Tracing: Active
}
# Actions AWS only grants on "*" (no resource-level permissions): X-Ray, the registry login, and the
# CloudWatch Logs delivery actions Step Functions logging needs.
ACTIONS_NEEDING_STAR = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


class _OfflinePolicies:
    """samtranslator's managed-policy loader calls IAM; the template names no managed policy by name."""

    def load(self) -> dict[str, str]:
        return {}


def _packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` does before CloudFormation sees the template: local paths become s3:// URIs."""
    packaged = copy.deepcopy(template)
    for name, resource in packaged["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://packaging-bucket/{name}/{key}.zip"
    return packaged


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # the translator insists on a boto session region
        return transform(_packaged(sam), {"AWS::Region": REGION, "AWS::Partition": "aws"}, _OfflinePolicies())


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def test_cfn_lint_is_clean() -> None:
    from pathlib import Path

    from cfnlint.api import lint_file

    matches = lint_file(Path(TEMPLATE_PATH))
    assert [str(m) for m in matches] == []


def test_functions_get_the_globals(cfn: dict[str, Any]) -> None:
    functions = _of_type(cfn, "AWS::Lambda::Function")
    assert {"ApiFunction", "AuthorizerFunction"} <= set(functions)
    for name, fn in functions.items():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert props["Layers"] == [{"Ref": next(iter(_of_type(cfn, "AWS::Lambda::LayerVersion")))}], name
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EmotionStream"
        assert env["POWERTOOLS_SERVICE_NAME"]
        assert env["LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_every_required_setting_is_in_the_function_environment(sam: dict[str, Any]) -> None:
    # Given the settings the shared package refuses to start without
    required = {f.alias for f in Settings.model_fields.values() if f.is_required()}
    # Then the template passes them to every function
    env = sam["Globals"]["Function"]["Environment"]["Variables"]
    assert required <= set(env)
    # And every limit comes from a template parameter (one place to change it)
    for var, param in {
        "MAX_ACTIVE_SESSIONS": "MaxActiveSessions",
        "MAX_ACTIVE_SESSIONS_PER_USER": "MaxActiveSessionsPerUser",
        "RATE_LIMIT_CAPACITY": "RateLimitCapacity",
        "RATE_LIMIT_WINDOW_SECONDS": "RateLimitWindowSeconds",
        "ALLOW_PRIVATE_STREAM_HOSTS": "AllowPrivateStreamHosts",
    }.items():
        assert env[var] == {"Ref": param}
    assert sam["Parameters"]["AllowPrivateStreamHosts"]["Default"] == "false"


def test_rest_api_has_the_request_authorizer_on_every_route(sam: dict[str, Any], cfn: dict[str, Any]) -> None:
    (api,) = _of_type(cfn, "AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    schemes = body["components"]["securitySchemes"]  # OpenApiVersion 3
    (authorizer,) = schemes.values()
    custom = authorizer["x-amazon-apigateway-authorizer"]
    assert custom["type"] == "request"
    assert custom["identitySource"] == "method.request.header.Authorization"
    # SAM resolves the parameter at transform time (here: its default)
    assert custom["authorizerResultTtlInSeconds"] == sam["Parameters"]["AuthorizerCacheSeconds"]["Default"]
    routes = set()
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            routes.add((method.upper(), path))
            assert operation["security"] == [{next(iter(schemes)): []}], (method, path)
    # The routes the REST app declares (emotion_shared.rest.routes), and on each of their paths API Gateway's
    # catch-all ANY, so that another method reaches the function and is answered 405 with Allow.
    from emotion_shared.rest.routes import ROUTES

    declared = {(method, path) for path, methods in ROUTES.items() for method in methods}
    catch_all = {("X-AMAZON-APIGATEWAY-ANY-METHOD", path) for path in ROUTES}
    assert routes == declared | catch_all
    assert ("POST", "/v1/sessions") in routes and ("DELETE", "/v1/sessions/{id}/viewer-tokens/{tokenId}") in routes


def test_gateway_responses_use_the_reference_error_body(cfn: dict[str, Any]) -> None:
    (api,) = _of_type(cfn, "AWS::ApiGateway::RestApi").values()
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    assert responses["UNAUTHORIZED"]["statusCode"] == "401"
    assert responses["ACCESS_DENIED"]["statusCode"] == "401"
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "THROTTLED"} <= set(responses)
    for kind, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        rendered = json.loads(template.replace("$context.error.messageString", json.dumps("a message")))
        # The body's status always equals the HTTP status (templates cannot read it, so it is pinned)
        assert rendered == {"error": True, "status": int(response["statusCode"]), "message": rendered["message"],
                            "code": rendered["code"]}, kind
        assert rendered["message"] and rendered["code"], kind
        problem = json.loads(response["responseTemplates"]["application/problem+json"]
                             .replace("$context.error.messageString", json.dumps("a message")))
        assert problem["status"] == rendered["status"] and problem["code"] == rendered["code"], kind


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_roles_are_least_privilege(cfn: dict[str, Any]) -> None:
    roles = _of_type(cfn, "AWS::IAM::Role")
    assert {"ApiFunctionRole", "AuthorizerFunctionRole"} <= set(roles)
    for name, role in roles.items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES, name
        for statement in _statements(role):
            actions = _as_list(statement["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
            if "*" in _as_list(statement["Resource"]):
                assert set(actions) <= ACTIONS_NEEDING_STAR, (name, statement)


def test_authorizer_can_only_read_tokens_and_record_their_use(cfn: dict[str, Any]) -> None:
    statements = _statements(cfn["Resources"]["AuthorizerFunctionRole"])
    assert [(_as_list(s["Action"]), s["Resource"]) for s in statements] == [
        (["dynamodb:GetItem", "dynamodb:UpdateItem"], {"Fn::GetAtt": ["ControlTable", "Arn"]})
    ]


def test_token_caches_never_outlive_the_authorizer_ttl(sam: dict[str, Any]) -> None:
    """A revoked or expired token is refused within AuthorizerCacheSeconds: API Gateway caches for that long,
    so the authorizer function keeps no cache of its own (auth.build_authorizer_store); the WebSocket function caches at
    most that long."""
    from emotion_shared import auth

    functions = sam["Resources"]
    assert "TOKEN_CACHE_SECONDS" not in str(functions["AuthorizerFunction"]["Properties"])
    assert "TOKEN_CACHE_SECONDS" not in str(sam["Globals"])
    assert auth.TokenStore.__init__.__kwdefaults__ == {"cache_seconds": 0.0}
    ws_env = functions["WebSocketFunction"]["Properties"]["Environment"]["Variables"]
    assert ws_env["TOKEN_CACHE_SECONDS"] == {"Ref": "AuthorizerCacheSeconds"}
    assert sam["Parameters"]["AuthorizerCacheSeconds"]["Default"] == 60


def test_api_function_touches_only_the_tables_it_needs(cfn: dict[str, Any]) -> None:
    allowed: dict[str, set[str]] = {}
    for statement in _statements(cfn["Resources"]["ApiFunctionRole"]):
        for resource in _as_list(statement["Resource"]):
            allowed.setdefault(json.dumps(resource, sort_keys=True), set()).update(_as_list(statement["Action"]))
    tables = {json.dumps({"Fn::GetAtt": [t, "Arn"]}, sort_keys=True): t for t in
              ("SessionsTable", "EmotionsTable", "ControlTable", "IdempotencyTable")}
    for resource, actions in allowed.items():
        if resource in tables or "/index/*" in resource:
            assert all(a.startswith("dynamodb:") for a in actions)
            assert "dynamodb:Scan" not in actions
            assert "dynamodb:DeleteTable" not in actions
        else:  # only the orchestration issue may add something else here (states:StartExecution)
            assert actions <= {"states:StartExecution", "states:StopExecution"}, (resource, actions)
    assert "dynamodb:BatchWriteItem" in allowed[next(k for k, t in tables.items() if t == "EmotionsTable")]


def test_every_function_has_a_log_group_with_retention(cfn: dict[str, Any]) -> None:
    groups = _of_type(cfn, "AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]): g for g in groups.values()}
    for function in _of_type(cfn, "AWS::Lambda::Function"):
        group = named[json.dumps({"Fn::Sub": f"/aws/lambda/${{{function}}}"})]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("table", ["SessionsTable", "EmotionsTable", "ControlTable"])
def test_data_tables_are_protected_and_expire(sam: dict[str, Any], table: str) -> None:
    resource = sam["Resources"][table]
    props = resource["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert resource["DeletionPolicy"] == "Retain"


def test_idempotency_table_uses_powertools_layout(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["IdempotencyTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_outputs_name_what_tools_read(sam: dict[str, Any]) -> None:
    assert {"ApiUrl", "SessionsTableName", "EmotionsTableName", "ControlTableName"} <= set(sam["Outputs"])


def test_samconfig_has_one_section_per_environment(sam: dict[str, Any]) -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    allowed = set(sam["Parameters"]["Environment"]["AllowedValues"])
    for env in ("default", "dev", "staging", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        match = re.search(r"\bEnvironment=(\w+)", deploy["parameter_overrides"])
        assert match and match.group(1) in allowed
        if env != "default":
            assert match.group(1) == env
            assert config[env]["global"]["parameters"]["stack_name"].endswith(env)


def test_analyzer_perception_defaults_are_the_analyzers_own(sam: dict[str, Any]) -> None:
    """The template's perception parameters default to what the analyzer itself defaults to (one source of truth:
    the code; this keeps the deployment's defaults from drifting)."""
    from analyzer.expressions import check_classifier_name
    from analyzer.pipeline import AnalyzerOptions

    params = sam["Parameters"]
    defaults = AnalyzerOptions()
    assert float(params["AnalyzerMinFaceHeight"]["Default"]) == defaults.min_face
    assert params["AnalyzerExpressionModel"]["Default"] == defaults.classifier
    check_classifier_name(params["AnalyzerExpressionModel"]["Default"])
    assert re.fullmatch(params["AnalyzerMinFaceHeight"]["AllowedPattern"], str(defaults.min_face))


def test_the_analyzer_image_has_its_home_in_the_stack(sam: dict[str, Any], cfn: dict[str, Any]) -> None:
    """The stack's own ECR repository (immutable tags) is where the image is pushed; the task runs
    AnalyzerImageUri (a tag or digest of it, never :latest) and its execution role pulls from that repository only."""
    repository = sam["Resources"]["AnalyzerRepository"]
    assert repository["Type"] == "AWS::ECR::Repository"
    assert repository["Properties"]["ImageTagMutability"] == "IMMUTABLE"
    assert sam["Outputs"]["AnalyzerRepositoryUri"]["Value"] == {"Fn::GetAtt": ["AnalyzerRepository", "RepositoryUri"]}
    pattern = re.compile(sam["Parameters"]["AnalyzerImageUri"]["AllowedPattern"])
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/emotion-stream-dev/analyzer"
    assert pattern.match(f"{uri}:1.4.0") and pattern.match(f"{uri}@sha256:{'a' * 64}")
    assert not pattern.match(uri) and not pattern.match(f"{uri}:latest")
    (container,) = sam["Resources"]["AnalyzerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["Image"] == {"Ref": "AnalyzerImageUri"}
    pulls = [s for s in _statements(cfn["Resources"]["AnalyzerExecutionRole"]) if "ecr:BatchGetImage" in s["Action"]]
    assert [s["Resource"] for s in pulls] == [{"Fn::GetAtt": ["AnalyzerRepository", "Arn"]}]
