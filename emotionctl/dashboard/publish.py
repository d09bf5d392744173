"""Publish the built dashboard to a deployed stack: its files to the private bucket, ``config.json`` generated
from the stack's outputs, then a CloudFront invalidation of the files that are not content-hashed.

Order matters for visitors during the upload: hashed assets first, then ``config.json``, ``index.html`` last, so a
page never names an asset that is not there yet. Older hashed assets are left in place (a tab opened before the
publish may still ask for them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .site import CONFIG_NAME, INDEX_NAME, REVALIDATE, SITE_DIR, config_document, site_files

# The stack outputs publishing reads (template.yaml).
REQUIRED_OUTPUTS = ("DashboardBucketName", "DashboardDistributionId", "DashboardUrl", "WebSocketUrl")


class PublishError(RuntimeError):
    """The stack or the site is not in a state that can be published (the message says what to do)."""


@dataclass(frozen=True)
class Published:
    url: str
    keys: list[str]
    invalidation_id: str


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The outputs of a deployed stack that publishing needs; :class:`PublishError` if one is missing."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise PublishError(
            f"stack {stack_name} has no output {', '.join(missing)}: deploy the current template.yaml first "
            "(sam build && sam deploy)"
        )
    return outputs


def publish(outputs: Mapping[str, str], s3: Any, cloudfront: Any, site_dir: Path = SITE_DIR) -> Published:
    """Upload ``site_dir`` and a generated ``config.json`` to the stack's bucket and invalidate the page."""
    files = site_files(site_dir)
    bucket = outputs["DashboardBucketName"]
    page_url = outputs["DashboardUrl"]
    config = config_document(page_url.rstrip("/"), outputs["WebSocketUrl"])
    ordered = [f for f in files if f.key != INDEX_NAME] + [f for f in files if f.key == INDEX_NAME]
    keys: list[str] = []
    for file in ordered:
        if file.key == INDEX_NAME:  # the config first: the new page may expect it
            s3.put_object(Bucket=bucket, Key=CONFIG_NAME, Body=config, ContentType="application/json",
                          CacheControl=REVALIDATE)
            keys.append(CONFIG_NAME)
        s3.put_object(Bucket=bucket, Key=file.key, Body=file.path.read_bytes(), ContentType=file.content_type,
                      CacheControl=file.cache_control)
        keys.append(file.key)
    paths = ["/", f"/{INDEX_NAME}", f"/{CONFIG_NAME}"]
    answer = cloudfront.create_invalidation(
        DistributionId=outputs["DashboardDistributionId"],
        InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths},
                           "CallerReference": f"emotionctl-{int(time.time())}-{uuid.uuid4().hex[:8]}"},
    )
    return Published(url=page_url, keys=keys, invalidation_id=str(answer["Invalidation"]["Id"]))
