"""Intents for one event in order, without IO: the state machine's transition table (``decide``), the
spilling route sending a webhook behind the intents that wait in the queue (and what that tells its
breaker), and a spill noting its intent only while the request has time for it. The functional tests
(test_queue, test_spill, test_idempotency) run the real thing on moto."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from chalicelib.clock import Deadline
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.in_order import BehindQueuedIntents, InOrderDeliverer, fingerprint
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.queue import DeliveryQueue
from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.delivery.spill import BEHIND_QUEUED_INTENT, SpillingDeliverer
from chalicelib.delivery.state import (
    MAYBE,
    WAITING_STALE_SECONDS,
    Applied,
    EventState,
    EventStates,
    Flight,
    Intent,
    StateChanged,
    Step,
    Waiting,
    decide,
)
from chalicelib.errors import DependencyUnavailable, RateLimited, RoktRejected, UpstreamTimeout
from tests.simulation.dynamodb import DynamoDbModel
from tests.support.spilling import RecordingQueue, ScriptedDeliverer

NOW = 10_000.0
A, B = "fingerprint-a", "fingerprint-b"


def intent(fingerprint: str = A, received_at: float = NOW, intent_id: str = "") -> Intent:
    return Intent("brazetest", "Event_1", fingerprint, received_at, intent_id)


def state(
    applied: tuple[str, float] | None = None,
    flight_until: float | None = None,
    waiting: tuple[tuple[str, float, float], ...] = (),
) -> EventState:
    return EventState(
        version=1,
        exists=True,
        applied=Applied(applied[0], applied[1], {}) if applied else None,
        flight=Flight(B, NOW - 1, "other", flight_until) if flight_until is not None else None,
        waiting=tuple(Waiting(*entry) for entry in waiting),
    )


@pytest.mark.parametrize(
    ("current", "mine", "queued", "queue_behind", "step"),
    [
        (EventState(), intent(), False, True, Step.DELIVER),  # an event never seen
        (state(applied=(A, NOW - 5)), intent(A, NOW - 9), False, False, Step.DUPLICATE),  # an older copy
        (state(applied=(A, NOW - 5)), intent(A), False, False, Step.LATER_DUPLICATE),  # a later copy
        (state(applied=(B, NOW - 5)), intent(A), False, False, Step.DELIVER),  # a newer intent
        (state(applied=(B, NOW - 5)), intent(A, NOW - 9), False, False, Step.SUPERSEDED),  # an older one
        # Rokt may have an intent (its answer was lost): no copy of it is a duplicate, an older intent is
        # superseded by it, and an older copy of it goes again (seed 119: it was superseded by itself)
        (state(applied=(MAYBE + A, NOW - 5)), intent(A), False, False, Step.DELIVER),
        (state(applied=(MAYBE + B, NOW - 5)), intent(A, NOW - 9), False, False, Step.SUPERSEDED),
        (state(applied=(MAYBE + A, NOW - 5)), intent(A, NOW - 9), False, False, Step.DELIVER),
        # an update Rokt may have, over an older create: delivered, for if the create never got there, the
        # update did not either (seed 191: the event was lost); an older update is still superseded
        (
            EventState(1, True, Applied(MAYBE + B, NOW - 5, {}, "update")),
            Intent("brazetest", "Event_1", A, NOW - 9, "", "create"),
            False,
            False,
            Step.DELIVER,
        ),
        (
            EventState(1, True, Applied(MAYBE + B, NOW - 5, {}, "update")),
            Intent("brazetest", "Event_1", A, NOW - 9, "", "update"),
            False,
            False,
            Step.SUPERSEDED,
        ),
        (  # once Rokt confirmed an intent for the event, its create got there: superseded (seed 7)
            EventState(1, True, Applied(MAYBE + B, NOW - 5, {}, "update"), confirmed=True),
            Intent("brazetest", "Event_1", A, NOW - 9, "", "create"),
            False,
            False,
            Step.SUPERSEDED,
        ),
        # a flight that ended unfinished counts as maybe applied: a copy of the older applied intent,
        # received before the flight's, is superseded by it (not answered as a duplicate)
        (state(applied=(A, NOW - 5), flight_until=NOW - 1), intent(A, NOW - 3), False, False, Step.SUPERSEDED),
        (state(flight_until=NOW + 1), intent(), False, False, Step.IN_FLIGHT),
        (state(flight_until=NOW - 1), intent(), False, False, Step.DELIVER),  # a flight that ended
        # through the queue: after every older intent still waiting, never behind a newer one
        (state(waiting=(("w1", NOW - 9, NOW),)), intent(received_at=NOW, intent_id="w2"), True, False, Step.HOLD_BACK),
        (state(waiting=(("w1", NOW, NOW),)), intent(received_at=NOW, intent_id="w0"), True, False, Step.DELIVER),
        (state(waiting=(("w1", NOW + 1, NOW),)), intent(received_at=NOW, intent_id="w2"), True, False, Step.DELIVER),
        # an entry not seen for longer than any backoff belongs to a message that is gone
        (
            state(waiting=(("w1", NOW - 9, NOW - WAITING_STALE_SECONDS),)),
            intent(intent_id="w2"),
            True,
            False,
            Step.DELIVER,
        ),
        # direct, with a queue behind: behind any waiting intent, even one noted as newer
        (state(waiting=(("w1", NOW + 1, NOW),)), intent(), False, True, Step.QUEUE_BEHIND),
        (state(waiting=(("w1", NOW + 1, NOW),)), intent(), False, False, Step.DELIVER),
    ],
)
def test_the_transition_table(current: EventState, mine: Intent, queued: bool, queue_behind: bool, step: Step):
    assert decide(current, mine, NOW, queued=queued, queue_behind=queue_behind) is step


def request(action: Action) -> EventRequest:
    return EventRequest(action, "brazetest", "Event_0001_user42", {"eventId": "Event_0001_user42"})


def route(*answers: DeliveryOutcome | Exception, threshold: int = 3) -> tuple[SpillingDeliverer, CircuitBreaker]:
    breaker = CircuitBreaker(threshold, 30.0, clock=lambda: 0.0)
    deliverer = ScriptedDeliverer(*answers)
    return SpillingDeliverer(deliverer, RecordingQueue(), breaker), breaker  # type: ignore[arg-type]


@pytest.mark.parametrize("after_rokt", [False, True], ids=["before-rokt", "rokt-404"])
def test_a_webhook_whose_event_has_intents_waiting_in_the_queue_is_queued_behind_them(after_rokt: bool):
    spilling, breaker = route(BehindQueuedIntents("intents wait", after_rokt=after_rokt), threshold=1)

    answer = spilling.deliver(request(Action.UPDATE), Deadline(5.0), None, 1_000.0)

    assert (answer.status, answer.reason) == ("queued", BEHIND_QUEUED_INTENT)
    assert breaker.allow()  # neither case is a Rokt failure


class RecordingSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send_message(self, **message: object) -> dict[str, str]:
        self.sent.append(message)
        return {"MessageId": str(len(self.sent))}


class RecordingWaitingList:
    def __init__(self) -> None:
        self.noted: list[Intent] = []
        self.left: list[Intent] = []

    def wait(self, intent: Intent) -> None:
        self.noted.append(intent)

    def leave(self, intent: Intent) -> None:
        self.left.append(intent)


class RefusingSqs:
    def send_message(self, **_: object) -> dict[str, str]:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")


# noting costs one bounded AWS call before the send (its removal, should the send fail, runs only while
# the request still has time): with less than that call's reserve left, the intent is queued unnoted
@pytest.mark.parametrize(("left", "noted"), [(5.0, True), (1.5, True), (0.5, False)])
def test_a_spill_notes_its_intent_only_while_the_request_has_time_for_it(left: float, noted: bool):
    sqs, waiting = RecordingSqs(), RecordingWaitingList()
    queue = DeliveryQueue(lambda: sqs, "q", waiting=waiting, note_reserve_seconds=1.0)  # type: ignore[arg-type,return-value]

    answer = queue.deliver(request(Action.CREATE), Deadline(left), None, 1_000.0)

    assert answer.status == "queued"
    assert len(sqs.sent) == 1  # queued either way: the webhook is never lost
    assert bool(waiting.noted) is noted
    if noted:  # noted with when it reached the bridge, not when it was noted
        assert waiting.noted[0].received_at == 1_000.0


def test_an_intent_sqs_refused_is_taken_off_the_waiting_list_it_was_noted_on():
    # noted, then not queued: left noted, it would hold its event's later intents back until it is stale
    waiting = RecordingWaitingList()
    queue = DeliveryQueue(RefusingSqs, "q", waiting=waiting, note_reserve_seconds=1.0)  # type: ignore[arg-type]

    with pytest.raises(DependencyUnavailable):
        queue.deliver(request(Action.CREATE), Deadline(5.0), None, 1_000.0)

    assert waiting.left == waiting.noted != []


class RefusingQueue:
    """SQS refusing every send."""

    def __init__(self) -> None:
        self.sends = 0

    def deliver(self, request: EventRequest, deadline: Deadline, received_at: float | None = None) -> DeliveryOutcome:
        self.sends += 1
        raise DependencyUnavailable("the delivery queue (SQS) is unavailable")


def test_sqs_refusing_a_webhook_sent_behind_queued_intents_is_not_a_rokt_failure():
    queue = RefusingQueue()
    breaker = CircuitBreaker(1, 30.0, clock=lambda: 0.0)  # one Rokt failure would open it
    deliverer = ScriptedDeliverer(BehindQueuedIntents("intents wait"))
    spilling = SpillingDeliverer(deliverer, queue, breaker)  # type: ignore[arg-type]

    with pytest.raises(DependencyUnavailable):
        spilling.deliver(request(Action.UPDATE), Deadline(5.0), None, 1_000.0)

    assert queue.sends == 1  # one spill, not a second one as if Rokt had failed
    assert breaker.allow()  # Rokt was never called: the breaker stays closed


def refused_404(_request: EventRequest, _deadline: Deadline) -> DeliveryOutcome:
    raise RoktRejected(404, {"message": "no such event"})


@pytest.mark.parametrize("queued", [False, True], ids=["direct", "from-the-queue"])
def test_a_404_behind_queued_intents_sends_a_direct_webhook_behind_them_and_leaves_a_queued_one_to_its_consumer(
    queued: bool,
):
    # Given an event with a newer intent waiting in the delivery queue (the state machine on the simulator's
    # DynamoDB model), and a deliverer whose direct webhooks go behind queued intents (spill mode)
    dynamodb = DynamoDbModel()
    dynamodb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    states = EventStates(dynamodb, "t", 3_600, clock=lambda: NOW)  # type: ignore[arg-type]
    states.wait(Intent("brazetest", "Event_0001_user42", A, NOW + 10, "queued-later"))
    deliverer = InOrderDeliverer(refused_404, states, wall_clock=lambda: NOW, new_id=lambda: "me", queue_behind=True)

    # When an update Rokt does not know yet (404) is delivered directly, or by the queue's consumer
    def deliver() -> DeliveryOutcome:
        return deliverer.deliver(request(Action.UPDATE), Deadline(10.0), None, NOW, intent_id="mine" if queued else "")

    # Then a direct webhook goes behind the queued intent (the spill queues it); a queued one is the
    # consumer's to retry within its grace — never "behind queued intents", which it already is
    if queued:
        with pytest.raises(RoktRejected):
            deliver()
    else:
        with pytest.raises(BehindQueuedIntents):
            deliver()


@pytest.mark.parametrize(
    "failure",
    [
        RateLimited("Rokt is rate-limiting the bridge", retry_after=5),
        DependencyUnavailable("Rokt token endpoint answered HTTP 500"),  # no token: Rokt never called
    ],
    ids=["rokt-429", "no-token"],
)
def test_an_intent_that_changed_nothing_at_rokt_is_not_remembered_so_an_older_one_still_goes_through(
    failure: Exception,
):
    # Given an update that reached the bridge at NOW and never changed Rokt (429, or no token to send it)
    dynamodb = DynamoDbModel()
    dynamodb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    states = EventStates(dynamodb, "t", 3_600, clock=lambda: NOW)  # type: ignore[arg-type]
    answers: list[Exception | None] = [failure, None]
    sent: list[Action] = []

    def rokt(request: EventRequest, _deadline: Deadline) -> DeliveryOutcome:
        sent.append(request.action)
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return DeliveryOutcome("delivered", request.action.value, request.account_code, request.event_id, 202, 1)

    deliverer = InOrderDeliverer(rokt, states, wall_clock=lambda: NOW, new_id=lambda: "me")
    with pytest.raises(type(failure)):
        deliverer.deliver(request(Action.UPDATE), Deadline(10.0), None, NOW)

    # When a delete that reached the bridge just before it (its retry, say) is delivered
    outcome = deliverer.deliver(request(Action.DELETE), Deadline(10.0), None, NOW - 1)

    # Then it goes to Rokt: the update changed nothing there, so it supersedes nothing
    assert (outcome.status, sent) == ("delivered", [Action.UPDATE, Action.DELETE])


def model_states() -> EventStates:
    dynamodb = DynamoDbModel()
    dynamodb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    return EventStates(dynamodb, "t", 3_600, clock=lambda: NOW)  # type: ignore[arg-type]


def delivered(request: EventRequest, _deadline: Deadline) -> DeliveryOutcome:
    return DeliveryOutcome("delivered", request.action.value, request.account_code, request.event_id, 202, 1)


def test_an_older_copy_delivered_in_place_of_its_own_maybe_keeps_the_later_arrival():
    # Given Rokt may have update A received at NOW (its landing failed), and its older copy (NOW - 2)
    states = model_states()
    first = Intent("brazetest", "Event_0001_user42", fingerprint(request(Action.UPDATE)), NOW, "", "update")
    states.finish(
        states.start(EventState(), first, "x", NOW + 30),
        first,
        Applied.maybe(first.fingerprint, NOW, "update"),
        leave_queue=False,
    )
    deliverer = InOrderDeliverer(delivered, states, wall_clock=lambda: NOW, new_id=lambda: "me")

    # When the older copy is delivered in its place
    deliverer.deliver(request(Action.UPDATE), Deadline(10.0), None, NOW - 2)

    # Then Rokt's state stands for the later copy: an intent received between the two is older than it
    applied = states.read("brazetest", "Event_0001_user42").applied
    assert applied is not None
    assert (applied.fingerprint, applied.received_at) == (first.fingerprint, NOW)


def test_a_confirmed_delete_means_the_event_no_longer_exists_at_rokt():
    states = model_states()
    intent = Intent("brazetest", "Event_1", A, NOW, "", "create")
    created = states.finish(
        states.start(EventState(), intent, "x", NOW + 30), intent, Applied(A, NOW, {}, "create"), leave_queue=False
    )
    assert states.read("brazetest", "Event_1").confirmed
    delete = Intent("brazetest", "Event_1", B, NOW + 1, "", "delete")
    states.finish(
        states.start(created, delete, "x", NOW + 30), delete, Applied(B, NOW + 1, {}, "delete"), leave_queue=False
    )

    assert not states.read("brazetest", "Event_1").confirmed  # an older create under a maybe update goes again


def test_the_first_delivery_of_an_event_with_waiting_entries_is_taken_by_one_copy_only():
    # the item exists (an intent was noted) but was never delivered: two copies read it at version 0
    states = model_states()
    states.wait(Intent("brazetest", "Event_1", A, NOW - 1, "w1"))
    seen = states.read("brazetest", "Event_1")
    states.start(seen, Intent("brazetest", "Event_1", A, NOW, "", "create"), "first", NOW + 30)

    with pytest.raises(StateChanged):
        states.start(seen, Intent("brazetest", "Event_1", B, NOW, "", "create"), "second", NOW + 30)


def test_a_queued_duplicate_leaves_the_waiting_list():
    states = model_states()
    first = Intent("brazetest", "Event_0001_user42", fingerprint(request(Action.CREATE)), NOW - 5, "", "create")
    states.finish(
        states.start(EventState(), first, "x", NOW + 30),
        first,
        Applied(
            first.fingerprint,
            NOW - 5,
            {
                "status": "delivered",
                "action": "create",
                "accountCode": "brazetest",
                "eventId": "Event_0001_user42",
                "upstreamStatus": 202,
            },
            "create",
        ),
        leave_queue=False,
    )
    states.wait(Intent("brazetest", "Event_0001_user42", first.fingerprint, NOW - 6, "copy"))
    deliverer = InOrderDeliverer(delivered, states, wall_clock=lambda: NOW, new_id=lambda: "me")

    outcome = deliverer.deliver(request(Action.CREATE), Deadline(10.0), None, NOW - 6, intent_id="copy")

    assert outcome.duplicate
    assert states.read("brazetest", "Event_0001_user42").waiting == ()


def test_a_flight_lasts_as_long_as_the_rokt_call_it_covers_and_a_margin():
    states = model_states()
    until: list[float] = []

    def rokt(request: EventRequest, deadline: Deadline) -> DeliveryOutcome:
        flight = states.read(request.account_code, request.event_id).flight
        until.append(flight.until if flight else 0.0)
        return delivered(request, deadline)

    InOrderDeliverer(rokt, states, wall_clock=lambda: NOW, new_id=lambda: "me").deliver(
        request(Action.CREATE), Deadline(10.0), None, NOW
    )

    assert until
    assert until[0] >= NOW + 10.0 + 4.0  # the call's whole deadline, plus the margin for clocks


def test_a_waiting_entry_keeps_when_its_intent_reached_the_bridge_not_when_it_was_noted():
    states = model_states()  # its clock says NOW
    states.wait(Intent("brazetest", "Event_1", A, NOW - 100, "w1"))

    [entry] = states.read("brazetest", "Event_1").waiting
    assert (entry.received_at, entry.seen_at) == (NOW - 100, NOW)


@pytest.mark.parametrize(("overrun", "landed"), [(0.0, True), (0.4, True), (0.6, False), (3.5, False)])
def test_a_failed_delivery_ends_its_flight_only_when_its_upstream_steps_ended_within_half_a_second_of_the_deadline(
    overrun: float, landed: bool
):
    """Simulation seed 2539: the token's SSM read (an AWS call, bounded by its own timeouts, not by the
    deadline) ran 3.5 s past the upstream deadline; ending the flight then took the completion reserve's
    AWS call (7 s: one call's ~6.5 s and half a second) on top, and the answer left after the budget."""
    states = model_states()
    now = [0.0]

    def slow_token(request: EventRequest, deadline: Deadline) -> DeliveryOutcome:
        now[0] += 5.0 + overrun
        raise UpstreamTimeout("not enough of the request's time was left to reach Rokt")

    deliverer = InOrderDeliverer(slow_token, states, wall_clock=lambda: NOW, new_id=lambda: "me")
    with pytest.raises(UpstreamTimeout):
        deliverer.deliver(request(Action.CREATE), Deadline(5.0, clock=lambda: now[0]), None, NOW)

    # past the margin the flight is not ended (no AWS call past the reserve): it expires, as one started
    # late does
    assert (states.read("brazetest", "Event_0001_user42").flight is None) is landed


def test_the_first_404_of_an_intent_is_kept_until_its_message_is_done_and_its_item_still_expires():
    dynamodb = DynamoDbModel()
    dynamodb.create_table(TableName="t", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    now = [NOW]
    states = EventStates(dynamodb, "t", 3_600, clock=lambda: now[0])  # type: ignore[arg-type]
    queued = Intent("brazetest", "Event_0001_user42", fingerprint(request(Action.UPDATE)), NOW, "i1", "update")

    assert states.unknown_since(queued) == NOW
    now[0] += 600
    assert states.unknown_since(queued) == NOW  # the first 404's time, not the latest

    [item] = dynamodb.scan(TableName="t")["Items"]
    assert "expiration" in item  # an item the record created expires like any other
    states.leave(queued)
    [item] = dynamodb.scan(TableName="t")["Items"]
    assert not [name for name in item if name.startswith(("u_", "w_"))]  # done with: forgotten

    # and a delivered one forgets it in the write that records its delivery
    states.unknown_since(queued)
    flight = states.start(states.read("brazetest", "Event_0001_user42"), queued, "me", NOW + 30)
    states.finish(flight, queued, Applied(queued.fingerprint, NOW, {}, "update"), leave_queue=True)
    [item] = dynamodb.scan(TableName="t")["Items"]
    assert not [name for name in item if name.startswith(("u_", "w_"))]
