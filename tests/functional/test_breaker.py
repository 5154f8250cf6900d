"""The circuit breaker's states with an injected clock, and what the spilling route tells it: only an
answer from Rokt closes it."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from chalicelib.clock import Deadline
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.delivery.spill import BREAKER_OPEN, SpillingDeliverer
from chalicelib.errors import BridgeError, InFlight, RoktRejected, UpstreamFailed

THRESHOLD = 3
COOLDOWN = 30.0


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(THRESHOLD, COOLDOWN, clock=clock)


def opened(breaker: CircuitBreaker, clock: FakeClock) -> CircuitBreaker:
    for _ in range(THRESHOLD):
        assert breaker.allow()
        breaker.failed()
    return breaker


def half_open(breaker: CircuitBreaker, clock: FakeClock) -> CircuitBreaker:
    opened(breaker, clock)
    clock.now += COOLDOWN
    assert breaker.allow()  # the probe
    return breaker


def test_closed_lets_calls_through_and_failures_below_the_threshold_keep_it_closed(breaker: CircuitBreaker):
    for _ in range(THRESHOLD - 1):
        assert breaker.allow()
        breaker.failed()

    assert breaker.allow()


def test_a_success_resets_the_count_of_failures_in_a_row(breaker: CircuitBreaker):
    for _ in range(THRESHOLD - 1):
        breaker.failed()
    breaker.succeeded()
    for _ in range(THRESHOLD - 1):
        breaker.failed()

    assert breaker.allow()


def test_the_threshold_opens_it_until_the_cool_down_ends(breaker: CircuitBreaker, clock: FakeClock):
    opened(breaker, clock)

    assert not breaker.allow()
    clock.now += COOLDOWN - 0.001
    assert not breaker.allow()


def test_after_the_cool_down_one_probe_goes_and_the_others_wait_for_its_answer(
    breaker: CircuitBreaker, clock: FakeClock
):
    opened(breaker, clock)
    clock.now += COOLDOWN

    assert [breaker.allow() for _ in range(3)] == [True, False, False]


def test_a_successful_probe_closes_it(breaker: CircuitBreaker, clock: FakeClock):
    half_open(breaker, clock).succeeded()

    assert [breaker.allow() for _ in range(3)] == [True, True, True]


def test_a_failed_probe_opens_it_for_another_cool_down(breaker: CircuitBreaker, clock: FakeClock):
    half_open(breaker, clock).failed()

    assert not breaker.allow()
    clock.now += COOLDOWN - 0.001
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()


def test_a_retry_after_opens_it_at_once_for_at_least_that_long(breaker: CircuitBreaker, clock: FakeClock):
    breaker.failed(retry_after=120)

    clock.now += COOLDOWN
    assert not breaker.allow()
    clock.now += 120 - COOLDOWN
    assert breaker.allow()


def test_an_abandoned_probe_leaves_the_probe_to_the_next_request(breaker: CircuitBreaker, clock: FakeClock):
    half_open(breaker, clock).abandoned()

    assert [breaker.allow(), breaker.allow()] == [True, False]


def test_an_abandoned_call_while_closed_does_not_reset_the_failures(breaker: CircuitBreaker, clock: FakeClock):
    for _ in range(THRESHOLD - 1):
        breaker.failed()
    breaker.abandoned()
    breaker.failed()

    assert not breaker.allow()


# The spilling route: what it tells the breaker for each kind of answer.

REQUEST = EventRequest(Action.UPDATE, "brazetest", "Event_0001_user42", {"eventId": "Event_0001_user42"})


def outcome(status: Any = "delivered", duplicate: bool = False) -> DeliveryOutcome:
    return DeliveryOutcome(status, "update", "brazetest", "Event_0001_user42", 202, duplicate=duplicate)


class ScriptedDeliverer:
    """Answers each call with the next of ``answers`` (an outcome, or an error to raise)."""

    def __init__(self, *answers: DeliveryOutcome | BridgeError) -> None:
        self._answers = list(answers)
        self.calls = 0

    def deliver(
        self, request: EventRequest, deadline: Deadline, lambda_context: Any = None, received_at: float | None = None
    ) -> DeliveryOutcome:
        self.calls += 1
        answer = self._answers.pop(0)
        if isinstance(answer, BridgeError):
            raise answer
        return answer


class RecordingQueue:
    def __init__(self) -> None:
        self.queued = 0

    def deliver(
        self, request: EventRequest, deadline: Deadline, lambda_context: Any = None, received_at: float | None = None
    ) -> DeliveryOutcome:
        self.queued += 1
        return outcome("queued")


def route(breaker: CircuitBreaker, *answers: DeliveryOutcome | BridgeError) -> tuple[SpillingDeliverer, RecordingQueue]:
    queue = RecordingQueue()
    return SpillingDeliverer(ScriptedDeliverer(*answers), queue, breaker), queue  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [outcome(duplicate=True), outcome("superseded"), InFlight("in flight elsewhere", retry_after=5)],
    ids=["duplicate", "superseded", "in_flight"],
)
def test_an_answer_not_from_rokt_leaves_a_half_open_breaker_to_the_next_request(
    breaker: CircuitBreaker, clock: FakeClock, answer: DeliveryOutcome | BridgeError
):
    opened(breaker, clock)
    clock.now += COOLDOWN  # the route's next request is the probe
    spilling, queue = route(breaker, answer, UpstreamFailed("Rokt 503", 503), outcome())

    with pytest.raises(InFlight) if isinstance(answer, InFlight) else contextlib.nullcontext():
        spilling.deliver(REQUEST, Deadline(5.0))
    probe = spilling.deliver(REQUEST, Deadline(5.0))  # the next request probes Rokt, which is still down
    after = spilling.deliver(REQUEST, Deadline(5.0))

    assert (probe.reason, after.reason) == ("upstream_error", BREAKER_OPEN)
    assert queue.queued == 2


@pytest.mark.parametrize(
    "answer", [outcome(), RoktRejected(400, {"error": "validation_error"})], ids=["delivered", "refused"]
)
def test_an_answer_from_rokt_closes_a_half_open_breaker(
    breaker: CircuitBreaker, clock: FakeClock, answer: DeliveryOutcome | BridgeError
):
    opened(breaker, clock)
    clock.now += COOLDOWN
    spilling, _ = route(breaker, answer)

    with pytest.raises(RoktRejected) if isinstance(answer, RoktRejected) else contextlib.nullcontext():
        spilling.deliver(REQUEST, Deadline(5.0))

    assert [breaker.allow() for _ in range(3)] == [True, True, True]
