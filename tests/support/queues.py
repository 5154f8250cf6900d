"""Drive a queue the way Lambda's SQS event source mapping does, against moto's SQS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from chalice.local import LambdaContext

import app as bridge_app
from localworld.queue_worker import receive_batch, sqs_event
from stage.bootstrap import ensure_queues

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalice.test import Client
    from mypy_boto3_sqs.client import SQSClient


LAMBDA_TIMEOUT_MS = 30_000  # .chalice/config.json lambda_timeout


class QueuePair:
    """A queue, its DLQ, and the app's handler for it."""

    def __init__(self, sqs: SQSClient, name: str, dlq_name: str, max_receives: int, handler: str) -> None:
        self.sqs = sqs
        self.handler = handler
        self.url, self.dlq_url = ensure_queues(sqs, name, dlq_name, max_receives, progress=lambda _: None)
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive(self, batch_size: int = 10, url: str | None = None) -> list[Any]:
        return list(receive_batch(self.sqs, url or self.url, batch_size, wait_seconds=0))

    def release(self, messages: list[Any]) -> None:
        for message in messages:
            self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )

    def consume(self, client: Client, messages: list[Any], remaining_ms: int = LAMBDA_TIMEOUT_MS) -> dict[str, Any]:
        """Invoke the app's handler as Lambda does, with the function's 30 s by default (Chalice's test
        client would give 3 s); delete what it did not report failed (nothing if the invocation raised)."""
        context = LambdaContext(self.handler, 512, max_runtime_ms=remaining_ms)
        try:
            answer = bridge_app.app.handler_map[self.handler](sqs_event(messages, self.arn), context)
        except BatchProcessingError:
            answer = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return dict(answer)

    def drain(self, client: Client, batch_size: int, *, release_failures: bool = True, rounds: int = 20) -> int:
        """Consume until the queue is empty (failures made visible again at once); bounded. Returns batches."""
        for batch in range(rounds):
            messages = self.receive(batch_size)
            if not messages:
                return batch
            answer = self.consume(client, messages)
            if release_failures:
                failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
                self.release([m for m in messages if m["MessageId"] in failed])
        raise AssertionError(f"the queue did not drain in {rounds} batches")

    def drain_in_order(
        self, client: Client, order: Callable[[list[Any]], list[Any]], *, rounds: int = 20
    ) -> list[dict[str, Any]]:
        """Like ``drain``, but each batch (everything visible) is handed over in ``order(messages)`` —
        as a standard queue may hand it over. Returns each batch's answer; bounded."""
        answers: list[dict[str, Any]] = []
        for _ in range(rounds):
            messages = self.receive(10)
            if not messages:
                return answers
            answer = self.consume(client, order(messages))
            answers.append(answer)
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            self.release([m for m in messages if m["MessageId"] in failed])
        raise AssertionError(f"the queue did not drain in {rounds} batches")

    def receive_count(self) -> int:
        """Messages on the queue, visible or not (SQS's approximate counts; exact in moto)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0")) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        )

    def dead_letters(self) -> list[Any]:
        return self.receive(100, url=self.dlq_url)
