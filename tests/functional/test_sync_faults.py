"""Whatever Braze, Rokt, SSM or DynamoDB do to the sync consumer, every accepted webhook ends written
to Braze exactly once (retried through the queue), and the DLQ holds only what can never succeed."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from chalicelib.runtime import Runtime
from chalicelib.settings import RETRY_HORIZON_SECONDS
from chalicelib.sync.mapping import suffix
from chalicelib.sync.queue import SYNC_BATCH_SIZE, SYNC_MAX_RECEIVES, SYNC_NOT_FOUND_HORIZON_SECONDS, sync_queue_names
from chalicelib.wiring import Bridge
from localworld.aws_proxy import AwsFault, AwsProxy
from tests.conftest import BRAZE_KEY, ROKT_TOKEN, Aws, Braze, Sandbox, make_bridge, serving
from tests.support.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings
    from tests.conftest import LogCapture

SUBSCRIBERS = 6


@pytest.fixture
def proxy(aws: Aws) -> Iterator[AwsProxy]:
    with AwsProxy(aws.url) as running:
        yield running


@pytest.fixture
def rig(settings: Settings, aws: Aws, proxy: AwsProxy, braze: Braze) -> Iterator[tuple[Client, QueuePair]]:
    queue = QueuePair(aws.sqs(), *sync_queue_names("test"), 50, "sync_subscribers")
    through_proxy = Aws(proxy.url, boto3.session.Session(region_name="us-east-1"))
    bridge = make_bridge(settings, through_proxy, braze_rest_endpoint=braze.url, sync_queue_url=queue.url)
    with serving(bridge) as client:
        yield client, queue


def accept_subscribers(client: Client, sandbox: Sandbox, copies: int = 2) -> list[str]:
    """Subscribe people in the Rokt sandbox; Rokt delivers each webhook ``copies`` times."""
    ids = [sandbox.subscribe(subscriberId=f"user{i}", calendarCode=f"cal{i}") for i in range(SUBSCRIBERS)]
    for envelope in sandbox.sent_webhooks() * copies:
        answer = client.http.post(
            f"/rokt/webhooks/{ROKT_TOKEN}", headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
        )
        assert answer.status_code == 202
    return ids


def braze_429_storm(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    braze.control("POST", "config", {"rateLimit": 1, "rateWindow": 0.05})
    braze.fault(status=429, count=3)


def braze_5xx(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    braze.fault(status=503, count=3)


def rokt_read_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    sandbox.fault(target="subscriptions", status=503, count=8)


def rokt_read_408_once(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    sandbox.fault(target="subscriptions", status=408, count=1)


def rokt_read_403_twice(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    sandbox.fault(target="subscriptions", status=403, body={"message": "Forbidden"}, count=2)


def ssm_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    proxy.fail(AwsFault("ssm", "GetParameter", count=4, status=500, code="InternalServerError"))


def dynamodb_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    proxy.fail(AwsFault("dynamodb", "PutItem", count=4, status=500, code="InternalServerError"))


FAULTS: dict[str, Callable[[Braze, Sandbox, AwsProxy], None]] = {
    f.__name__: f
    for f in (
        braze_429_storm,
        braze_5xx,
        rokt_read_failing,
        rokt_read_408_once,
        rokt_read_403_twice,
        ssm_failing,
        dynamodb_failing,
    )
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_sync_survives_each_fault_with_nothing_lost_or_doubled(
    rig: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze, proxy: AwsProxy, fault: str
) -> None:
    client, queue = rig
    ids = accept_subscribers(client, sandbox)
    FAULTS[fault](braze, sandbox, proxy)

    queue.drain(client, SYNC_BATCH_SIZE, rounds=60)

    for i, subscription in enumerate(ids):
        profile = braze.user(f"user{i}")
        assert profile["attributes"]["rokt:subscription_id"] == [subscription], fault
        assert profile["attributes"]["rokt:calendar_code"] == [f"cal{i}/{suffix(subscription)}"]
        assert [e["name"] for e in profile["custom_events"]] == ["subscribe"], fault
    assert queue.dead_letters() == []
    # and the fault really happened
    assert all(f.count == 0 for f in proxy.faults)
    assert not braze.control("GET", "stats").get("faults_pending")
    assert sandbox.stats()["faults_pending"] == 0


def test_a_refusal_from_braze_is_dead_lettered_with_its_reason_and_replayable(
    rig: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze
) -> None:
    client, queue = rig
    accept_subscribers(client, sandbox, copies=1)
    calls = 2 * SUBSCRIBERS - 1  # every call refused: bisected down to each subscription alone
    braze.fault(status=400, body={"message": "Invalid attribute"}, count=calls)

    queue.drain(client, SYNC_BATCH_SIZE)

    dead = queue.dead_letters()
    assert len(dead) == SUBSCRIBERS
    reasons = {m["MessageAttributes"]["deadLetterReason"]["StringValue"] for m in dead}
    assert reasons == {"Braze refused the request with HTTP 400: Invalid attribute"}
    assert braze.users() == []
    assert braze.track_calls() == calls
    for message in dead:  # what `replay-dlq --queue sync` does
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody=message["Body"])
    queue.drain(client, SYNC_BATCH_SIZE)
    assert len(braze.users()) == SUBSCRIBERS
    assert all([e["name"] for e in u["custom_events"]] == ["subscribe"] for u in braze.users())


class Later:
    """The bridge's wall clock, ``offset`` seconds ahead of the real one (SQS stamps messages with real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def later() -> Later:
    return Later()


