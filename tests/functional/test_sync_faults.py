"""Whatever Braze, Rokt, SSM or DynamoDB do to the sync consumer, every accepted webhook ends written
to Braze exactly once (retried through the queue), and the DLQ holds only what can never succeed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
import pytest

from chalicelib.sync.mapping import suffix
from chalicelib.sync.queue import SYNC_BATCH_SIZE, sync_queue_names
from devtools.aws_proxy import AwsFault, AwsProxy
from tests.conftest import ROKT_TOKEN, Aws, Braze, Sandbox, make_bridge, serving
from tests.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings

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


def braze_drops(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    braze.fault(drop=True, count=2)


def rokt_read_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    sandbox.fault(target="subscriptions", status=503, count=8)


def ssm_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    proxy.fail(AwsFault("ssm", "GetParameter", count=4, status=500, code="InternalServerError"))


def dynamodb_failing(braze: Braze, sandbox: Sandbox, proxy: AwsProxy) -> None:
    proxy.fail(AwsFault("dynamodb", "PutItem", count=4, status=500, code="InternalServerError"))


FAULTS: dict[str, Callable[[Braze, Sandbox, AwsProxy], None]] = {
    f.__name__: f for f in (braze_429_storm, braze_5xx, braze_drops, rokt_read_failing, ssm_failing, dynamodb_failing)
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
    braze.fault(status=400, body={"message": "Invalid attribute"}, count=1)

    queue.drain(client, SYNC_BATCH_SIZE)

    dead = queue.dead_letters()
    assert len(dead) == SUBSCRIBERS
    reasons = {m["MessageAttributes"]["deadLetterReason"]["StringValue"] for m in dead}
    assert reasons == {"Braze refused the request with HTTP 400: Invalid attribute"}
    assert braze.users() == []
    for message in dead:  # what `replay-dlq --queue sync` does
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody=message["Body"])
    queue.drain(client, SYNC_BATCH_SIZE)
    assert len(braze.users()) == SUBSCRIBERS
    assert all([e["name"] for e in u["custom_events"]] == ["subscribe"] for u in braze.users())
