"""Direct mode with a queue behind it: a webhook that passed validation is never lost to an outage.

Braze retries a failed webhook 5 times in about 30 minutes, then drops it. So when delivering now
fails in a way that could succeed later (Rokt 5xx/429/timeout, the token endpoint, SSM or DynamoDB),
the request goes onto the delivery queue instead and Braze gets ``202 queued`` with the reason; the
queue consumer delivers it later through the same idempotency records, so Rokt still sees it once.
While the circuit breaker is open the route does not try Rokt at all: it spills in milliseconds.
Only when SQS refuses too does Braze get the original retryable error.

Order: while any intent for the event waits in the queue, a webhook for it does not overtake it: the
deliverer says so (``BehindQueuedIntents``) and it goes to the queue behind them (``202 queued``,
reason ``behind_queued_intent``). The same for Rokt's 404 to an update or delete whose create was
spilled meanwhile.

The breaker hears only Rokt: a delivery or a refusal closes it; a duplicate or ``superseded`` answer
(from DynamoDB), a webhook sent behind queued intents, or an in-flight one tells nothing about Rokt,
and a half-open breaker leaves its probe to the next request.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from chalicelib.delivery.in_order import BehindQueuedIntents
from chalicelib.errors import BridgeError, DependencyUnavailable, InFlight, RateLimited, RoktRejected
from chalicelib.observability import logger

if TYPE_CHECKING:
    from chalicelib.clock import Deadline
    from chalicelib.delivery.breaker import CircuitBreaker
    from chalicelib.delivery.models import EventRequest
    from chalicelib.delivery.queue import DeliveryQueue
    from chalicelib.delivery.service import Deliverer, DeliveryOutcome

BREAKER_OPEN = "breaker_open"
# A spill's SQS send is one bounded AWS call (~6.5 s at worst, wiring.AWS_CLIENT_CONFIG), paid from
# the request's completion reserve (7 s). It starts only while the upstream deadline is at most this
# far behind, so it ends within the request budget (25 s < API Gateway's 29 s) even after a hung
# record delete: 18 s upstream + 6.5 s delete + 6.5 s send was 31 s. Later, Braze retries instead.
SPILL_GRACE_SECONDS = 0.5
BEHIND_QUEUED_INTENT = "behind_queued_intent"


class SpillingDeliverer:
    def __init__(
        self,
        deliverer: Deliverer,
        queue: DeliveryQueue,
        breaker: CircuitBreaker,
    ) -> None:
        self._deliverer = deliverer
        self._queue = queue
        self._breaker = breaker

    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
    ) -> DeliveryOutcome:
        if not self._breaker.allow():
            return self._spill(request, deadline, received_at, BREAKER_OPEN, None)
        try:
            outcome = self._deliverer.deliver(request, deadline, lambda_context, received_at)
        except BehindQueuedIntents as behind:
            if behind.after_rokt:
                self._breaker.succeeded()  # Rokt answered, with a 404 for an event whose create is queued
            else:
                self._breaker.abandoned()  # not sent: no word on Rokt's health
            return self._spill(request, deadline, received_at, BEHIND_QUEUED_INTENT, None)
        except InFlight:
            self._breaker.abandoned()  # another copy is being delivered: its answer comes on retry
            raise
        except RoktRejected:
            self._breaker.succeeded()  # Rokt answered, with a refusal
            raise
        except BridgeError as exc:
            if exc.outcome != "retryable_failure":
                self._breaker.abandoned()
                raise
            self._breaker.failed(exc.retry_after if isinstance(exc, RateLimited) else None)
            return self._spill(request, deadline, received_at, exc.code, exc)
        except BaseException:
            self._breaker.abandoned()
            raise
        if outcome.reached_rokt and not outcome.duplicate:
            self._breaker.succeeded()
        else:
            self._breaker.abandoned()  # answered from DynamoDB: no word on Rokt's health
        return outcome

    def _spill(
        self,
        request: EventRequest,
        deadline: Deadline,
        received_at: float | None,
        reason: str,
        cause: BridgeError | None,
    ) -> DeliveryOutcome:
        if cause is not None and deadline.remaining() < -SPILL_GRACE_SECONDS:
            logger.warning("too late in the request budget to spill a webhook", extra={"reason": reason})
            raise cause
        try:
            outcome = self._queue.deliver(request, deadline, received_at=received_at)
        except DependencyUnavailable:
            logger.warning("could not spill a webhook to the delivery queue", extra={"reason": reason})
            if cause is not None:
                raise cause from None  # SQS refused too: Braze retries, as before spilling existed
            raise
        return dataclasses.replace(outcome, reason=reason)