@pytest.fixture
def timed(settings: Settings, aws: Aws, braze: Braze, later: Later) -> Iterator[tuple[Client, QueuePair]]:
    """The sync flow with an injected wall clock, on a queue with the production redrive limit."""
    queue = QueuePair(aws.sqs(), *sync_queue_names("test"), SYNC_MAX_RECEIVES, "sync_subscribers")
    bridge = Bridge(
        replace(settings, braze_rest_endpoint=braze.url, sync_queue_url=queue.url),
        ssm_client=aws.ssm(),
        dynamodb_client=aws.dynamodb(),
        sqs_client=aws.sqs(),
        runtime=Runtime(time=later),
    )
    with serving(bridge) as client:
        yield client, queue


def reasons(queue: QueuePair) -> list[str]:
    return [m["MessageAttributes"]["deadLetterReason"]["StringValue"] for m in queue.dead_letters()]


def consume_once(client: Client, queue: QueuePair) -> dict[str, Any]:
    messages = queue.receive(SYNC_BATCH_SIZE)
    assert messages
    answer = queue.consume(client, messages)
    queue.release([m for m in messages if m["MessageId"] in {f["itemIdentifier"] for f in answer["batchItemFailures"]}])
    return answer


def test_a_long_braze_outage_is_retried_for_the_horizon_then_dead_lettered_with_the_reason(
    timed: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze, later: Later
) -> None:
    client, queue = timed
    accept_subscribers(client, sandbox, copies=1)
    braze.fault(status=503, count=1000)

    # within the horizon: every record failed and kept on the queue
    later.offset = 3600
    assert len(consume_once(client, queue)["batchItemFailures"]) == SUBSCRIBERS
    assert queue.dead_letters() == []
    # past it: the consumer moves them itself, each with the reason, long before SQS's redrive limit
    later.offset = RETRY_HORIZON_SECONDS + 60
    assert consume_once(client, queue)["batchItemFailures"] == []

    found = reasons(queue)
    assert len(found) == SUBSCRIBERS
    assert all(r.startswith("gave up after 24.0 h of retries (horizon 24 h): Braze") for r in found), found
    assert queue.receive() == []
    assert braze.users() == []


def test_the_consumer_dead_letters_on_the_last_receive_sqs_would_give_it(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze
) -> None:
    """A queue whose redrive limit comes before the age horizon: the reason is still written."""
    queue = QueuePair(aws.sqs(), *sync_queue_names("test"), 3, "sync_subscribers")
    bridge = make_bridge(settings, aws, braze_rest_endpoint=braze.url, sync_queue_url=queue.url)
    with serving(bridge) as client:
        accept_subscribers(client, sandbox, copies=1)
        braze.fault(status=429, count=1000)
        queue.drain(client, SYNC_BATCH_SIZE, rounds=5)

    found = reasons(queue)
    assert len(found) == SUBSCRIBERS
    assert all(r.startswith("gave up after 3 receives") for r in found), found


def test_a_subscription_whose_braze_answer_was_lost_stays_leased_until_the_lease_expires(
    timed: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze, later: Later
) -> None:
    """Braze may still apply a call whose answer was lost: the lease is kept (not given back when the batch
    ends), so a redelivery cannot write the subscription (and Braze then apply the older call over it)
    until the lease expires."""
    client, queue = timed
    subscription = sandbox.subscribe(subscriberId="ann")
    for envelope in sandbox.sent_webhooks():
        answer = client.http.post(
            f"/rokt/webhooks/{ROKT_TOKEN}", headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
        )
        assert answer.status_code == 202
    braze.fault(loseAnswer=True, count=1)  # Braze applies the call, the bridge never hears so

    assert len(consume_once(client, queue)["batchItemFailures"]) == 1
    calls = braze.track_calls()
    later.offset = 5  # redelivered soon: the lease (the batch's deadline and a margin) still holds
    assert len(consume_once(client, queue)["batchItemFailures"]) == 1
    assert braze.track_calls() == calls  # the redelivery found the subscription leased: Braze not called

    later.offset = 120  # the lease expired: the redelivery writes it
    assert consume_once(client, queue)["batchItemFailures"] == []
    assert braze.track_calls() == calls + 1
    assert braze.user("ann")["attributes"]["rokt:subscription_id"] == [subscription]
    assert queue.receive() == []


