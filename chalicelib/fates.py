"""What becomes of a queue record a consumer does not acknowledge: one policy, one vocabulary.

- **retry**: visible again after a backoff (the upstream's Retry-After, else exponential in the
  receive count, capped) — until the horizon (24 h after the message was queued) or the last receive
  the queue's redrive policy allows; then dead-lettered with the reason;
- **dead-letter**: copied to the queue's DLQ with the reason (a ``deadLetterReason`` attribute); if the
  DLQ does not take it, retried instead, so nothing is dropped;
- **give back**: visible again now — the record was never attempted (the invocation's time ran out);
  on the last receive the queue's redrive policy allows (or past the horizon), dead-lettered with the
  reason instead, so SQS never moves it without one.

Deciding dead letters here, before SQS's redrive policy would, is what gives every dead letter a
reason: SQS's own redrive only ever moves a message whose invocation crashed.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from chalicelib.observability import count, logger
from chalicelib.sqs import RetryHorizon, backoff_seconds, sent_at

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.sqs import QueueRecords


class Fate(enum.Enum):
    """Where an unacknowledged record went."""

    RETRIED = "retried"  # back on its queue after a backoff: report it failed
    DEAD_LETTERED = "dead_lettered"  # in the DLQ with its reason: acknowledge it
    GIVEN_BACK = "given_back"  # back on its queue at once, never attempted: report it failed


class RecordFates:
    """The fates of one queue's records (``what`` names them in logs; ``metric``, if any, counts dead
    letters besides the consumer's own outcome metrics)."""

    def __init__(
        self,
        records: QueueRecords,
        *,
        horizon_seconds: float,
        base_backoff_seconds: int,
        max_backoff_seconds: int,
        wall_clock: Callable[[], float],
        what: str,
        metric: str | None = None,
    ) -> None:
        self._records = records
        self._horizon = RetryHorizon(horizon_seconds)
        self._base = base_backoff_seconds
        self._cap = max_backoff_seconds
        self._clock = wall_clock
        self._what = what
        self._metric = metric

    def retry(self, record: SQSRecord, why: str, retry_after: int | None = None, *, in_time: bool = True) -> Fate:
        """Try ``record`` again after the backoff; past the horizon, or on the last receive the queue
        allows, dead-letter it with ``why`` instead (retried if the DLQ refuses). Without time left for
        the backoff's call (``in_time`` False) it comes back after the queue's visibility timeout — but
        a record the queue would move without a reason is still dead-lettered with one."""
        receives = int(record.attributes.approximate_receive_count or 1)
        delay = backoff_seconds(receives, retry_after, self._base, self._cap)
        if self._gave_up(record, why, delay):
            return Fate.DEAD_LETTERED
        if in_time:
            self._records.delay(record, delay)
        return Fate.RETRIED

    def dead_letter(self, record: SQSRecord, reason: str) -> Fate:
        """Park ``record`` in the DLQ with ``reason``; if the DLQ refuses, retry it (past the horizon the
        retry tries the DLQ once more)."""
        if self._copy_to_dead_letters(record, reason):
            return Fate.DEAD_LETTERED
        return self.retry(record, reason)

    def give_back(self, record: SQSRecord, why: str) -> Fate:
        """``record`` was never attempted (``why``): visible again now — unless this is the last receive
        the queue allows (or the horizon is past): then dead-lettered with ``why``, as a retry would be."""
        if self._gave_up(record, why, 0):
            return Fate.DEAD_LETTERED
        self._records.delay(record, 0)
        return Fate.GIVEN_BACK

    def _gave_up(self, record: SQSRecord, why: str, delay: int) -> bool:
        """Past the horizon, or on the last receive: dead-lettered with the reason (False if the DLQ refused)."""
        sent = sent_at(record)
        gave_up = self._horizon.give_up(
            age=None if sent is None else self._clock() - sent,
            delay=delay,
            receives=int(record.attributes.approximate_receive_count or 1),
            max_receives=self._records.max_receives(record),
        )
        return gave_up is not None and self._copy_to_dead_letters(record, f"{gave_up}: {why}")

    def _copy_to_dead_letters(self, record: SQSRecord, reason: str) -> bool:
        if self._records.dead_letter(record, reason):
            if self._metric is not None:
                count(self._metric)
            logger.error(f"{self._what} dead-lettered", extra={"messageId": record.message_id, "reason": reason})
            return True
        logger.error(f"the dead-letter queue could not take a {self._what}; it is retried instead")
        return False
