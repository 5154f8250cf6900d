"""Direct mode with a queue behind it: what cannot be delivered now is queued, answered 202
with the reason, and delivered from the queue later exactly once, in the order received; the consumer
retries for an age horizon, then dead-letters with the reason. The breaker in front of Rokt:
test_breaker.py."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.runtime import Runtime
from chalicelib.wiring import Bridge
from localworld.aws_proxy import AwsFault, AwsProxy
from tests.conftest import Aws, Sandbox, post, seed_body, serving
from tests.support.spilling import CREATE, FakeClock, rokt_event_calls, spilling_bridge

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib.settings import Settings
    from tests.support.queues import QueuePair


def test_rokt_down_spills_to_the_queue_and_the_consumer_delivers_once(spilling, queues: QueuePair, sandbox: Sandbox):
    # Given Rokt answering 503 to everything
    sandbox.fault(status=503, count=100)

    # When Braze sends a webhook
    answer = post(spilling, CREATE, seed_body())

    # Then it is accepted into the queue with the reason, not answered 502
    assert answer.status_code == 202
    assert answer.json_body == {
        "status": "queued",
        "eventId": "Event_0001_user42",
        "accountCode": "brazetest",
        "reason": "upstream_error",
    }
    # and once Rokt is back the consumer delivers it, once
    sandbox.clear_faults()
    queues.drain(spilling, 10)
    [stored] = sandbox.events()
    assert stored["deliveries"] == 1
    # and a late Braze duplicate gets the delivered answer without a second delivery
    again = post(spilling, CREATE, seed_body())
    assert again.status_code == 200
    assert again.json_body["duplicate"] is True
    assert sandbox.events()[0]["deliveries"] == 1


def test_token_endpoint_down_spills(spilling, queues: QueuePair, sandbox: Sandbox):
    sandbox.revoke_tokens()
    sandbox.fault(target="token", status=503, count=100)

    answer = post(spilling, CREATE, seed_body())

    assert answer.status_code == 202
    assert answer.json_body["reason"] == "dependency_unavailable"
    sandbox.clear_faults()
    queues.drain(spilling, 10)
    assert [e["deliveries"] for e in sandbox.events()] == [1]


def test_dynamodb_down_is_still_accepted_and_deduplicated_when_processed(
    settings: Settings, aws: Aws, queues: QueuePair, breaker_clock: FakeClock, sandbox: Sandbox
):
    import boto3

    from chalicelib.wiring import AWS_CLIENT_CONFIG

    with AwsProxy(aws.url) as proxy:
        session = boto3.session.Session(region_name="us-east-1")
        dynamodb = session.client("dynamodb", endpoint_url=proxy.url, config=AWS_CLIENT_CONFIG)
        proxy.fail(AwsFault("dynamodb", count=1000, status=500, code="InternalServerError"))
        with serving(spilling_bridge(settings, aws, queues, breaker_clock, dynamodb_client=dynamodb)) as client:
            # Braze sends the webhook twice while DynamoDB is down: both are accepted
            answers = [post(client, CREATE, seed_body()) for _ in range(2)]
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].json_body["reason"] == "dependency_unavailable"
        assert rokt_event_calls(sandbox) == 0  # nothing was sent without a record to guard it
        proxy.clear()

    # the consumer (DynamoDB healthy again) delivers the event once, the second copy is a duplicate
    with serving(spilling_bridge(settings, aws, queues, breaker_clock)) as client:
        queues.drain(client, 10)
    assert [e["deliveries"] for e in sandbox.events()] == [1]


def test_when_sqs_refuses_too_braze_gets_the_retryable_error(spilling, queues: QueuePair, sandbox: Sandbox, aws: Aws):
    aws.sqs().delete_queue(QueueUrl=queues.url)
    sandbox.fault(status=503, count=100)

    answer = post(spilling, CREATE, seed_body())

    assert answer.status_code == 502
    assert answer.json_body["error"] == "upstream_error"


def test_a_refusal_by_rokt_is_answered_not_spilled(spilling, queues: QueuePair, sandbox: Sandbox):
    sandbox.fault(status=400, count=1)

    answer = post(spilling, CREATE, seed_body())

    assert answer.status_code == 422
    assert queues.receive() == []


def test_the_consumer_retries_within_the_horizon_then_dead_letters_with_the_reason(
    settings: Settings, aws: Aws, queues: QueuePair, sandbox: Sandbox
):
    wall = FakeClock(time.time())  # the horizon counts from SQS's SentTimestamp: real time
    horizon = replace(settings, delivery_queue_url=queues.url, retry_horizon_seconds=3600.0)
    bridge = Bridge(
        horizon, ssm_client=aws.ssm(), dynamodb_client=aws.dynamodb(), sqs_client=aws.sqs(), runtime=Runtime(time=wall)
    )
    sandbox.fault(status=503, count=1000)
    with serving(bridge) as client:
        assert post(client, CREATE, seed_body()).status_code == 202  # spilled
        # within the horizon: reported failed and kept on the queue
        wall.now += 600
        first = queues.receive()
        assert queues.consume(client, first)["batchItemFailures"] != []
        queues.release(first)
        # past it: moved to the DLQ with the reason, not failed again
        wall.now += 3600
        second = queues.receive()
        assert queues.consume(client, second) == {"batchItemFailures": []}
    [dead] = queues.dead_letters()
    reason = dead["MessageAttributes"]["deadLetterReason"]["StringValue"]
    assert reason.startswith("gave up after 1.2 h of retries (horizon 1 h): upstream_error")
    assert json.loads(dead["Body"])["request"]["event"]["eventId"] == "Event_0001_user42"
    assert queues.receive() == []


def test_a_webhook_for_an_event_with_a_spilled_intent_waiting_goes_to_the_queue_behind_it(
    spilling, queues: QueuePair, sandbox: Sandbox
):
    # Given an event in the calendar
    assert post(spilling, CREATE, seed_body()).status_code == 200
    # When update A is spilled while Rokt is down, and update B arrives once Rokt is back
    sandbox.fault(status=503, count=100)
    assert post(spilling, f"{CREATE}/update", seed_body(title="A")).json_body["reason"] == "upstream_error"
    sandbox.clear_faults()
    later = post(spilling, f"{CREATE}/update", seed_body(title="B"))

    # Then B does not overtake A: it is queued behind it, and the consumer sends A, then B
    assert later.status_code == 202
    assert later.json_body["reason"] == "behind_queued_intent"
    assert sandbox.count("events_updated") == 0
    queues.drain_in_order(spilling, lambda messages: messages[::-1])
    [stored] = sandbox.events()
    assert (stored["event"]["title"], stored["updates"]) == ("B", 2)


DELETE_BODY = {"event": {"eventId": "Event_0001_user42"}}


def titles_in_order(*titles: str) -> Callable[[list[Any]], list[Any]]:
    """SQS handing a batch over in this order of event titles ("" for a delete)."""
    rank = {title: index for index, title in enumerate(titles)}

    def title(message: dict[str, Any]) -> str:
        return str(json.loads(message["Body"])["request"]["event"].get("title", ""))

    return lambda messages: sorted(messages, key=lambda m: rank.get(title(m), len(rank)))


def shown(sandbox: Sandbox) -> str:
    """What a subscriber's calendar shows: nothing, or the event's title."""
    events = [e for e in sandbox.events() if not e["deleted"]]
    return "" if not events else str(events[0]["event"]["title"])


def test_create_and_delete_spilled_and_handed_over_delete_first_leave_no_event(
    spilling, queues: QueuePair, sandbox: Sandbox
):
    # Given a create and then a delete, both spilled while Rokt was down
    sandbox.fault(status=503, count=100)
    assert post(spilling, CREATE, seed_body(title="v1")).status_code == 202
    assert post(spilling, f"{CREATE}/delete", DELETE_BODY).status_code == 202
    sandbox.clear_faults()

    # When SQS hands the delete over first (Rokt would answer 404: no such event yet)
    queues.drain_in_order(spilling, titles_in_order("", "v1"))

    # Then the delete still came last: the event is in no calendar
    assert shown(sandbox) == ""
    assert sandbox.count("events_deleted") == 1


def test_create_and_update_spilled_and_handed_over_update_first_leave_the_update(
    spilling, queues: QueuePair, sandbox: Sandbox
):
    sandbox.fault(status=503, count=100)
    assert post(spilling, CREATE, seed_body(title="v1")).status_code == 202
    assert post(spilling, f"{CREATE}/update", seed_body(title="v2")).status_code == 202
    sandbox.clear_faults()

    queues.drain_in_order(spilling, titles_in_order("v2", "v1"))

    assert shown(sandbox) == "v2"


def test_a_delete_arriving_while_its_create_waits_in_the_queue_goes_behind_it(
    spilling, queues: QueuePair, sandbox: Sandbox
):
    # Given a create spilled while Rokt was down
    sandbox.fault(status=503, count=100)
    assert post(spilling, CREATE, seed_body(title="v1")).status_code == 202
    sandbox.clear_faults()

    # When the delete arrives once Rokt is back (Rokt does not know the event yet)
    delete = post(spilling, f"{CREATE}/delete", DELETE_BODY)

    # Then it is not refused (Braze would never retry a 422): it is queued behind the create
    assert delete.status_code == 202
    assert delete.json_body["reason"] == "behind_queued_intent"
    queues.drain_in_order(spilling, titles_in_order("", "v1"))
    assert shown(sandbox) == ""


@pytest.mark.parametrize("seed", [None, 1, 2])
@pytest.mark.parametrize(
    "sequence",
    [("v1", "v2", ""), ("v1", "v2", "v3", "", "v4"), ("v1", "", "v4", "v2")],
)
def test_spilled_intents_in_any_order_leave_rokt_in_the_last_received(
    spilling, queues: QueuePair, sandbox: Sandbox, sequence: tuple[str, ...], seed: int | None
):
    # Given intents for one event, spilled while Rokt was down (the breaker opens on the way):
    # a create, updates, a delete ("") and a create again ("v4")
    sandbox.fault(status=503, count=100)
    created = False
    for title in sequence:
        if title == "":
            route, body, created = f"{CREATE}/delete", DELETE_BODY, False
        elif created:
            route, body = f"{CREATE}/update", seed_body(title=title)
        else:
            route, body, created = CREATE, seed_body(title=title), True
        assert post(spilling, route, body).status_code == 202
    sandbox.clear_faults()

    # When SQS hands them over reversed, or shuffled
    generator = random.Random(seed)
    queues.drain_in_order(spilling, (lambda m: m[::-1]) if seed is None else (lambda m: generator.sample(m, len(m))))

    # Then Rokt ends in the state of the last intent received
    assert shown(sandbox) == sequence[-1]
