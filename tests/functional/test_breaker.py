"""The circuit breaker in front of Rokt: its states with an injected clock, what the spilling route
tells it (only an answer from Rokt closes it), then the breaker through the route against the Rokt
sandbox — opening at the threshold or on a 429 with Retry-After, one probe, a failed probe, a
duplicate answered from DynamoDB leaving it half-open."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from chalicelib.clock import Deadline
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.spill import BREAKER_OPEN, SpillingDeliverer
from chalicelib.errors import BridgeError, InFlight, RoktRejected, UpstreamFailed
from tests.conftest import Sandbox, post, seed_body
from tests.support.spilling import (
    COOLDOWN,
    CREATE,
    THRESHOLD,
    FakeClock,
    RecordingQueue,
    ScriptedDeliverer,
    outcome,
    rokt_event_calls,
)

if TYPE_CHECKING:
    from chalicelib.delivery.service import DeliveryOutcome
    from tests.conftest import LogCapture
    from tests.support.queues import QueuePair


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


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


# ── through the route, against the Rokt sandbox ─────────────────────────────────────────────────────


def test_breaker_opens_after_the_threshold_spills_at_once_then_one_probe_closes_it(
    spilling, queues: QueuePair, sandbox: Sandbox, breaker_clock: FakeClock, json_logs: LogCapture
):
    # Given Rokt down
    sandbox.fault(status=503, count=1000)

    # When a send of 10 webhooks arrives
    answers = [post(spilling, CREATE, seed_body(f"Event_{i}_user")) for i in range(10)]

    # Then all are queued; only the first THRESHOLD webhooks tried Rokt, the rest spilled at once
    assert {a.status_code for a in answers} == {202}
    reasons = [a.json_body["reason"] for a in answers]
    assert reasons == ["upstream_error"] * THRESHOLD + ["breaker_open"] * (10 - THRESHOLD)
    calls_while_open = rokt_event_calls(sandbox)
    post(spilling, CREATE, seed_body("Event_10_user"))
    assert rokt_event_calls(sandbox) == calls_while_open

    # When the cool-down passes and Rokt is back, one probe goes through and closes the breaker
    sandbox.clear_faults()
    breaker_clock.now += COOLDOWN + 1
    probe = post(spilling, CREATE, seed_body("Event_11_user"))
    after = post(spilling, CREATE, seed_body("Event_12_user"))

    assert probe.status_code == 200
    assert after.status_code == 200
    messages = json_logs.messages()
    assert messages.count("circuit breaker open") == 1
    assert messages.count("circuit breaker closed") == 1
    # and everything spilled is delivered from the queue, each event once
    queues.drain(spilling, 10)
    assert sorted(e["deliveries"] for e in sandbox.events()) == [1] * 13


def test_a_failed_probe_reopens_the_breaker(spilling, sandbox: Sandbox, breaker_clock: FakeClock):
    sandbox.fault(status=503, count=1000)
    for i in range(THRESHOLD):
        post(spilling, CREATE, seed_body(f"Event_{i}_user"))
    breaker_clock.now += COOLDOWN + 1

    probe = post(spilling, CREATE, seed_body("probe_user"))
    next_one = post(spilling, CREATE, seed_body("next_user"))

    assert probe.json_body["reason"] == "upstream_error"  # the probe tried Rokt
    assert next_one.json_body["reason"] == "breaker_open"  # and the breaker is open again


def test_a_rokt_429_with_retry_after_opens_the_breaker_at_once(spilling, sandbox: Sandbox):
    sandbox.fault(status=429, retryAfter="120", count=1000)

    first = post(spilling, CREATE, seed_body("a_user"))
    calls = rokt_event_calls(sandbox)
    second = post(spilling, CREATE, seed_body("b_user"))

    assert first.json_body["reason"] == "rate_limited"
    assert second.json_body["reason"] == "breaker_open"
    assert rokt_event_calls(sandbox) == calls


def test_a_duplicate_answered_from_dynamodb_does_not_close_a_half_open_breaker(
    spilling, sandbox: Sandbox, breaker_clock: FakeClock
):
    # Given a webhook delivered while Rokt was up, then Rokt down and the breaker open
    assert post(spilling, CREATE, seed_body("done_user")).status_code == 200
    sandbox.fault(status=503, count=1000)
    for i in range(THRESHOLD):
        post(spilling, CREATE, seed_body(f"Event_{i}_user"))
    breaker_clock.now += COOLDOWN + 1

    # When the first request after the cool-down is Braze retrying the delivered webhook
    duplicate = post(spilling, CREATE, seed_body("done_user"))
    probe = post(spilling, CREATE, seed_body("probe_user"))
    after = post(spilling, CREATE, seed_body("after_user"))

    # Then its answer from DynamoDB said nothing about Rokt: the next request was the probe, it
    # failed, and the one after it spilled at once without calling Rokt
    assert duplicate.json_body["duplicate"] is True
    assert probe.json_body["reason"] == "upstream_error"
    assert after.json_body["reason"] == "breaker_open"
