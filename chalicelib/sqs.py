"""The bridge's SQS plumbing: what producers send (one JSON message with String attributes), and what
a queue consumer does to records besides reporting them failed — push a record's next attempt out
(visibility), decide when to stop retrying (``RetryHorizon``), or move it to its queue's dead-letter
queue with a reason. A consumer that decides itself, before the queue's redrive policy would, is what
gives every dead letter a reason; only a message whose invocation crashed reaches a DLQ without one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.observability import logger
from chalicelib.settings import APP_NAME

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs.client import SQSClient

MAX_VISIBILITY_SECONDS = 43_200  # SQS's own ceiling (12 h)
DEAD_LETTER_REASON = "deadLetterReason"


def stage_queue_names(kind: str, stage: str) -> tuple[str, str]:
    """A stage's queue and its dead-letter queue, ``rokt-calendar-bridge-<stage>-<kind>[-dlq]``: stages
    can share an account and region without sharing queues."""
    name = f"{APP_NAME}-{stage}-{kind}"
    return name, f"{name}-dlq"


def send_json(sqs: SQSClient, queue_url: str, body: Any, attributes: Mapping[str, str], what: str) -> None:
    """One message: ``body`` as JSON and ``attributes`` as String message attributes (for operators and
    ``replay-dlq``); DependencyUnavailable, naming ``what``, if SQS does not take it."""
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body), MessageAttributes=_strings(attributes))
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable(f"the {what} (SQS) is unavailable") from exc


def _strings(values: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


def backoff_seconds(receive_count: int, retry_after: int | None, base: int, cap: int) -> int:
    """Visibility delay before the next attempt: the upstream's Retry-After if given, else exponential."""
    if retry_after is None:
        retry_after = base * 2 ** max(receive_count - 1, 0)
    return int(min(max(retry_after, 1), cap, MAX_VISIBILITY_SECONDS))


def sent_at(record: SQSRecord) -> float | None:
    """When SQS took the message (its ``SentTimestamp``, epoch seconds); None when the event does not say.
    A replayed dead letter is a new message: its retries start over."""
    try:
        sent = int(record.attributes.sent_timestamp)
    except (TypeError, ValueError, KeyError):
        return None
    return sent / 1000 if sent > 0 else None


@dataclass(frozen=True)
class RetryHorizon:
    """How long a consumer retries a message before dead-lettering it itself, with the reason: an age
    horizon, and the queue's redrive limit as the last word — on the last receive SQS would give a
    message, the consumer decides, so SQS never moves a failed one without saying why."""

    seconds: float

    def give_up(self, *, age: float | None, delay: int, receives: int, max_receives: int | None) -> str | None:
        """Why to stop now (a dead-letter reason's opening), or None to try again after ``delay`` seconds."""
        if age is not None and age + delay > self.seconds:
            return f"gave up after {age / 3600:.1f} h of retries (horizon {self.seconds / 3600:g} h)"
        if max_receives is not None and receives >= max_receives:
            return f"gave up after {receives} receives (the queue's redrive limit)"
        return None


class QueueRecords:
    """SQS operations on received records; queue URLs are looked up once per container."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}
        self._dead_letter_urls: dict[str, str] = {}
        self._redrive: dict[str, dict[str, Any]] = {}

    def delay(self, record: SQSRecord, seconds: int) -> None:
        """Make ``record`` visible again only after ``seconds``; failing that, SQS's default applies."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.queue_url(record.event_source_arn),
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except (BotoCoreError, ClientError, ValueError):
            logger.warning("could not delay a failed message; SQS retries it after the default visibility timeout")

    def dead_letter(self, record: SQSRecord, reason: str) -> bool:
        """Copy ``record`` to its queue's DLQ with ``reason``; False if that failed (retry instead)."""
        try:
            attributes: dict[str, Any] = {
                name: {"DataType": value.get("dataType", "String"), "StringValue": value["stringValue"]}
                for name, value in (record.raw_event.get("messageAttributes") or {}).items()
                if value.get("stringValue") is not None
            }
            attributes |= _strings({DEAD_LETTER_REASON: reason[:1000]})
            self._sqs.send_message(
                QueueUrl=self._dead_letter_url(record.event_source_arn),
                MessageBody=record.body,
                MessageAttributes=attributes,
            )
        except (BotoCoreError, ClientError, ValueError, KeyError):
            logger.warning("could not dead-letter a message; it stays on its queue", extra={"reason": reason})
            return False
        return True

    def queue_url(self, arn: str) -> str:
        """The URL of the queue a record came from (``arn:aws:sqs:<region>:<account>:<name>``)."""
        if arn not in self._urls:
            parts = arn.split(":")
            if len(parts) != 6 or parts[2] != "sqs":
                raise ValueError(f"not an SQS queue ARN: {arn!r}")
            answer = self._sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
            self._urls[arn] = answer["QueueUrl"]
        return self._urls[arn]

    def max_receives(self, record: SQSRecord) -> int | None:
        """The receive count at which SQS would move ``record`` to its DLQ; None if unknown."""
        try:
            return int(self._redrive_policy(record.event_source_arn)["maxReceiveCount"])
        except (BotoCoreError, ClientError, ValueError, KeyError, TypeError):
            return None

    def _dead_letter_url(self, arn: str) -> str:
        """The DLQ named by the source queue's redrive policy: one source of truth, no extra setting."""
        if arn not in self._dead_letter_urls:
            self._dead_letter_urls[arn] = self.queue_url(self._redrive_policy(arn)["deadLetterTargetArn"])
        return self._dead_letter_urls[arn]

    def _redrive_policy(self, arn: str) -> dict[str, Any]:
        if arn not in self._redrive:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url(arn), AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
            self._redrive[arn] = json.loads(attributes["RedrivePolicy"])
        return self._redrive[arn]
