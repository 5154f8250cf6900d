"""``bridgectl dlq``: the dead letters of the delivery and sync queues — why each was dead-lettered,
and moving them back to their queue (all, or those matching), refusing deliveries too old to replay."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

from chalicelib.sqs import DEAD_LETTER_REASON

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_sqs.client import SQSClient

    from stage.bootstrap import Progress
    from stage.names import StageNames


def replay_dlq(
    sqs: SQSClient,
    names: StageNames,
    *,
    queue: str = "delivery",
    account_code: str | None = None,
    event_id: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    limit: int = 10_000,
    progress: Progress = print,
    clock: Callable[[], float] = time.time,
) -> int:
    """Move dead letters back to their queue (all, or those matching); return how many matched.

    A delivery received longer ago than the delivery records are kept (IDEMPOTENCY_TTL_SECONDS) stays
    unless ``force``: the record of a newer intent for its event may be gone, and nothing would stop
    this older one from putting Rokt back in an older state."""
    queue_name, dlq_name = names.queues(queue)
    dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    matched = seen = refused = 0
    skipped: list[str] = []
    while seen < limit:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            seen += 1
            attributes: Mapping[str, Any] = message.get("MessageAttributes", {})
            account = _attribute(attributes, "accountCode")
            event = _attribute(attributes, "eventId")
            target = f"{account}/{event}" if account else str(event)
            if (account_code and account != account_code) or (event_id and event != event_id):
                skipped.append(message["ReceiptHandle"])
                continue
            age = _received_ago(message["Body"], clock()) if queue == "delivery" else None
            if age is not None and age > names.idempotency_ttl_seconds and not force:
                refused += 1
                progress(
                    f"not replaying {target} ({message['MessageId']}): received {age / 3600:.1f} h ago, longer "
                    f"than delivery records are kept ({names.idempotency_ttl_seconds / 3600:g} h), so a newer "
                    "intent for this event may have reached Rokt and been forgotten, and this older one would "
                    "undo it; check the event in Rokt, then --force to replay it anyway"
                )
                skipped.append(message["ReceiptHandle"])
                continue
            matched += 1
            because = f" — dead-lettered because: {dead_letter_reason(message)}"
            progress(f"{'would replay' if dry_run else 'replaying'} {target} ({message['MessageId']}){because}")
            if dry_run:
                skipped.append(message["ReceiptHandle"])
                continue
            sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"], MessageAttributes=_copyable(attributes))
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    for handle in skipped:  # make the ones left alone visible again right away
        sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=handle, VisibilityTimeout=0)
    kept = f"; {refused} too old to replay without --force" if refused else ""
    progress(f"{matched} of {seen} dead letter(s) {'would be ' if dry_run else ''}replayed{kept}")
    return matched


def dead_letter_reason(message: Mapping[str, Any]) -> str:
    """Why a message is in a DLQ: the reason the consumer wrote, or — for one SQS's redrive policy moved
    (an invocation that crashed or timed out on it) — what SQS itself recorded about it."""
    reason = _attribute(message.get("MessageAttributes", {}), DEAD_LETTER_REASON)
    if reason:
        return reason
    recorded: Mapping[str, str] = message.get("Attributes", {})
    try:
        receives = int(recorded.get("ApproximateReceiveCount", "0")) - 1  # less this look at the DLQ
    except ValueError:
        receives = 0
    said = "no reason recorded: moved by SQS's redrive policy"
    said += f" after {receives} receives" if receives > 0 else ""
    source = recorded.get("DeadLetterQueueSourceArn")
    said += f" from {source.rsplit(':', 1)[-1]}" if source else ""
    sent = recorded.get("SentTimestamp", "")
    if sent.isdigit() and int(sent) > 0:
        queued = dt.datetime.fromtimestamp(int(sent) / 1000, dt.UTC).isoformat(timespec="seconds")
        said += f", first queued {queued.replace('+00:00', 'Z')}"
    return said + " (the consumer never decided: look for a crash or timeout in its logs)"


def _received_ago(body: str, now: float) -> float | None:
    """How long ago the bridge received the delivery in ``body`` (None if it does not say)."""
    try:
        message = json.loads(body)
        received = message.get("receivedAt", message.get("queuedAt"))
        return None if received is None else now - float(received)
    except (ValueError, TypeError, AttributeError):
        return None


def _attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name) or {}
    found = value.get("StringValue")
    return str(found) if found is not None else None


def _copyable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in attributes.items()
        if "StringValue" in value and name != DEAD_LETTER_REASON
    }
