"""One record-fate policy for both queues (chalicelib.fates): retry, dead-letter, give back — each
ending in the DLQ with a reason before SQS's redrive policy could move the record without one."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.fates import Fate, RecordFates
from chalicelib.observability import metrics

MAX_RECEIVES = 3
QUEUED_AT = 1_000.0


class Records:
    """SQS record operations, remembered."""

    def __init__(self, *, dlq_takes: bool = True) -> None:
        self.dead_letters: list[tuple[str, str]] = []
        self.delays: list[int] = []
        self._dlq_takes = dlq_takes

    def dead_letter(self, record: Any, reason: str) -> bool:
        if self._dlq_takes:
            self.dead_letters.append((record.message_id, reason))
        return self._dlq_takes

    def delay(self, record: Any, seconds: int) -> None:
        self.delays.append(seconds)

    def max_receives(self, record: Any) -> int | None:
        return MAX_RECEIVES


@pytest.fixture(autouse=True)
def no_metrics_left_behind() -> Any:
    yield
    metrics.clear_metrics()


def record(receives: int) -> SQSRecord:
    return SQSRecord(
        {
            "messageId": "m-1",
            "body": "{}",
            "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": str(int(QUEUED_AT * 1000))},
            "messageAttributes": {},
        }
    )


def fates(records: Records, now: float = QUEUED_AT + 60) -> RecordFates:
    return RecordFates(
        records,  # type: ignore[arg-type]
        horizon_seconds=3600,
        base_backoff_seconds=30,
        max_backoff_seconds=900,
        wall_clock=lambda: now,
        what="test record",
        metric="TestDeadLettered",
    )


def test_a_record_given_back_before_its_last_receive_is_visible_again_at_once():
    records = Records()

    assert fates(records).give_back(record(MAX_RECEIVES - 1), "no time left") is Fate.GIVEN_BACK
    assert records.delays == [0]
    assert records.dead_letters == []


def test_a_record_given_back_on_its_last_receive_is_dead_lettered_with_the_reason():
    records = Records()

    assert fates(records).give_back(record(MAX_RECEIVES), "no time left to read") is Fate.DEAD_LETTERED
    assert records.dead_letters == [
        ("m-1", "gave up after 3 receives (the queue's redrive limit): no time left to read")
    ]
    assert records.delays == []


def test_a_record_given_back_past_the_horizon_is_dead_lettered_with_the_reason():
    records = Records()

    assert fates(records, now=QUEUED_AT + 7200).give_back(record(1), "no time left") is Fate.DEAD_LETTERED
    [(_, reason)] = records.dead_letters
    assert reason.startswith("gave up after 2.0 h of retries (horizon 1 h): no time left")


def test_when_the_dlq_refuses_the_record_is_given_back_all_the_same():
    records = Records(dlq_takes=False)

    assert fates(records).give_back(record(MAX_RECEIVES), "no time left") is Fate.GIVEN_BACK
    assert records.delays == [0]


def test_a_retry_without_time_for_its_backoff_comes_back_after_the_visibility_timeout_but_never_without_a_reason():
    # Past the batch's deadline every AWS call may take its whole timeout: the backoff's call is skipped
    # (the queue's visibility timeout brings the record back), the last receive's dead-letter is not
    records = Records()

    assert fates(records).retry(record(1), "upstream_timeout", in_time=False) is Fate.RETRIED
    assert records.delays == []
    assert fates(records).retry(record(MAX_RECEIVES), "upstream_timeout", in_time=False) is Fate.DEAD_LETTERED
    assert [reason for _, reason in records.dead_letters] == [
        f"gave up after {MAX_RECEIVES} receives (the queue's redrive limit): upstream_timeout"
    ]


def test_a_dead_letter_the_dlq_refuses_is_retried_not_dropped():
    records = Records(dlq_takes=False)

    assert fates(records).dead_letter(record(1), "unexpected_error: RuntimeError") is Fate.RETRIED
    assert records.delays == [30]  # back after the backoff; dead-lettered with its reason when the DLQ takes it
