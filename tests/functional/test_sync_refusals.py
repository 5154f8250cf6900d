"""What Braze refuses is never lost, and one refused object never takes the rest of its call with it:
Braze's per-object ``errors`` and a 400 for a whole call (bisected), through the real path — Rokt
sandbox webhooks → the route → moto's SQS → the sync handler → the Braze sandbox's refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.sync.queue import SYNC_BATCH_SIZE, sync_queue_names
from tests.conftest import ROKT_TOKEN, Aws, Braze, Sandbox, make_bridge, serving
from tests.support.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings

PEOPLE = ("ada", "bob", "cy", "dee", "eve")


@pytest.fixture
def queue(aws: Aws) -> QueuePair:
    return QueuePair(aws.sqs(), *sync_queue_names("test"), 50, "sync_subscribers")


@pytest.fixture
def synced(settings: Settings, aws: Aws, braze: Braze, queue: QueuePair) -> Iterator[Client]:
    bridge = make_bridge(settings, aws, braze_rest_endpoint=braze.url, sync_queue_url=queue.url)
    with serving(bridge) as client:
        yield client


def subscribe_everyone(client: Client, sandbox: Sandbox) -> None:
    """Everyone subscribes; Rokt's webhooks reach the route (one batch)."""
    for person in PEOPLE:
        sandbox.subscribe(subscriberId=person, calendarCode=f"cal-{person}")
    for envelope in sandbox.sent_webhooks():
        answer = client.http.post(
            f"/rokt/webhooks/{ROKT_TOKEN}", headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
        )
        assert answer.status_code == 202


def reasons(queue: QueuePair) -> dict[str, str]:
    """Each dead letter's reason, by the subscriber its webhook is about (left visible)."""
    found = {}
    for message in queue.dead_letters():
        body = json.loads(message["Body"])
        calendar = body["webhook"]["eventDetails"]["subscription"]["calendarCode"]
        found[calendar.removeprefix("cal-")] = message["MessageAttributes"]["deadLetterReason"]["StringValue"]
        queue.sqs.change_message_visibility(
            QueueUrl=queue.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return found


def replay(queue: QueuePair, client: Client) -> None:
    """What ``bridgectl dlq replay --queue sync`` does, then the consumer runs."""
    for message in queue.receive(10, url=queue.dlq_url):
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody=message["Body"])
        queue.sqs.delete_message(QueueUrl=queue.dlq_url, ReceiptHandle=message["ReceiptHandle"])
    queue.drain(client, SYNC_BATCH_SIZE)


def names(profile: dict[str, Any]) -> list[str]:
    return [e["name"] for e in profile["custom_events"]]


def test_an_attribute_object_braze_refuses_is_dead_lettered_with_its_words_and_the_rest_written(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    refusal = {"user": "cy", "message": "Invalid value for rokt:tags", "inputArray": "attributes"}
    braze.control("POST", "refusals", refusal)
    subscribe_everyone(synced, sandbox)

    queue.drain(synced, SYNC_BATCH_SIZE)

    assert braze.track_calls() == 1
    dead = reasons(queue)
    assert set(dead) == {"cy"}
    why = dead["cy"]
    assert "Braze refused the attributes of subscription" in why
    assert why.endswith("Invalid value for rokt:tags")
    for person in ("ada", "bob", "dee", "eve"):
        assert braze.user(person)["attributes"]["rokt:calendar_code"]
    assert "rokt:calendar_code" not in braze.user("cy")["attributes"]
    assert names(braze.user("cy")) == ["subscribe"]  # its event was applied: a replay never sends it again

    braze.control("DELETE", "refusals")
    replay(queue, synced)
    assert braze.user("cy")["attributes"]["rokt:calendar_code"]
    assert names(braze.user("cy")) == ["subscribe"]
    assert queue.dead_letters() == []


def test_a_custom_event_braze_refuses_is_dead_lettered_and_a_replay_sends_it_once(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    braze.control("POST", "refusals", {"user": "bob", "message": "'time' is not valid", "inputArray": "events"})
    subscribe_everyone(synced, sandbox)

    queue.drain(synced, SYNC_BATCH_SIZE)

    dead = reasons(queue)
    assert set(dead) == {"bob"}
    assert "Braze refused the custom event of webhook" in dead["bob"]
    assert braze.user("bob")["attributes"]["rokt:calendar_code"]  # the state was written
    assert names(braze.user("bob")) == []
    assert all(names(braze.user(p)) == ["subscribe"] for p in PEOPLE if p != "bob")

    braze.control("DELETE", "refusals")
    replay(queue, synced)
    assert names(braze.user("bob")) == ["subscribe"]
    assert queue.dead_letters() == []


def test_a_400_for_a_whole_call_is_bisected_to_the_one_bad_subscription(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    braze.control("POST", "refusals", {"user": "dee", "message": "Bad Request: unparseable value", "fatal": True})
    subscribe_everyone(synced, sandbox)

    queue.drain(synced, SYNC_BATCH_SIZE)

    dead = reasons(queue)
    assert set(dead) == {"dee"}
    assert dead["dee"] == "Braze refused the request with HTTP 400: Bad Request: unparseable value"
    for person in ("ada", "bob", "cy", "eve"):
        assert names(braze.user(person)) == ["subscribe"]
        assert braze.user(person)["attributes"]["rokt:calendar_code"]
    assert all(u["external_id"] != "dee" for u in braze.users())
    assert braze.track_calls() <= 2 * len(PEOPLE)  # a bisection, not one call per subscription and more

    braze.control("DELETE", "refusals")
    replay(queue, synced)
    assert names(braze.user("dee")) == ["subscribe"]
