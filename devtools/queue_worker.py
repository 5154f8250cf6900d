"""Feed the delivery queue to the bridge's SQS handler locally, as Lambda's event source mapping
does with ReportBatchItemFailures: receive a batch, invoke ``app.deliver_queued``, delete only the
records that did not fail. (``chalice local`` serves HTTP routes only.)"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import boto3
from chalice.local import LambdaContext

from chalicelib.delivery.queue import DELIVERY_QUEUE_NAME

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def sqs_event(messages: Sequence[MessageTypeDef], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The Lambda event for ``messages`` as received from SQS (each keeps its own messageId)."""
    records = []
    for message in messages:
        attributes = message.get("Attributes", {})
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": attributes.get("SentTimestamp", "0"),
                    "SenderId": attributes.get("SenderId", "local"),
                    "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
                },
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType", "String")}
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def poll_once(
    sqs: SQSClient,
    queue_url: str,
    queue_arn: str,
    handler: Callable[[dict[str, Any], Any], Any],
    context: Any,
    *,
    batch_size: int = 10,
    wait_seconds: int = 1,
) -> tuple[int, int]:
    """One receive → invoke → delete cycle; returns (received, failed)."""
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if not messages:
        return 0, 0
    try:
        answer = handler(sqs_event(messages, queue_arn, sqs.meta.region_name), context) or {}
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
    except Exception:  # the whole batch failed, as Lambda would see it: everything is retried
        failed = {m["MessageId"] for m in messages}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
    return len(messages), len(failed)


def serve(project_dir: str, stage: str, environment: Mapping[str, str]) -> None:
    """Poll until interrupted, with the stage's environment, like the deployed SQS handler.

    Start it with that environment already set (as ``LocalStack`` does) so Powertools sees its
    service name; it is applied again here for the AWS clients.
    """
    os.environ.update(environment)
    sys.path.insert(0, project_dir)
    app = importlib.import_module("app")
    sqs = boto3.client("sqs")
    queue_url = environment.get("DELIVERY_QUEUE_URL") or sqs.get_queue_url(QueueName=DELIVERY_QUEUE_NAME)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    print(f"queue worker: delivering from {queue_url}", flush=True)
    while True:
        context = LambdaContext("deliver_queued", 512, max_runtime_ms=30_000)
        received, failed = poll_once(sqs, queue_url, queue_arn, app.deliver_queued, context)
        if received:
            print(f"queue worker: {received - failed} delivered, {failed} to retry", flush=True)
