"""The delivery queue's consumer: delivers what queued mode's intake and direct mode's spill put on the
queue (see queue), at the rate its batch size and concurrency allow, through the same idempotency
records as direct delivery — which is what makes Rokt see each event once, however many copies were
queued.

Retryable failures stay on the queue: the message's visibility is pushed out by Rokt's Retry-After
or a backoff that grows with the receive count (capped), for a horizon counted from when the
message was first queued (24 h by default, the longest Braze retry window); past it, the message
goes to the DLQ with the reason. Refusals are logged and dropped. The queue's redrive policy
(MAX_RECEIVES) is only a backstop for messages that crash the function.

Order: a standard queue hands messages over in any order, so each queued intent is noted in
``pending`` (with when it reached the bridge) before it is sent, and taken off when its message is
done with. The consumer holds an intent back — visible again after a short, growing delay, never
sent — while an older intent for its event is still noted there; and a 404 for an update or delete
is retried, not dropped, while an older intent for the event (its create) is still waiting, and for
UNKNOWN_EVENT_GRACE_SECONDS after its arrival in any case (an intent queued un-noted). Together with
the delivery records' arrival times (an older intent taken after a newer one is ``superseded``) Rokt
ends in the state of the last intent received, whatever order SQS hands them over.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.clock import Deadline
from chalicelib.delivery.models import EventRequest
from chalicelib.errors import BridgeError, DependencyUnavailable, EventNotKnownYet, OlderIntentPending
from chalicelib.observability import logger, record_outcome
from chalicelib.rokt.events import refused_as_unknown
from chalicelib.settings import RETRY_HORIZON_SECONDS, RETRY_MAX_BACKOFF_SECONDS
from chalicelib.sqs import QueueRecords, RetryHorizon
from chalicelib.sqs import backoff_seconds as sqs_backoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.delivery.pending import PendingIntents
    from chalicelib.delivery.service import Deliverer

BASE_BACKOFF_SECONDS = 30
CONSUMER_BUDGET_SECONDS = 25.0
# What the consumer keeps from the invocation's remaining time: the last record's completion write
# and the batch's own bookkeeping; and the least time worth starting a record with.
CONSUMER_RESERVE_SECONDS = 7.0
MIN_RECORD_SECONDS = 2.0
# An intent held back behind an older one for its event is looked at again after this, doubling with
# each receive (capped by the retry backoff cap): soon after the older one is done, in few receives.
HOLD_BACK_BASE_SECONDS = 5
# How long after its arrival a queued update or delete that Rokt answers 404 (no such event) is still
# retried: its create may be on the queue un-noted (DynamoDB was down, or the request's time was up
# when it spilled), or still being processed by Rokt ("202, processed in the background"). Newer
# intents do not wait for these retries.
UNKNOWN_EVENT_GRACE_SECONDS = 3_600.0


def backoff_seconds(receive_count: int, retry_after: int | None, cap: int = RETRY_MAX_BACKOFF_SECONDS) -> int:
    """Visibility delay before the next attempt: Retry-After if Rokt gave one, else exponential."""
    return sqs_backoff(receive_count, retry_after, min(BASE_BACKOFF_SECONDS, cap), cap)


class NotAttempted(Exception):
    """The batch ran out of time before this record; it goes back to the queue untouched."""


class QueueConsumer:
    """The SQS handler's logic: deliver every record, report only the failed ones back to SQS."""

    def __init__(
        self,
        deliverer: Deliverer,
        sqs: SQSClient,
        budget_seconds: float = CONSUMER_BUDGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        reserve_seconds: float = CONSUMER_RESERVE_SECONDS,
        *,
        horizon_seconds: float = RETRY_HORIZON_SECONDS,
        max_backoff_seconds: int = RETRY_MAX_BACKOFF_SECONDS,
        wall_clock: Callable[[], float] = time.time,
        pending: PendingIntents | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deliverer = deliverer
        self._sleep = sleep
        self._pending = pending
        self._horizon = RetryHorizon(horizon_seconds)
        self._max_backoff = max_backoff_seconds
        self._wall_clock = wall_clock
        self._records = QueueRecords(sqs)
        self._budget = budget_seconds
        self._clock = clock
        self._reserve = reserve_seconds
        self._context: Any = None
        self._deadline = Deadline(0, clock=clock, sleep=sleep)

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """One deadline for the whole batch, from the invocation's remaining time: a record that
        cannot get the time it needs is not started; it goes back to the queue at once."""
        self._context = context
        # Imported here: the API handler's cold start need not load Powertools Batch (~30 ms measured).
        from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415
            BatchProcessor,
            EventType,
            process_partial_response,
        )

        self._deadline = Deadline.within(self._budget, context, self._reserve, self._clock, self._sleep)
        # Every record failing is reported like any partial failure (ReportBatchItemFailures), not
        # raised: the records go back the same way and this invocation's metrics still get out.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        result: dict[str, Any] = dict(
            process_partial_response(event=event, record_handler=self._deliver, processor=processor, context=context)
        )
        return result

    def _deliver(self, record: SQSRecord) -> None:
        started = self._clock()
        receives = int(record.attributes.approximate_receive_count or 1)
        summary: dict[str, Any] = {"route": "queue", "messageId": record.message_id, "receiveCount": receives}
        message: dict[str, Any] = {}
        intent: _Intent | None = None
        try:
            message = json.loads(record.body)
            request = EventRequest.from_dict(message["request"])
            summary.update(accountCode=request.account_code, eventId=request.event_id, action=request.action.value)
            intent = _Intent.of(request, message, self._wall_clock)
            if self._deadline.remaining() < MIN_RECORD_SECONDS:
                summary.update(outcome="not_attempted", error="no_time_left")
                self._records.delay(record, 0)  # visible again now: it never reached Rokt
                raise NotAttempted("not enough of the invocation left to deliver this record")
            self._hold_back_behind_older(intent, receives)
            outcome = self._deliverer.deliver(request, self._deadline, self._context, intent.received_at)
            summary.update(
                outcome="duplicate" if outcome.duplicate else outcome.status, upstreamStatus=outcome.upstream_status
            )
            self._done(intent)
        except BridgeError as exc:
            summary.update(outcome=exc.outcome, error=exc.code)
            if exc.outcome != "retryable_failure" and intent is not None:
                exc = self._refusal_or_wait(exc, intent, receives)
                summary.update(outcome=exc.outcome, error=exc.code)
            if exc.outcome != "retryable_failure":
                return  # definitive (Rokt refused): another attempt would get the same answer
            if isinstance(exc, OlderIntentPending):
                summary["outcome"] = "held_back"  # waiting its turn, not a failure
            self._retry_or_give_up(record, message, receives, exc, summary)
            self._gone(intent)  # reached only when it was dead-lettered
        except (ValueError, KeyError, TypeError) as exc:
            summary.update(outcome="invalid", error="unreadable_message")
            if self._records.dead_letter(record, "unreadable_message: not a delivery this bridge wrote"):
                summary["outcome"] = "dead_lettered"
                return
            raise ValueError("queue message is not a delivery this bridge wrote") from exc
        finally:
            summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
            record_outcome("queued webhook handled", summary)

    def _hold_back_behind_older(self, intent: _Intent, receives: int) -> None:
        """OlderIntentPending while an intent for the same event that reached the bridge earlier is
        still waiting in the queue: this one must not overtake it."""
        if self._pending is not None and self._pending.waiting_before(
            intent.request.account_code, intent.request.event_id, intent.received_at, intent.intent_id
        ):
            raise OlderIntentPending(
                "an older intent for this event is still waiting in the queue; this one goes after it",
                retry_after=min(HOLD_BACK_BASE_SECONDS * 2 ** max(receives - 1, 0), self._max_backoff),
            )

    def _refusal_or_wait(self, exc: BridgeError, intent: _Intent, receives: int) -> BridgeError:
        """A refusal is final — except Rokt's 404 for an update or delete: while an older intent for the
        event (its create) still waits, this one waits for it; and within UNKNOWN_EVENT_GRACE_SECONDS of
        its arrival it is retried anyway. Final ones leave ``pending``."""
        if refused_as_unknown(intent.request.operation, exc):
            try:
                self._hold_back_behind_older(intent, receives)
            except OlderIntentPending as waiting:
                return waiting
            if self._wall_clock() - intent.received_at < UNKNOWN_EVENT_GRACE_SECONDS:
                # Off the waiting list, so newer intents do not wait for this retry: if one reaches
                # Rokt first, this one is superseded when it comes back; an older create goes first.
                self._done(intent)
                return EventNotKnownYet("Rokt does not know this event yet; retried for a while before it counts")
        self._done(intent)
        return exc

    def _done(self, intent: _Intent | None) -> None:
        """The intent's message leaves the queue: intents behind it may go. If this cannot be noted,
        the message is retried (its delivery record answers it again, Rokt is not called twice)."""
        if self._pending is not None and intent is not None and intent.intent_id:
            self._pending.remove(intent.request.account_code, intent.request.event_id, intent.intent_id)

    def _gone(self, intent: _Intent | None) -> None:
        """Best effort for a dead-lettered intent (already in the DLQ: it must not fail again); an
        entry left behind stops holding intents back once it is stale (see pending)."""
        try:
            self._done(intent)
        except DependencyUnavailable:
            logger.warning("a dead-lettered intent is still noted as waiting; intents behind it wait until it is stale")

    def _retry_or_give_up(
        self, record: SQSRecord, message: dict[str, Any], receives: int, exc: BridgeError, summary: dict[str, Any]
    ) -> None:
        """Try again after a backoff (raises) while the message is within the horizon; past it,
        dead-letter it with the reason and return (or, if even that fails, leave it to the redrive policy)."""
        delay = backoff_seconds(receives, getattr(exc, "retry_after", None), self._max_backoff)
        age = self._wall_clock() - float(message.get("queuedAt") or self._wall_clock())
        summary["ageSeconds"] = round(age, 1)
        # The age alone decides here: the redrive limit (MAX_RECEIVES) stays the crash backstop.
        gave_up = self._horizon.give_up(age=age, delay=delay, receives=receives, max_receives=None)
        if gave_up is not None and self._records.dead_letter(record, f"{gave_up}: {exc.code}"):
            summary["outcome"] = "dead_lettered"
            return
        self._records.delay(record, delay)
        raise exc


@dataclass(frozen=True)
class _Intent:
    """A queued request with what orders it among its event's intents."""

    request: EventRequest
    received_at: float
    intent_id: str  # empty for messages queued before intents were noted

    @classmethod
    def of(cls, request: EventRequest, message: dict[str, Any], now: Callable[[], float]) -> _Intent:
        received = message.get("receivedAt", message.get("queuedAt"))
        return cls(request, now() if received is None else float(received), str(message.get("intentId") or ""))
