"""The delivery queue's consumer: delivers what queued mode's intake and direct mode's spill put on the
queue (see queue), at the rate its batch size and concurrency allow, through the same per-event state
as direct delivery (:mod:`chalicelib.delivery.state`) — which is what makes Rokt see each intent once,
however many copies were queued, and in the order the bridge received them.

Each record ends in one of the fates of :mod:`chalicelib.fates`, and its intent leaves its event's
waiting list exactly when its message leaves the queue:

- delivered, a duplicate, superseded, refused by Rokt → acknowledged, off the waiting list;
- held back behind an older intent for its event, or another delivery of the event in flight → retried
  soon (its entry kept live), not a failure;
- Rokt or AWS failing → retried after a backoff (Retry-After, else exponential, capped), its entry kept
  live; past the horizon (24 h after it was queued) or on the queue's last allowed receive →
  dead-lettered with the reason, off the waiting list;
- Rokt's 404 for an update or delete → retried for ``UNKNOWN_EVENT_GRACE_SECONDS`` from Rokt's first
  404 for it (its create may still be queued un-noted, or processed by Rokt; receives an outage spent
  before do not count), off the waiting list meanwhile so newer intents need not wait for it; then a
  refusal;
- anything else — an unreadable message, an unexpected error — dead-lettered with the reason at once:
  nothing loops, nothing holds its event's later intents back;
- not started because the invocation's time ran out → given back at once (dead-lettered with that
  reason on the last allowed receive).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import MIN_ATTEMPT_SECONDS, Deadline
from chalicelib.delivery.in_order import fingerprint
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.state import Intent
from chalicelib.errors import (
    BridgeError,
    DependencyUnavailable,
    EventNotKnownYet,
    InFlight,
    OlderIntentPending,
    RateLimited,
    RoktRejected,
)
from chalicelib.fates import Fate, RecordFates
from chalicelib.observability import logger, record_outcome
from chalicelib.rokt.events import refused_as_unknown
from chalicelib.settings import RETRY_HORIZON_SECONDS, RETRY_MAX_BACKOFF_SECONDS
from chalicelib.sqs import QueueRecords

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.delivery.service import DeliveryOutcome

BASE_BACKOFF_SECONDS = 30
CONSUMER_BUDGET_SECONDS = 25.0
# What the consumer keeps from the invocation's remaining time: the record in progress at the deadline
# may still make one AWS call before Rokt and one after (its completion, or its dead-letter on the last
# allowed receive), each up to ~4.5 s (2 attempts of a 2 s read timeout); and the least time worth
# starting a record with.
CONSUMER_RESERVE_SECONDS = 9.0
MIN_RECORD_SECONDS = 2.0
# An intent waiting its turn (held back, or its event in flight) is looked at again after this, doubling
# with each receive (capped by the retry backoff cap): soon after the older one is done, in few receives.
HOLD_BACK_BASE_SECONDS = 5
# How long a queued update or delete that Rokt answers 404 (no such event) is still retried, from the
# later of its arrival and its first receive: its create may be on the queue un-noted (DynamoDB was
# down, or the request's time was up when it spilled), or still processed by Rokt ("202, processed in
# the background"). Newer intents do not wait for these retries.
UNKNOWN_EVENT_GRACE_SECONDS = 3_600.0


class QueuedDeliverer(Protocol):
    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
        *,
        intent_id: str = "",
    ) -> DeliveryOutcome: ...


class WaitingList(Protocol):
    def seen(self, intent: Intent) -> None: ...

    def leave(self, intent: Intent) -> None: ...

    def unknown_since(self, intent: Intent) -> float: ...


class NotAttempted(Exception):
    """The batch ran out of time before this record; it goes back to the queue untouched."""


class Unprocessable(Exception):
    """Delivering this record failed in a way another attempt would repeat: dead-letter it."""


class QueueConsumer:
    """The SQS handler's logic: deliver every record, report only the failed ones back to SQS."""

    def __init__(
        self,
        deliverer: QueuedDeliverer,
        waiting: WaitingList,
        sqs: SQSClient,
        *,
        budget_seconds: float = CONSUMER_BUDGET_SECONDS,
        reserve_seconds: float = CONSUMER_RESERVE_SECONDS,
        horizon_seconds: float = RETRY_HORIZON_SECONDS,
        max_backoff_seconds: int = RETRY_MAX_BACKOFF_SECONDS,
        unknown_event_grace_seconds: float = UNKNOWN_EVENT_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deliverer = deliverer
        self._waiting = waiting
        self._records = QueueRecords(sqs)
        self._fates = RecordFates(
            self._records,
            horizon_seconds=horizon_seconds,
            base_backoff_seconds=min(BASE_BACKOFF_SECONDS, max_backoff_seconds),
            max_backoff_seconds=max_backoff_seconds,
            wall_clock=wall_clock,
            what="queued delivery",  # counted by its outcome (DeadLettered, route "queue")
        )
        self._max_backoff = max_backoff_seconds
        self._grace = unknown_event_grace_seconds
        self._budget = budget_seconds
        self._reserve = reserve_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
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
            process_partial_response(event=event, record_handler=self._handle, processor=processor, context=context)
        )
        return result

    def _handle(self, record: SQSRecord) -> None:
        """One record's fate; raises (the record is reported failed) when it stays on the queue."""
        started = self._clock()
        receives = int(record.attributes.approximate_receive_count or 1)
        summary: dict[str, Any] = {"route": "queue", "messageId": record.message_id, "receiveCount": receives}
        try:
            stays = self._fate(record, receives, summary)
        finally:
            summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
            record_outcome("queued webhook handled", summary)
        if stays is not None:
            raise stays

    def _fate(self, record: SQSRecord, receives: int, summary: dict[str, Any]) -> Exception | None:
        """Deliver the record and decide its fate; the exception to report it failed with, if it stays."""
        try:
            intent = _QueuedIntent.read(record, self._wall_clock)
        except Exception as exc:  # whatever the message holds, it is dead-lettered, never looped
            summary.update(outcome="invalid", error="unreadable_message")
            reason = f"unreadable_message: not a delivery this bridge wrote ({type(exc).__name__})"
            return self._dead_letter(record, reason, summary, _QueuedIntent.named_by(record))
        request = intent.request
        summary.update(accountCode=request.account_code, eventId=request.event_id, action=request.action.value)
        if self._deadline.remaining() < MIN_RECORD_SECONDS:
            summary.update(outcome="not_attempted", error="no_time_left")
            if (
                self._fates.give_back(record, "no_time_left: the invocation ended before it could be delivered")
                is Fate.DEAD_LETTERED
            ):
                self._leave(intent)
                summary["outcome"] = "dead_lettered"
                return None
            return NotAttempted("not enough of the invocation left to deliver this record")
        try:
            outcome = self._deliverer.deliver(
                request, self._deadline, self._context, intent.received_at, intent_id=intent.intent_id
            )
        except (OlderIntentPending, InFlight) as exc:
            summary.update(outcome="held_back", error=exc.code)  # waiting its turn, not a failure
            return self._retry(record, intent, exc, summary, retry_after=self._hold_back(receives))
        except RoktRejected as exc:
            summary.update(outcome=exc.outcome, error=exc.code, upstreamStatus=exc.upstream_status)
            if refused_as_unknown(request.operation, exc):
                return self._not_known_yet(record, intent, summary)
            self._leave(intent)  # definitive: another attempt would get the same answer
            return None
        except BridgeError as exc:
            summary.update(outcome=exc.outcome, error=exc.code)
            if exc.outcome != "retryable_failure":
                return self._dead_letter(record, f"{exc.code}: {exc.message}", summary, intent)
            # Rokt's Retry-After, growing with the receives (as a hold-back does): a rate limit that lasts
            # hours must not spend SQS's receive count (at most 1000) in Retry-After-sized steps
            retry_after = max(exc.retry_after or 1, self._hold_back(receives)) if isinstance(exc, RateLimited) else None
            return self._retry(record, intent, exc, summary, retry_after=retry_after)
        except Exception as exc:  # a bug must not loop on the queue nor hold its event's later intents back
            logger.exception("queued delivery failed unexpectedly", extra={"messageId": record.message_id})
            summary.update(outcome="error", error="unexpected_error")
            return self._dead_letter(record, f"unexpected_error: {type(exc).__name__}", summary, intent)
        summary.update(
            outcome="duplicate" if outcome.duplicate else outcome.status, upstreamStatus=outcome.upstream_status
        )
        return None

    # --- fates ---------------------------------------------------------------------------------------
    def _retry(
        self,
        record: SQSRecord,
        intent: _QueuedIntent | None,
        exc: BridgeError,
        summary: dict[str, Any],
        retry_after: int | None = None,
        *,
        waiting: bool = True,
    ) -> Exception | None:
        """Back on the queue after a backoff, the intent's entry kept live (``waiting`` False, or None: it
        has left the list); past the horizon or on the last allowed receive, dead-lettered and off the list."""
        if self._fates.retry(record, exc.code, retry_after, in_time=self._has_time()) is Fate.DEAD_LETTERED:
            summary["outcome"] = "dead_lettered"
            self._leave(intent)
            return None
        if intent is not None and waiting and self._has_time():
            self._seen(intent)
        return exc

    def _has_time(self) -> bool:
        """Bookkeeping a record can do without (a backoff, refreshing its waiting entry) starts only before
        the batch's deadline: past it, every AWS call could take its whole timeout, and the invocation
        must end before Lambda's (a killed batch comes back whole, its receive counts spent)."""
        return self._deadline.remaining() >= MIN_ATTEMPT_SECONDS

    def _dead_letter(
        self, record: SQSRecord, reason: str, summary: dict[str, Any], intent: _QueuedIntent | None = None
    ) -> Exception | None:
        if self._fates.dead_letter(record, reason) is Fate.RETRIED:
            return Unprocessable(reason)  # the DLQ refused: it comes back and is dead-lettered then
        summary["outcome"] = "dead_lettered"
        self._leave(intent)
        return None

    def _hold_back(self, receives: int) -> int:
        delay: int = HOLD_BACK_BASE_SECONDS * 2 ** max(receives - 1, 0)
        return min(delay, self._max_backoff)

    def _not_known_yet(self, record: SQSRecord, intent: _QueuedIntent, summary: dict[str, Any]) -> Exception | None:
        """Rokt's 404 for an update or delete: retried within the grace, off the waiting list meanwhile so
        newer intents do not wait for it (if one reaches Rokt first, this one is superseded when it comes
        back; an older create goes first); after the grace, Rokt's refusal stands."""
        if not self._within_grace(record, self._unknown_since(intent)):
            self._leave(intent)  # Rokt's refusal stands: its first 404 is forgotten
            return None
        unknown = EventNotKnownYet("Rokt does not know this event yet; retried for a while before it counts")
        summary.update(outcome=unknown.outcome, error=unknown.code)
        return self._retry(record, intent, unknown, summary, waiting=False)

    def _within_grace(self, record: SQSRecord, first_404: float | None) -> bool:
        """Within the grace of a 404, counted from Rokt's first 404 for the intent (receives before it,
        failing on an outage or handed over late by a backlog, never spend it) — or from this message's
        first receive if later: a message replayed from the DLQ starts a window of its own, whatever its
        dead-lettered copy left recorded. Not known (DynamoDB failing, no time left to ask, a message
        queued before intents had ids): retried — the horizon still bounds it."""
        if first_404 is None:
            return True
        try:
            first_receive = int(record.attributes.approximate_first_receive_timestamp) / 1000
        except (TypeError, ValueError, KeyError):
            first_receive = 0.0
        return self._wall_clock() - max(first_404, first_receive) < self._grace

    # --- the waiting list (best effort: an entry left behind stops holding others back once stale) ----
    def _leave(self, intent: _QueuedIntent | None) -> None:
        """Off the waiting list — bookkeeping, so only before the batch's deadline (``_has_time``): an
        entry left behind holds the event's newer intents back until it is stale, no longer."""
        if intent is None or not intent.intent_id:
            return
        if not self._has_time():
            logger.warning("no time left to take a done intent off the waiting list; it goes stale")
            return
        try:
            self._waiting.leave(intent.key)
        except DependencyUnavailable:
            logger.warning("an intent done with is still noted as waiting; intents behind it wait until it is stale")

    def _unknown_since(self, intent: _QueuedIntent) -> float | None:
        """Off the waiting list; when Rokt first answered 404 for it (None: not known, or no time left
        to ask — its entry then goes stale)."""
        if not intent.intent_id or not self._has_time():
            return None
        try:
            return self._waiting.unknown_since(intent.key)
        except DependencyUnavailable:
            logger.warning("a 404's first time was not recorded; retried")
            self._leave(intent)
            return None

    def _seen(self, intent: _QueuedIntent) -> None:
        if not intent.intent_id:
            return
        try:
            self._waiting.seen(intent.key)
        except DependencyUnavailable:
            logger.warning("a waiting intent's entry was not refreshed")


