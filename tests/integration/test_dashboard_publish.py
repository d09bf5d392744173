"""`emotionctl dashboard publish` against a moto server: the stack's outputs read from CloudFormation, the built
files and a generated config.json in the bucket (types, caching, index.html last), a CloudFront invalidation."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from emotionctl.dashboard.publish import PublishError, publish, stack_outputs
from emotionctl.dashboard.site import IMMUTABLE, REVALIDATE
from emotionctl.local.moto_server import MotoHandle

WS_URL = "wss://ws123.execute-api.us-east-1.amazonaws.com/v1"


class Recording:
    """A real S3 client that also remembers the order of its puts."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.keys: list[str] = []

    def put_object(self, **kwargs: Any) -> Any:
        self.keys.append(kwargs["Key"])
        return self.client.put_object(**kwargs)


@pytest.fixture
def deployed(moto_server: MotoHandle) -> dict[str, Any]:
    """A stack with the dashboard's outputs (bucket and distribution made for real in moto)."""
    session = boto3.session.Session(region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=moto_server.endpoint)
    cloudfront = session.client("cloudfront", endpoint_url=moto_server.endpoint)
    cloudformation = session.client("cloudformation", endpoint_url=moto_server.endpoint)
    name = f"dash-publish-{uuid.uuid4().hex[:8]}"  # one moto server for the whole test session
    template = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {"DashboardBucketName": {"Value": {"Ref": "Bucket"}}},
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    stack_bucket = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]
    bucket = stack_bucket["OutputValue"]
    distribution = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": name, "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "b", "DomainName": f"{bucket}.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "b", "ViewerProtocolPolicy": "redirect-to-https",
                                 "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"},
    })["Distribution"]
    outputs = {"DashboardBucketName": bucket, "DashboardDistributionId": distribution["Id"],
               "DashboardUrl": f"https://{distribution['DomainName']}/", "WebSocketUrl": WS_URL}
    return {"name": name, "s3": s3, "cloudfront": cloudfront, "cloudformation": cloudformation, "outputs": outputs}


def _site(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir(parents=True)
    (tmp_path / "index.html").write_text('<script src="assets/app-AB.js"></script>', encoding="utf-8")
    (tmp_path / "assets" / "app-AB.js").write_text("console.log(1)", encoding="utf-8")
    (tmp_path / "assets" / "styles-CD.css").write_text("body{}", encoding="utf-8")
    return tmp_path


def test_publish_uploads_the_site_and_its_config(deployed: dict[str, Any], tmp_path: Path) -> None:
    s3 = Recording(deployed["s3"])
    outputs = deployed["outputs"]
    published = publish(outputs, s3, deployed["cloudfront"], _site(tmp_path))

    assert s3.keys[-2:] == ["config.json", "index.html"]  # assets first, the page last
    assert sorted(s3.keys) == ["assets/app-AB.js", "assets/styles-CD.css", "config.json", "index.html"]
    bucket = outputs["DashboardBucketName"]

    def head(key: str) -> tuple[str, str]:
        answer = deployed["s3"].head_object(Bucket=bucket, Key=key)
        return answer["ContentType"], answer["CacheControl"]

    assert head("index.html") == ("text/html; charset=utf-8", REVALIDATE)
    assert head("assets/app-AB.js") == ("text/javascript; charset=utf-8", IMMUTABLE)
    assert head("config.json") == ("application/json", REVALIDATE)
    config = json.loads(deployed["s3"].get_object(Bucket=bucket, Key="config.json")["Body"].read())
    assert config == {"apiUrl": outputs["DashboardUrl"].rstrip("/"), "webSocketUrl": WS_URL}

    invalidation = deployed["cloudfront"].get_invalidation(
        DistributionId=outputs["DashboardDistributionId"], Id=published.invalidation_id)["Invalidation"]
    assert sorted(invalidation["InvalidationBatch"]["Paths"]["Items"]) == ["/", "/config.json", "/index.html"]
    assert published.url == outputs["DashboardUrl"]


def test_stack_outputs_says_what_is_missing(deployed: dict[str, Any]) -> None:
    with pytest.raises(PublishError, match=r"DashboardDistributionId, DashboardUrl, WebSocketUrl.*sam deploy"):
        stack_outputs(deployed["cloudformation"], deployed["name"])
