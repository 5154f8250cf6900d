"""Exactly once per eventId: Powertools idempotency on DynamoDB (moto server) in front of Rokt."""

from __future__ import annotations

from devtools.localstack import free_port
from tests.conftest import Aws, Sandbox, post, seed_body, serving

CREATE = "/v1/subscriptionevent/brazetest"
UPDATE = "/v1/subscriptionevent/brazetest/update"
DELETE = "/v1/subscriptionevent/brazetest/delete"


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


def test_rokt_refusal_is_remembered_and_replayed_without_a_call(client, sandbox: Sandbox):
    sandbox.fault(status=400, body={"error": "validation_error"})

    first = post(client, CREATE, seed_body())
    second = post(client, CREATE, seed_body())

    assert (first.status_code, second.status_code) == (422, 422)
    assert second.json_body["duplicate"] is True
    assert second.json_body["upstreamStatus"] == 400
    assert sandbox.count("events_requests") == 1


def test_same_event_id_with_different_content_is_refused(client, sandbox: Sandbox):
    post(client, CREATE, seed_body(title="Summer sale"))

    response = post(client, CREATE, seed_body(title="Winter sale"))

    assert response.status_code == 422
    assert response.json_body["error"] == "event_id_reused"
    assert sandbox.count("events_requests") == 1


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
    from chalicelib.wiring import build_bridge

    with serving(build_bridge(settings, ssm_client=aws.ssm(), dynamodb_client=dead)) as client:
        response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert "idempotency" in response.json_body["message"]
    assert sandbox.count("events_requests") == 0
