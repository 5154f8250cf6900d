"""Exactly once per intent, in order: each event's state machine on DynamoDB (moto server) in front of
Rokt — duplicates answered from the state, a new intent for the event delivered, copies racing take
turns, a refusal changes nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from chalicelib.clock import Deadline
from chalicelib.delivery.models import Action
from chalicelib.delivery.validation import parse_request
from localworld.localstack import free_port
from tests.conftest import Aws, Sandbox, post, seed_body, serving

CREATE = "/v1/subscriptionevent/brazetest"
UPDATE = "/v1/subscriptionevent/brazetest/update"
DELETE = "/v1/subscriptionevent/brazetest/delete"

if TYPE_CHECKING:
    from chalicelib.wiring import Bridge


def test_sequential_duplicates_reach_rokt_once(client, sandbox: Sandbox):
    answers = [post(client, CREATE, seed_body()) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert "duplicate" not in answers[0].json_body
    for duplicate in answers[1:]:
        assert duplicate.json_body == {**answers[0].json_body, "duplicate": True}
    assert sandbox.count("events_requests") == 1
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1


def test_failed_delivery_leaves_no_record_so_the_retry_delivers_once(client, sandbox: Sandbox):
    sandbox.fault(status=503, count=3)

    failed = post(client, CREATE, seed_body())
    retried = post(client, CREATE, seed_body())
    again = post(client, CREATE, seed_body())

    assert (failed.status_code, retried.status_code, again.status_code) == (502, 200, 200)
    assert again.json_body.get("duplicate") is True
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1


def test_rokt_refusal_is_not_remembered_so_a_corrected_resend_goes_through(client, sandbox: Sandbox):
    sandbox.fault(status=400, body={"error": "validation_error"})

    first = post(client, CREATE, seed_body())
    second = post(client, CREATE, seed_body())

    assert (first.status_code, second.status_code) == (422, 200)
    assert first.json_body["upstreamStatus"] == 400
    assert first.json_body["upstreamBody"] == {"error": "validation_error"}
    assert "duplicate" not in second.json_body
    assert sandbox.count("events_requests") == 2


def test_same_event_id_with_different_content_is_a_new_intent_and_goes_through(client, sandbox: Sandbox):
    post(client, CREATE, seed_body(title="Summer sale"))

    response = post(client, CREATE, seed_body(title="Winter sale"))

    assert response.status_code == 200
    assert "duplicate" not in response.json_body
    [stored] = sandbox.events()
    assert (stored["deliveries"], stored["event"]["title"]) == (2, "Winter sale")


def test_update_a_b_a_sends_three_updates_and_rokt_ends_with_a(client, sandbox: Sandbox):
    post(client, CREATE, seed_body())
    a = {"event": {**seed_body()["event"], "title": "A"}}
    b = {"event": {**seed_body()["event"], "title": "B"}}

    answers = [post(client, UPDATE, body) for body in (a, b, a, a)]

    assert [r.status_code for r in answers] == [200] * 4
    assert ["duplicate" in r.json_body for r in answers] == [False, False, False, True]
    [stored] = sandbox.events()
    assert (stored["updates"], stored["event"]["title"]) == (3, "A")


def test_create_delete_create_sends_all_three_and_the_event_exists(client, sandbox: Sandbox):
    delete = {"event": {"eventId": "Event_0001_user42"}}

    answers = [post(client, CREATE, seed_body()), post(client, DELETE, delete), post(client, CREATE, seed_body())]

    assert [r.status_code for r in answers] == [200, 200, 200]
    assert not any("duplicate" in r.json_body for r in answers)
    [stored] = sandbox.events()
    assert (stored["deliveries"], stored["deleted"]) == (2, False)
    assert sandbox.count("events_deleted") == 1


def test_an_update_refused_before_its_create_goes_through_once_the_event_exists(client, sandbox: Sandbox):
    update = {"event": {**seed_body()["event"], "title": "Moved"}}

    early = post(client, UPDATE, update)  # reordered: Rokt does not know the event yet
    post(client, CREATE, seed_body())
    late = post(client, UPDATE, update)  # the same webhook again: not remembered as refused

    assert (early.status_code, late.status_code) == (422, 200)
    assert sandbox.events()[0]["event"]["title"] == "Moved"


def test_update_with_new_content_goes_through_identical_one_is_suppressed(client, sandbox: Sandbox):
    post(client, CREATE, seed_body())
    moved = {"event": {**seed_body()["event"], "start": "2019-02-22T15:00:00", "end": "2019-02-22T16:00:00"}}

    first = post(client, UPDATE, moved)
    repeat = post(client, UPDATE, moved)
    changed = post(client, UPDATE, {"event": {**moved["event"], "title": "New title"}})

    assert [r.status_code for r in (first, repeat, changed)] == [200, 200, 200]
    assert repeat.json_body.get("duplicate") is True
    assert "duplicate" not in changed.json_body
    [stored] = sandbox.events()
    assert stored["updates"] == 2
    assert stored["event"]["title"] == "New title"


def test_duplicate_delete_is_answered_without_a_second_call(client, sandbox: Sandbox):
    post(client, CREATE, seed_body())
    body = {"event": {"eventId": "Event_0001_user42"}}

    first = post(client, DELETE, body)
    second = post(client, DELETE, body)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json_body["duplicate"] is True
    assert sandbox.count("events_deleted") == 1


def test_same_event_id_in_another_account_is_a_different_event(client, sandbox: Sandbox):
    first = post(client, CREATE, seed_body())
    other = post(client, "/v1/subscriptionevent/otheraccount", seed_body())

    assert (first.status_code, other.status_code) == (200, 200)
    assert "duplicate" not in other.json_body
    assert sandbox.count("events_created") == 2


def test_dynamodb_down_answers_503_and_calls_nobody(settings, aws: Aws, sandbox: Sandbox):
    dead = aws.session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{free_port()}")
    from chalicelib.wiring import Bridge

    with serving(Bridge(settings, ssm_client=aws.ssm(), dynamodb_client=dead)) as client:
        response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert "idempotency" in response.json_body["message"]
    assert sandbox.count("events_requests") == 0


def test_a_later_copy_moves_the_arrival_so_an_intent_received_between_the_copies_is_superseded(
    client, bridge: Bridge, sandbox: Sandbox
):
    # Given the event, and the delivery records the queue consumer delivers through
    assert post(client, CREATE, seed_body()).status_code == 200
    deliverer = bridge.delivery_consumer()._deliverer
    a, b = (parse_request(Action.UPDATE, "brazetest", seed_body(title=title)) for title in ("A", "B"))
    start = time.time()

    # When A (received at 1), its retry (received at 3) and B (received at 2) are delivered in that order
    first = deliverer.deliver(a, Deadline(5.0), None, start + 1)
    retry = deliverer.deliver(a, Deadline(5.0), None, start + 3)
    between = deliverer.deliver(b, Deadline(5.0), None, start + 2)

    # Then the retry, the last intent received, keeps Rokt in A's state: B is older than it
    assert (first.status, retry.duplicate, between.status) == ("delivered", True, "superseded")
    [stored] = sandbox.events()
    assert (stored["event"]["title"], stored["updates"]) == ("A", 1)


def test_copies_of_an_update_racing_once_the_event_has_a_state_reach_rokt_once(client, sandbox: Sandbox):
    # Given an event Rokt has (v1), and Rokt answering slowly enough for copies to overlap
    post(client, CREATE, seed_body())
    v2 = {"event": {**seed_body()["event"], "title": "v2"}}
    sandbox.fault(delay=0.3, count=12)

    # When Braze sends twelve copies of an update at once (retries and duplicates), each retried while
    # another copy is in flight, as Braze does
    def copy(_: int) -> int:
        for _attempt in range(20):
            answer = post(client, UPDATE, v2)
            if answer.status_code != 429:
                return int(answer.status_code)
            time.sleep(0.1)
        return 429

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(copy, range(12)))

    # Then every copy got the one answer, and Rokt saw the update once
    assert statuses == [200] * 12
    assert sandbox.count("events_updated") == 1
    [stored] = sandbox.events()
    assert stored["event"]["title"] == "v2"


def test_a_refused_intent_changes_nothing_so_a_later_copy_of_the_applied_one_is_still_a_duplicate(
    client, sandbox: Sandbox
):
    # Given v1 delivered, then an update Rokt refuses
    post(client, CREATE, seed_body())
    sandbox.fault(status=400, body={"error": "validation_error"})
    refused = post(client, UPDATE, {"event": {**seed_body()["event"], "title": "v2"}})

    # When Braze retries the create (a copy of what Rokt has)
    again = post(client, CREATE, seed_body())

    # Then it is answered from the state, not sent again
    assert (refused.status_code, again.status_code) == (422, 200)
    assert again.json_body.get("duplicate") is True
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1
