"""The spilling route keeps intents for one event in order: it sends a webhook behind the intents that
wait in the queue, and does not turn Rokt's 404 for an update or delete whose create was spilled
meanwhile into a refusal; a spill notes its intent only while the request has time for it.
In-memory fakes; the functional tests run the real thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chalicelib.clock import Deadline
from chalicelib.delivery.breaker import CircuitBreaker
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.queue import DeliveryQueue
from chalicelib.delivery.spill import BEHIND_QUEUED_INTENT, SpillingDeliverer
from chalicelib.errors import DependencyUnavailable, RoktRejected
from tests.support.spilling import RecordingQueue, ScriptedDeliverer, outcome

if TYPE_CHECKING:
    from chalicelib.delivery.service import DeliveryOutcome


class FakePending:
    """Answers ``waiting_before`` from a script: whether an older intent waits, call after call."""

    def __init__(self, *waiting: bool) -> None:
        self._waiting = list(waiting)

    def waiting_before(self, account_code: str, event_id: str, received_at: float, intent_id: str = "") -> bool:
        return self._waiting.pop(0)


def request(action: Action) -> EventRequest:
    return EventRequest(action, "brazetest", "Event_0001_user42", {"eventId": "Event_0001_user42"})


def route(pending: FakePending, *answers: DeliveryOutcome | Exception) -> tuple[SpillingDeliverer, ScriptedDeliverer]:
    deliverer = ScriptedDeliverer(*answers)  # type: ignore[arg-type]
    breaker = CircuitBreaker(3, 30.0, clock=lambda: 0.0)
    return SpillingDeliverer(deliverer, RecordingQueue(), breaker, pending), deliverer  # type: ignore[arg-type]


def test_a_webhook_for_an_event_with_intents_waiting_in_the_queue_goes_behind_them():
    spilling, deliverer = route(FakePending(True), outcome())

    answer = spilling.deliver(request(Action.UPDATE), Deadline(5.0), None, 1_000.0)

    assert (answer.status, answer.reason, deliverer.calls) == ("queued", BEHIND_QUEUED_INTENT, 0)


@pytest.mark.parametrize("action", [Action.UPDATE, Action.DELETE])
def test_a_404_for_an_update_or_delete_whose_create_was_spilled_meanwhile_is_queued_behind_it(action: Action):
    # nothing waited when it looked; by Rokt's 404, the create had been spilled
    spilling, _ = route(FakePending(False, True), RoktRejected(404, {"error": "event_not_found"}))

    answer = spilling.deliver(request(action), Deadline(5.0), None, 1_000.0)

    assert (answer.status, answer.reason) == ("queued", BEHIND_QUEUED_INTENT)


@pytest.mark.parametrize(
    ("action", "status", "waiting"),
    [(Action.UPDATE, 404, False), (Action.CREATE, 404, True), (Action.UPDATE, 400, True)],
    ids=["nothing-waits", "create", "not-404"],
)
def test_other_refusals_stand(action: Action, status: int, waiting: bool):
    spilling, _ = route(FakePending(False, waiting), RoktRejected(status, {"error": "x"}))

    with pytest.raises(RoktRejected):
        spilling.deliver(request(action), Deadline(5.0), None, 1_000.0)


class RecordingSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send_message(self, **message: object) -> dict[str, str]:
        self.sent.append(message)
        return {"MessageId": str(len(self.sent))}


class RecordingPending:
    def __init__(self) -> None:
        self.noted: list[str] = []

    def add(self, account_code: str, event_id: str, intent_id: str, received_at: float) -> None:
        self.noted.append(intent_id)


# noting costs up to two bounded AWS calls (the note, and its removal should the send fail) on top of
# the send's own reserve: with 1.5 s left and 1 s per call, a note could push the answer past its budget
@pytest.mark.parametrize(("left", "noted"), [(5.0, True), (1.5, False), (0.5, False)])
def test_a_spill_notes_its_intent_only_while_the_request_has_time_for_it(left: float, noted: bool):
    sqs, pending = RecordingSqs(), RecordingPending()
    queue = DeliveryQueue(lambda: sqs, "q", pending=pending, note_reserve_seconds=1.0)  # type: ignore[arg-type,return-value]

    answer = queue.deliver(request(Action.CREATE), Deadline(left), None, 1_000.0)

    assert answer.status == "queued"
    assert len(sqs.sent) == 1  # queued either way: the webhook is never lost
    assert bool(pending.noted) is noted


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
    spilling = SpillingDeliverer(ScriptedDeliverer(), queue, breaker, FakePending(True))  # type: ignore[arg-type]

    with pytest.raises(DependencyUnavailable):
        spilling.deliver(request(Action.UPDATE), Deadline(5.0), None, 1_000.0)

    assert queue.sends == 1  # one spill, not a second one as if Rokt had failed
    assert breaker.allow()  # Rokt was never called: the breaker stays closed
