"""The delivery queue: what it is (names, batch size, concurrency, retention, redrive) and its producer —
queued mode's intake (one SQS send per webhook, answered 202 at once) and direct mode's spill (see
spill). Its consumer is :mod:`chalicelib.delivery.consumer`.

Order: a standard queue hands messages over in any order, so each queued intent is put on its event's
waiting list (:mod:`chalicelib.delivery.state`, with when it reached the bridge) before it is sent,
and taken off when its message is done with (see the consumer).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from chalicelib.delivery.in_order import fingerprint
from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.delivery.state import Intent
from chalicelib.errors import DependencyUnavailable
from chalicelib.observability import logger
from chalicelib.settings import AWS_COMPLETION_RESERVE_SECONDS
from chalicelib.sqs import send_json, stage_queue_names

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.clock import Deadline
    from chalicelib.delivery.models import EventRequest
    from chalicelib.delivery.state import EventStates

# The knobs that keep the consumer under Rokt's rate: at most BATCH_SIZE x MAX_CONCURRENCY in flight.
BATCH_SIZE = 10
MAX_CONCURRENCY = 5
MAX_RECEIVES = 1000  # SQS's ceiling: the age horizon decides dead letters, not the receive count
# Queue retention: the horizon, plus time for an operator to notice and act (alarm on the oldest age).
RETENTION_SECONDS = 4 * 86_400


def delivery_queue_names(stage: str) -> tuple[str, str]:
    """The stage's delivery queue and its DLQ."""
    return stage_queue_names("deliveries", stage)


class DeliveryQueue:
    """The producer side: one SQS message per validated request, put first on its event's waiting list.
    The SQS client comes from ``sqs`` on first use, so a direct-mode container that never spills never
    builds it (cold start)."""

    def __init__(
        self,
        sqs: Callable[[], SQSClient],
        queue_url: str,
        *,
        clock: Callable[[], float] = time.time,
        waiting: EventStates | None = None,
        note_reserve_seconds: float = AWS_COMPLETION_RESERVE_SECONDS,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """``note_reserve_seconds``: one bounded AWS call, the request's reserve after its upstream
        deadline; a note is taken only while the deadline is at least that far (the note ends before
        it, the send within the reserve), so noting never pushes an answer past the request's budget."""
        self._sqs = sqs
        self._queue_url = queue_url
        self._clock = clock
        self._waiting = waiting
        self._note_reserve = note_reserve_seconds
        self._new_id = new_id

    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
    ) -> DeliveryOutcome:
        """Queue ``request``: no dedupe here (the consumer's delivery records do it). ``receivedAt``
        (when the webhook reached the bridge) orders it among intents for its event."""
        now = self._clock()
        received = now if received_at is None else received_at
        intent = Intent(request.account_code, request.event_id, fingerprint(request), received, self._new_id())
        noted = self._note(intent, deadline)
        try:
            send_json(
                self._sqs(),
                self._queue_url,
                {"request": request.to_dict(), "queuedAt": now, "receivedAt": received, "intentId": intent.intent_id},
                # also in the attributes: a consumer that cannot read the body still takes the intent
                # off its event's waiting list
                {"accountCode": request.account_code, "eventId": request.event_id, "intentId": intent.intent_id},
                "delivery queue",
            )
        except DependencyUnavailable:
            if noted:
                self._unnote(intent, deadline)
            raise
        return DeliveryOutcome(
            status="queued",
            action=request.action.value,
            account_code=request.account_code,
            event_id=request.event_id,
            upstream_status=0,
            attempts=0,
        )

    def _note(self, intent: Intent, deadline: Deadline) -> bool:
        """Note the intent as waiting. DynamoDB down (one of the reasons to spill), or the request's
        time spent (a spill after Rokt timed out), must not lose the webhook or its answer: it is
        queued un-noted — still ordered against what Rokt has by its arrival time, and a 404 for an
        update or delete is retried for a while (UNKNOWN_EVENT_GRACE_SECONDS) — but intents after it
        cannot wait for it."""
        if self._waiting is None:
            return False
        # the note, then the send: two bounded AWS calls, the second within the reserve
        if deadline.remaining() < self._note_reserve:
            logger.warning("queued an intent without noting it: the request's time is spent")
            return False
        try:
            self._waiting.wait(intent)
        except DependencyUnavailable:
            logger.warning("queued an intent without noting it among its event's waiting intents")
            return False
        return True

    def _unnote(self, intent: Intent, deadline: Deadline) -> None:
        """The send failed: take the note back while the request has the time (the send ended before the
        deadline); else it stays until it is stale (``state.WAITING_STALE_SECONDS``), holding the event's
        later queued intents back that long at most."""
        if self._waiting is None:
            return
        if deadline.remaining() < 0:
            logger.warning("an intent not queued stays noted until it is stale: the request's time is spent")
            return
        try:
            self._waiting.leave(intent)
        except DependencyUnavailable:
            logger.warning("an intent not queued stays noted until it is stale")