def test_a_subscription_rokt_does_not_know_yet_is_retried_then_synced(
    timed: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze, later: Later
) -> None:
    """Rokt may be eventually consistent: a 404 for a subscription the bridge never wrote is not final."""
    client, queue = timed
    sandbox.fault(target="subscriptions", status=404, body={"error": "subscription_not_found"}, count=1)
    ids = accept_subscribers(client, sandbox, copies=1)

    first = consume_once(client, queue)
    assert len(first["batchItemFailures"]) == 1  # the one read that answered 404
    assert queue.dead_letters() == []
    later.offset = 120
    consume_once(client, queue)

    for i, subscription in enumerate(ids):
        assert braze.user(f"user{i}")["attributes"]["rokt:subscription_id"] == [subscription]
        assert [e["name"] for e in braze.user(f"user{i}")["custom_events"]] == ["subscribe"]
    assert queue.receive() == []
    assert queue.dead_letters() == []


def test_a_subscription_rokt_never_knows_is_dead_lettered_after_the_not_found_horizon(
    timed: tuple[Client, QueuePair], braze: Braze, later: Later
) -> None:
    client, queue = timed
    envelope = {
        "eventId": "w-unknown",
        "eventType": "Subscribe",
        "eventDetails": {"accountCode": "brazetest", "subscription": {"calendarSubscriptionId": "nope"}},
    }
    answer = client.http.post(
        f"/rokt/webhooks/{ROKT_TOKEN}", headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
    )
    assert answer.status_code == 202

    assert len(consume_once(client, queue)["batchItemFailures"]) == 1
    later.offset = SYNC_NOT_FOUND_HORIZON_SECONDS / 2
    assert len(consume_once(client, queue)["batchItemFailures"]) == 1
    assert queue.dead_letters() == []
    later.offset = SYNC_NOT_FOUND_HORIZON_SECONDS + 60
    assert consume_once(client, queue)["batchItemFailures"] == []

    [reason] = reasons(queue)
    assert "Rokt does not know subscription nope" in reason
    assert "nothing was written for it" in reason
    assert braze.track_calls() == 0


@pytest.mark.parametrize("status", [400, 410, 422])
def test_a_subscription_read_rokt_refuses_for_good_is_dead_lettered_at_once_with_the_status(
    timed: tuple[Client, QueuePair], sandbox: Sandbox, braze: Braze, status: int
) -> None:
    client, queue = timed
    sandbox.fault(target="subscriptions", status=status, body={"message": "no"}, count=SUBSCRIBERS)
    accept_subscribers(client, sandbox, copies=1)

    assert consume_once(client, queue)["batchItemFailures"] == []

    found = reasons(queue)
    assert len(found) == SUBSCRIBERS
    assert all(r.startswith("Rokt refused to read subscription") and f"(HTTP {status})" in r for r in found), found
    assert braze.track_calls() == 0


def test_a_braze_key_refused_is_retried_with_an_alarm_not_dead_lettered(
    timed: tuple[Client, QueuePair],
    sandbox: Sandbox,
    braze: Braze,
    later: Later,
    json_logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A revoked or mid-rotation REST key (401/403 even read fresh) is the operator's to fix: the records
    wait on the queue (counted for an alarm) and are written once the key works again."""
    client, queue = timed
    ids = accept_subscribers(client, sandbox, copies=1)
    braze.control("POST", "config", {"apiKeys": ["a-key-the-bridge-does-not-have"]})

    assert len(consume_once(client, queue)["batchItemFailures"]) == SUBSCRIBERS
    assert queue.dead_letters() == []
    assert "Braze refused the REST key with HTTP 401" in json_logs.text
    assert '"BrazeKeyRefused":[1.0]' in capsys.readouterr().out  # the metric an alarm watches

    braze.control("POST", "config", {"apiKeys": [BRAZE_KEY]})
    later.offset = 3600
    consume_once(client, queue)
    for i, subscription in enumerate(ids):
        assert braze.user(f"user{i}")["attributes"]["rokt:subscription_id"] == [subscription]
        assert [e["name"] for e in braze.user(f"user{i}")["custom_events"]] == ["subscribe"]
    assert queue.dead_letters() == []
