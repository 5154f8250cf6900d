"""Exactly once per intent, in the order intents reached the bridge: the delivery use case run through
the event's state machine (:mod:`chalicelib.delivery.state`).

The same intent again (a Braze retry or duplicate) is answered from the state, Rokt is not called; a
different intent (update A → B, create → delete → create, A → B → A) reaches Rokt, one at a time per
event, so Rokt ends in the state of the last intent received; an intent older than the one Rokt has
(a spilled or queued one taken out of order) is ``superseded``, not sent; through the queue an intent
waits for every older one of its event. Rokt's refusals (4xx) and failures change nothing in the
state: a corrected re-send goes through, and a copy of the intent Rokt has is still a duplicate.

Every AWS step before Rokt starts only while the upstream deadline has not passed (one attempt's
worth left): a step that then hangs overruns it by at most one bounded AWS call, which the request's
completion reserve covers; the next step sees the deadline passed and the webhook is answered as a
timeout (Braze retries; with a queue behind, it is spilled), never after the budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.delivery.state import MAYBE, Applied, EventState, Intent, StateChanged, Step, decide
from chalicelib.errors import (
    BridgeError,
    DependencyUnavailable,
    InFlight,
    OlderIntentPending,
    RateLimited,
    RoktRejected,
    UpstreamTimeout,
)
from chalicelib.observability import logger
from chalicelib.rokt.events import refused_as_unknown

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib.clock import Deadline
    from chalicelib.delivery.models import EventRequest
    from chalicelib.delivery.state import EventStates

    UseCase = Callable[[EventRequest, Deadline], DeliveryOutcome]

IN_FLIGHT_RETRY_AFTER_SECONDS = 5
HOLD_BACK_SECONDS = 5
# A flight lasts until the upstream deadline, and this much more: the clocks of two containers may
# disagree by a second or two (NTP), and Rokt's answer to the last attempt comes back by then.
FLIGHT_MARGIN_SECONDS = 5.0
# The completion reserve (settings: 7 s) holds one bounded AWS call (wiring: ~6.5 s at worst) and this
# much more: upstream work that overran its deadline by more leaves a failed flight to expire.
LAND_OVERRUN_SECONDS = 0.5
# How often one delivery looks at its event's state again when another writer changed it meanwhile.
MAX_TURNS = 4


class BehindQueuedIntents(Exception):
    """Intents for this event wait in the delivery queue: this webhook must go behind them.
    ``after_rokt``: Rokt answered first (a 404 for an update whose create waits in the queue)."""

    def __init__(self, message: str, *, after_rokt: bool = False) -> None:
        super().__init__(message)
        self.after_rokt = after_rokt


def fingerprint(request: EventRequest) -> str:
    """What makes two webhooks the same intent: route, account, event and subscriptions."""
    text = json.dumps(request.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclasses.dataclass(frozen=True)
class _Attempt:
    """One delivery of one intent: what it asks, its time, and whether it came from the queue."""

    intent: Intent
    request: EventRequest
    deadline: Deadline

    @property
    def queued(self) -> bool:
        return bool(self.intent.intent_id)


class InOrderDeliverer:
    def __init__(
        self,
        run: UseCase,
        states: EventStates,
        *,
        wall_clock: Callable[[], float],
        new_id: Callable[[], str],
        queue_behind: bool = False,
    ) -> None:
        """``queue_behind``: direct mode with a queue behind it, where a webhook whose event has intents
        waiting in the queue goes behind them (BehindQueuedIntents) instead of overtaking them."""
        self._run = run
        self._states = states
        self._clock = wall_clock
        self._new_id = new_id
        self._queue_behind = queue_behind

    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
        *,
        intent_id: str = "",
    ) -> DeliveryOutcome:
        """``received_at``: when the webhook reached the bridge (a queued one: when the route received
        it), which orders intents for one event; ``intent_id``: a queued intent's id among its event's
        waiting intents (empty for a direct webhook). The Lambda context is not needed: a flight ends
        with the deadline."""
        intent = Intent(
            request.account_code,
            request.event_id,
            fingerprint(request),
            self._clock() if received_at is None else received_at,
            intent_id,
            request.action.value,
        )
        attempt = _Attempt(intent, request, deadline)
        started, state = self._first_look(attempt)
        if started:
            return self._send(state, attempt)
        for _ in range(MAX_TURNS):
            try:
                return self._step(state, attempt)
            except StateChanged as changed:
                state = changed.state
        raise self._in_flight(request)

    # --- the steps ------------------------------------------------------------------------------------
    def _first_look(self, attempt: _Attempt) -> tuple[bool, EventState]:
        """The event's state, and whether this intent's delivery started already: a direct webhook tries
        to start at once (an event the bridge never saw costs no read; a failed attempt returns the
        state it met)."""
        self._in_time(attempt.deadline)
        intent = attempt.intent
        if attempt.queued:
            return False, self._states.read(intent.account_code, intent.event_id)
        try:
            return True, self._states.start(EventState(), intent, self._new_id(), self._until(attempt))
        except StateChanged as changed:
            return False, changed.state

    def _step(self, state: EventState, attempt: _Attempt) -> DeliveryOutcome:
        intent, request, queued = attempt.intent, attempt.request, attempt.queued
        step = decide(state, intent, self._clock(), queued=queued, queue_behind=self._behind_queue(attempt))
        if step is Step.IN_FLIGHT:
            self._still_waiting(attempt)
            raise self._in_flight(request)
        if step is Step.HOLD_BACK:
            self._still_waiting(attempt)
            raise OlderIntentPending(
                "an older intent for this event is still waiting in the queue; this one goes after it",
                retry_after=HOLD_BACK_SECONDS,
            )
        if step is Step.QUEUE_BEHIND:
            raise BehindQueuedIntents("intents for this event wait in the delivery queue")
        if step is Step.DUPLICATE:
            self._leave(attempt)
            return _replayed(state)
        if step is Step.LATER_DUPLICATE:
            self._in_time(attempt.deadline)
            return _replayed(self._states.arrived_later(state, intent, leave_queue=queued))
        if step is Step.SUPERSEDED:
            self._leave(attempt)
            return superseded(request, state)
        self._in_time(attempt.deadline)
        state = self._states.start(state, intent, self._new_id(), self._until(attempt))
        return self._send(state, attempt)

    def _send(self, state: EventState, attempt: _Attempt) -> DeliveryOutcome:
        intent, request = attempt.intent, attempt.request
        # Rokt's call ends by the deadline; started before it, the flight's end fits the request's
        # reserve (one AWS call). Started after (a step before it overran), the flight expires instead.
        in_time = attempt.deadline.remaining() > 0
        try:
            outcome = self._run(request, attempt.deadline)
        except RoktRejected as exc:
            self._land(state, attempt, None, in_time=in_time)  # a refusal changes nothing: not remembered
            unknown = refused_as_unknown(request.operation, exc)
            if self._behind_queue(attempt) and unknown and self._waiting(intent, attempt.deadline):
                raise BehindQueuedIntents(
                    "Rokt does not know the event yet; its create waits in the queue", after_rokt=True
                ) from exc
            raise
        except (RateLimited, DependencyUnavailable):
            # Rokt refused it for now (429), or it never reached Rokt (no token: SSM or Rokt's token
            # endpoint failing): nothing changed there, so nothing is remembered — an older intent is
            # not superseded by it, and a retry of it is delivered again
            self._land(state, attempt, None, in_time=in_time)
            raise
        except BridgeError:
            # Rokt may have applied it (an answer lost, a 5xx after the change): Rokt holds this intent
            # or the one before, so no copy of either is a duplicate until one is delivered again
            self._land(
                state, attempt, Applied.maybe(intent.fingerprint, intent.received_at, intent.action), in_time=in_time
            )
            raise
        received = intent.received_at
        if state.applied is not None and state.applied.fingerprint == MAYBE + intent.fingerprint:
            received = max(received, state.applied.received_at)  # an older copy stands for the later one
        outcome = _with(outcome, received_at=received)
        applied = Applied(intent.fingerprint, received, outcome.to_dict(), intent.action)
        try:
            self._states.finish(state, intent, applied, leave_queue=True)
        except (StateChanged, DependencyUnavailable):
            # Rokt has it; the state could not say so: a copy arriving before the flight ends waits,
            # one after it is delivered again (the same event at Rokt: an update). Its message is done
            # with all the same: off the waiting list, while there is time to say so.
            logger.warning("delivered, but the delivery record could not be completed; the flight expires")
            if attempt.deadline.remaining() >= MIN_ATTEMPT_SECONDS:
                self._leave_quietly(attempt)
        return outcome

    def _land(self, state: EventState, attempt: _Attempt, applied: Applied | None, *, in_time: bool) -> None:
        """End a flight that failed (so a spilled copy or a retry may go at once), recording what Rokt may
        now hold (None: nothing changed), when the request's reserve still holds the call; else the
        flight expires (``_until``) and counts as ``Applied.maybe`` (``decide``). Only while the upstream
        work ended by its deadline, give or take ``LAND_OVERRUN_SECONDS``: a step bounded by its own
        timeouts rather than the deadline (an SSM read for the token) may overrun it, and the reserve
        holds one AWS call, not that overrun as well."""
        if not in_time or attempt.deadline.remaining() < -LAND_OVERRUN_SECONDS:
            return
        try:
            self._states.finish(state, attempt.intent, applied, leave_queue=False)
        except (StateChanged, DependencyUnavailable):
            logger.warning("a delivery's flight was not ended; it expires")

    def _behind_queue(self, attempt: _Attempt) -> bool:
        """A direct webhook (never a queued one: it is in the queue) goes behind its event's queued intents."""
        return self._queue_behind and not attempt.queued

    def _leave_quietly(self, attempt: _Attempt) -> None:
        try:
            self._leave(attempt)
        except DependencyUnavailable:
            logger.warning("a delivered intent is still noted as waiting; it holds others back until stale")

    def _leave(self, attempt: _Attempt) -> None:
        """A queued intent answered without reaching Rokt (a duplicate, superseded): its message is done."""
        if attempt.queued:
            self._states.leave(attempt.intent)

    def _waiting(self, intent: Intent, deadline: Deadline) -> bool:
        """Do intents for the event wait in the queue? Asked only while the request has time for the read
        (and the spill after it); else Rokt's refusal stands."""
        if deadline.remaining() < MIN_ATTEMPT_SECONDS:
            return False
        try:
            state = self._states.read(intent.account_code, intent.event_id)
        except DependencyUnavailable:
            return False  # cannot tell: Rokt's refusal stands
        now = self._clock()
        return any(w.live(now) for w in state.waiting)

    def _still_waiting(self, attempt: _Attempt) -> None:
        """A queued intent that waits its turn is still on the queue: its entry stays live (refreshed while
        the deadline allows a call; else the consumer's next look refreshes it)."""
        if attempt.queued and attempt.deadline.remaining() >= MIN_ATTEMPT_SECONDS:
            try:
                self._states.seen(attempt.intent)
            except DependencyUnavailable:
                logger.warning("a waiting intent's entry was not refreshed")

    # --- time ------------------------------------------------------------------------------------------
    @staticmethod
    def _in_time(deadline: Deadline) -> None:
        """A step before Rokt starts only while the upstream deadline has not passed."""
        if deadline.remaining() < MIN_ATTEMPT_SECONDS:
            raise UpstreamTimeout("not enough of the request's time was left to reach Rokt")

    def _until(self, attempt: _Attempt) -> float:
        """When this delivery's flight ends: Rokt is called only before the upstream deadline (every
        attempt, the token's included, ends by it), so with it, plus a margin for the clocks of two
        containers and for the last attempt's answer."""
        return self._clock() + max(attempt.deadline.remaining(), 0.0) + FLIGHT_MARGIN_SECONDS

    @staticmethod
    def _in_flight(request: EventRequest) -> InFlight:
        return InFlight(
            f"event {request.event_id!r} is being delivered right now; retry shortly for its result",
            retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
        )


def _replayed(state: EventState) -> DeliveryOutcome:
    """The first answer, again, marked as a duplicate."""
    if state.applied is None:
        raise ValueError("a duplicate answers from the applied intent")
    return _with(DeliveryOutcome.from_dict(state.applied.answer), duplicate=True)


def _with(outcome: DeliveryOutcome, **changes: Any) -> DeliveryOutcome:
    return dataclasses.replace(outcome, **changes)


def superseded(request: EventRequest, state: EventState) -> DeliveryOutcome:
    """The answer for an intent that arrived before the one Rokt already has: nothing is sent."""
    return DeliveryOutcome(
        status="superseded",
        action=request.action.value,
        account_code=request.account_code,
        event_id=request.event_id,
        upstream_status=0,
        attempts=0,
        received_at=state.applied.received_at if state.applied else None,
    )
