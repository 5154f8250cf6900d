"""The sync consumer's fate for a record it cannot write, when the dead-letter queue misbehaves: a
record ends either dead-lettered (and acknowledged) or reported failed for a retry — never both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.observability import metrics
from chalicelib.runtime import Runtime
from chalicelib.sync.consumer import SyncConsumer

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_RECEIVES = 5


class FlakyDeadLetters:
    """SQS record operations whose first dead-letter send fails and later ones succeed."""

    def __init__(self) -> None:
        self.dead_letters: list[str] = []
        self.delays: list[int] = []
        self._failures_left = 1

    def dead_letter(self, record: Any, reason: str) -> bool:
        if self._failures_left:
            self._failures_left -= 1
            return False
        self.dead_letters.append(record.message_id)
        return True

    def delay(self, record: Any, seconds: int) -> None:
        self.delays.append(seconds)

    def max_receives(self, record: Any) -> int | None:
        return MAX_RECEIVES


@pytest.fixture(autouse=True)
def no_metrics_left_behind() -> Iterator[None]:
    """The consumer is called here without the Lambda handler that flushes its metrics: drop them."""
    yield
    metrics.clear_metrics()


def sqs_record(body: str, receives: int) -> dict[str, Any]:
    return {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1000000"},  # queued at 1,000 s
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-test-sync",
    }


def consumer(records: Any) -> SyncConsumer:
    unused: Any = None  # an unreadable message reaches neither Rokt, Braze, the claims nor the ledger
    return SyncConsumer(
        unused,
        unused,
        unused,
        unused,
        records,
        fallback="none",
        runtime=Runtime(time=lambda: 1_060.0, monotonic=lambda: 0.0),
    )


def test_an_unreadable_message_the_dlq_takes_on_its_last_receive_is_not_also_retried():
    records = FlakyDeadLetters()

    answer = consumer(records).handle({"Records": [sqs_record("not json", receives=MAX_RECEIVES)]})

    assert records.dead_letters == ["m-1"]
    assert answer["batchItemFailures"] == []  # dead-lettered: acknowledged, not retried as well


def test_an_unreadable_message_the_dlq_refuses_is_retried_after_a_delay():
    records = FlakyDeadLetters()

    answer = consumer(records).handle({"Records": [sqs_record("not json", receives=1)]})

    assert records.dead_letters == []
    assert len(records.delays) == 1
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m-1"}]
