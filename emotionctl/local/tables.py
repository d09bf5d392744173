"""Create the DynamoDB tables of ``template.yaml`` in the embedded AWS, from the template's own definitions."""

from __future__ import annotations

from typing import Any

from .template import TEMPLATE_PATH, resources_of_type

# Logical id in template.yaml → environment variable the code reads the table name from.
TABLE_ENV = {
    "SessionsTable": "SESSIONS_TABLE",
    "EmotionsTable": "EMOTIONS_TABLE",
    "ControlTable": "CONTROL_TABLE",
    "IdempotencyTable": "IDEMPOTENCY_TABLE",
    "ConnectionsTable": "CONNECTIONS_TABLE",
}


def table_names(prefix: str) -> dict[str, str]:
    """Logical id → physical name for the local stack (``<prefix>-<LogicalId>``)."""
    return {logical: f"{prefix}-{logical}" for logical in resources_of_type("AWS::DynamoDB::Table", TEMPLATE_PATH)}


def table_env(prefix: str) -> dict[str, str]:
    """The environment variables that name the tables, as the template passes them to functions."""
    return {TABLE_ENV[logical]: name for logical, name in table_names(prefix).items() if logical in TABLE_ENV}


def create_tables(client: Any, prefix: str) -> dict[str, str]:
    """Create every ``AWS::DynamoDB::Table`` of the template (idempotent). Returns logical id → name."""
    names = table_names(prefix)
    existing = set(client.list_tables().get("TableNames", []))
    for logical, resource in resources_of_type("AWS::DynamoDB::Table", TEMPLATE_PATH).items():
        props = resource["Properties"]
        name = names[logical]
        if name in existing:
            continue
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "GlobalSecondaryIndexes" in props:
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        client.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    return names
