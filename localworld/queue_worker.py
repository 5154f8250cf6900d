"""Feed the bridge's queues to its SQS handlers locally, as Lambda's event source mapping does with
ReportBatchItemFailures and a batching window: gather up to the batch size, invoke the handler
(``app.deliver_queued``, ``app.sync_subscribers``), delete only the records that did not fail; and,
with the sync queue, play EventBridge's schedule for ``app.reconcile_subscriptions`` (every 15 minutes).
(``chalice local`` serves HTTP routes only.)"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from chalice.local import LambdaContext

from chalicelib.delivery.queue import BATCH_SIZE
from chalicelib.settings import RECONCILE_EVERY_MINUTES
from chalicelib.sync.queue import SYNC_BATCH_SIZE

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
    """One gather → invoke → delete cycle; returns (received, failed)."""
    messages = receive_batch(sqs, queue_url, batch_size, wait_seconds)
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


def receive_batch(sqs: SQSClient, queue_url: str, batch_size: int, wait_seconds: int = 1) -> list[MessageTypeDef]:
    """Up to ``batch_size`` messages: SQS hands out 10 per call, Lambda's poller gathers more."""
    messages: list[MessageTypeDef] = []
    while len(messages) < batch_size:
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, batch_size - len(messages)),
            WaitTimeSeconds=0 if messages else wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break
        messages.extend(received)
    return messages


@dataclass(frozen=True)
class Feed:
    """One queue and the SQS handler Lambda would invoke for it."""

    handler_name: str
    queue_url: str
    queue_arn: str
    batch_size: int


def feeds(sqs: SQSClient, environment: Mapping[str, str]) -> list[Feed]:
    """The stage's queues that are configured: delivery (queued mode or spill) and sync."""
    wanted = [
        ("deliver_queued", environment.get("DELIVERY_QUEUE_URL"), BATCH_SIZE),
        ("sync_subscribers", environment.get("SYNC_QUEUE_URL"), SYNC_BATCH_SIZE),
    ]
    found = []
    for handler_name, url, batch_size in wanted:
        if url:
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            found.append(Feed(handler_name, url, arn, batch_size))
    return found


def serve(project_dir: str, stage: str, environment: Mapping[str, str]) -> None:
    """Poll until interrupted, with the stage's environment, like the deployed SQS handlers.

    Start it with that environment already set (as ``LocalStack`` does) so Powertools sees its
    service name; it is applied again here for the AWS clients.
    """
    os.environ.update(environment)
    sys.path.insert(0, project_dir)
    app = importlib.import_module("app")
    sqs = boto3.client("sqs")
    queues = feeds(sqs, environment)
    if not queues:
        print("queue worker: no DELIVERY_QUEUE_URL or SYNC_QUEUE_URL configured; nothing to do", flush=True)
        return
    for feed in queues:
        print(f"queue worker: {feed.handler_name} from {feed.queue_url}", flush=True)
    reconcile_at = time.monotonic() + RECONCILE_EVERY_MINUTES * 60
    while True:
        if environment.get("SYNC_QUEUE_URL") and time.monotonic() >= reconcile_at:
            reconcile_at += RECONCILE_EVERY_MINUTES * 60
            _reconcile(app)
        busy = False
        for feed in queues:
            context = LambdaContext(feed.handler_name, 512, max_runtime_ms=30_000)
            handler = getattr(app, feed.handler_name)
            received, failed = poll_once(
                sqs, feed.queue_url, feed.queue_arn, handler, context, batch_size=feed.batch_size, wait_seconds=0
            )
            if received:
                busy = True
                print(f"queue worker: {feed.handler_name}: {received - failed} done, {failed} to retry", flush=True)
        if not busy:
            time.sleep(0.3)


def scheduled_event(event_id: str) -> dict[str, Any]:
    """EventBridge's scheduled event for the reconciliation's rule, as Lambda delivers it."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/reconcile"],
        "detail": {},
    }


def _reconcile(app: Any) -> None:
    """EventBridge's scheduled event for the reconciliation, as Lambda delivers it (a 300 s function)."""
    event = scheduled_event("local")
    context = LambdaContext("reconcile_subscriptions", 512, max_runtime_ms=300_000)
    try:
        found = app.reconcile_subscriptions(event, context)
    except Exception as exc:  # as Lambda reports a failed invocation; the next run continues
        print(f"queue worker: reconcile_subscriptions failed: {type(exc).__name__}: {exc}", flush=True)
        return
    print(f"queue worker: reconcile_subscriptions: {found}", flush=True)