@dataclass(frozen=True)
class _QueuedIntent:
    """A queued request with what orders it among its event's intents."""

    request: EventRequest
    received_at: float
    intent_id: str  # empty for messages queued before intents were noted

    @classmethod
    def read(cls, record: SQSRecord, now: Callable[[], float]) -> _QueuedIntent:
        message = json.loads(record.body)
        request = EventRequest.from_dict(message["request"])
        received = message.get("receivedAt", message.get("queuedAt"))
        return cls(request, now() if received is None else float(received), str(message.get("intentId") or ""))

    @classmethod
    def named_by(cls, record: SQSRecord) -> _QueuedIntent | None:
        """The intent a message whose body cannot be read is for, from its attributes (the producer
        writes the account, the event and the intent id there too); None if they do not say."""
        try:
            attributes = record.message_attributes
        except (KeyError, TypeError):
            return None
        names = []
        for name in ("accountCode", "eventId", "intentId"):
            attribute = attributes[name]
            value = attribute.string_value if attribute is not None else None
            if not value:
                return None
            names.append(value)
        account_code, event_id, intent_id = names
        return cls(EventRequest(Action.DELETE, account_code, event_id, {"eventId": event_id}), 0.0, intent_id)

    @property
    def key(self) -> Intent:
        request = self.request
        return Intent(request.account_code, request.event_id, fingerprint(request), self.received_at, self.intent_id)
