"""The embedded AWS keeps DynamoDB transactions isolated from concurrent writes (moto_patches, defect 7).

Unpatched moto 5.2.5 restores a whole-table snapshot when a transaction's condition fails, erasing writes
other request threads made meanwhile: capacity counters drift under concurrent create/stop/delete."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import boto3

from emotionctl.local.moto_patches import dynamodb_isolated
from emotionctl.local.moto_server import MotoHandle

THREADS = 8
TRANSACTIONS = 30


def test_failed_transactions_do_not_erase_concurrent_writes(moto_server: MotoHandle, dynamodb: Any) -> None:
    assert dynamodb_isolated()
    # Given a table big enough that moto's snapshot takes a while, and a counter in it
    table = f"iso{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "counter"}, "n": {"N": "0"}})
    for k in range(300):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"filler{k}"}, "v": {"S": "x" * 100}})
    committed = []
    lock = threading.Lock()

    def worker() -> None:
        client = boto3.session.Session().client("dynamodb", endpoint_url=moto_server.endpoint)
        increment = {"Update": {"TableName": table, "Key": {"pk": {"S": "counter"}},
                                "UpdateExpression": "SET n = n + :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}}}}
        failing_check = {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "absent"}},
                                            "ConditionExpression": "attribute_exists(pk)"}}
        for i in range(TRANSACTIONS):
            items = [increment, failing_check] if i % 2 else [increment]
            try:
                client.transact_write_items(TransactItems=items)
            except client.exceptions.TransactionCanceledException:
                continue
            with lock:
                committed.append(1)

    # When committed and cancelled transactions on the counter run concurrently
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the counter counts exactly the committed ones
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "counter"}}, ConsistentRead=True)["Item"]
    assert len(committed) == THREADS * TRANSACTIONS // 2
    assert int(item["n"]["N"]) == len(committed)
