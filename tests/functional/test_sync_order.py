"""Several sync consumers, slow Rokt reads and failing AWS calls, through the real path (Rokt and Braze
sandboxes over HTTP, moto's SQS and DynamoDB). Interleavings are made deterministic with a hook that
runs between a consumer's Rokt read and its Braze write: the hook plays the other consumer."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import requests
from chalice.local import LambdaContext

from chalicelib.observability import flush_metrics
from chalicelib.runtime import Runtime
from chalicelib.sync.mapping import suffix
from chalicelib.sync.queue import SYNC_BATCH_SIZE, sync_queue_names
from chalicelib.wiring import AWS_CLIENT_CONFIG, Bridge
from localworld.aws_proxy import AwsFault, AwsProxy
from localworld.queue_worker import sqs_event
from tests.conftest import ROKT_TOKEN, Aws, Braze, Sandbox, serving
from tests.support.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings

ROUTE = f"/rokt/webhooks/{ROKT_TOKEN}"


class HookedSession(requests.Session):
    """A container's HTTP session that runs a one-shot hook after a call whose URL contains a marker:
    ``/v1/subscription/`` (between the Rokt read and the Braze write) or ``/users/track``."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks_after: list[tuple[str, Callable[[], None]]] = []

    def after(self, marker: str, hook: Callable[[], None]) -> None:
        self.hooks_after.append((marker, hook))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        for index, (marker, hook) in enumerate(self.hooks_after):
            if marker in str(url):
                del self.hooks_after[index]
                hook()
                break
        return response


class Container:
    """One sync consumer Lambda container: its own clients and session, sharing AWS and the queue."""

    def __init__(
        self, settings: Settings, aws: Aws, queue: QueuePair, braze: Braze, clock: Callable[[], float] = time.time
    ) -> None:
        self.session = HookedSession()
        self.queue = queue
        self.bridge: Bridge = Bridge(
            _sync_settings(settings, braze, queue),
            # the production client settings (2 attempts per call): a fault of count 2 is one failed call
            ssm_client=aws.session.client("ssm", endpoint_url=aws.url, config=AWS_CLIENT_CONFIG),
            dynamodb_client=aws.session.client("dynamodb", endpoint_url=aws.url, config=AWS_CLIENT_CONFIG),
            sqs_client=aws.session.client("sqs", endpoint_url=aws.url, config=AWS_CLIENT_CONFIG),
            session=self.session,
            runtime=Runtime(time=clock),
        )
        self.bridge.sync_consumer()  # a warm container: the invocation's time is the batch's

    def consume(self, messages: list[Any], remaining_ms: int = 30_000, *, release: bool = True) -> dict[str, Any]:
        """Lambda's event source mapping: invoke, delete what did not fail; failures visible at once
        unless ``release`` is False (then the consumer's own visibility choices hold)."""
        context = LambdaContext("sync_subscribers", 512, max_runtime_ms=remaining_ms)
        try:
            answer = self.bridge.sync_consumer().handle(sqs_event(messages, self.queue.arn), context)
        finally:
            flush_metrics()  # as the app's SQS middleware does after each invocation
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.queue.sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=message["ReceiptHandle"])
        if release:
            self.queue.release([m for m in messages if m["MessageId"] in failed])
        return dict(answer)

    def drain(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            messages = self.queue.receive(SYNC_BATCH_SIZE)
            if not messages:
                return
            self.consume(messages)
        raise AssertionError(f"the queue did not drain in {rounds} batches")


def _sync_settings(settings: Settings, braze: Braze, queue: QueuePair) -> Settings:
    from dataclasses import replace

    return replace(settings, braze_rest_endpoint=braze.url, sync_queue_url=queue.url)


@pytest.fixture
def queue(aws: Aws) -> QueuePair:
    return QueuePair(aws.sqs(), *sync_queue_names("test"), 50, "sync_subscribers")


@pytest.fixture
def route(settings: Settings, aws: Aws, braze: Braze, queue: QueuePair) -> Iterator[Client]:
    """The webhook route (any container may answer it)."""
    bridge = Bridge(
        _sync_settings(settings, braze, queue),
        ssm_client=aws.ssm(),
        dynamodb_client=aws.dynamodb(),
        sqs_client=aws.sqs(),
    )
    with serving(bridge) as client:
        yield client


def accept(client: Client, envelopes: list[dict[str, Any]]) -> None:
    for envelope in envelopes:
        answer = client.http.post(ROUTE, headers={"Content-Type": "application/json"}, body=json.dumps(envelope))
        assert answer.status_code == 202, answer.json_body


def test_a_stale_active_read_cannot_outlive_an_unsubscribe_handled_meanwhile(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    x, y = Container(settings, aws, queue, braze), Container(settings, aws, queue, braze)
    subscription = sandbox.subscribe()
    accept(route, sandbox.sent_webhooks())
    held = queue.receive(SYNC_BATCH_SIZE)

    def y_handles_the_unsubscribe() -> None:  # after X read "active", before X writes Braze
        sandbox.unsubscribe(subscription)
        accept(route, sandbox.sent_webhooks()[1:])
        y.consume(queue.receive(SYNC_BATCH_SIZE))

    x.session.after("/v1/subscription/", y_handles_the_unsubscribe)
    x.consume(held)
    x.drain()

    profile = braze.user("user42")
    assert all(not v.endswith(suffix(subscription)) for vs in profile["attributes"].values() for v in vs)
    assert "rokt:subscription_id" not in profile["attributes"] or profile["attributes"]["rokt:subscription_id"] == []
    assert sorted(e["name"] for e in profile["custom_events"]) == ["subscribe", "unsubscribe"]


def test_overlapping_tag_changes_a_b_c_end_with_c_only(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    x, y = Container(settings, aws, queue, braze), Container(settings, aws, queue, braze)
    subscription = sandbox.subscribe(tags=["A"])
    accept(route, sandbox.sent_webhooks())
    x.drain()
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["B"]})
    accept(route, sandbox.sent_webhooks()[1:])
    held = queue.receive(SYNC_BATCH_SIZE)

    def y_handles_c() -> None:
        sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["C"]})
        accept(route, sandbox.sent_webhooks()[2:])
        y.consume(queue.receive(SYNC_BATCH_SIZE))

    x.session.after("/v1/subscription/", y_handles_c)
    x.consume(held)
    x.drain()
    y.drain()

    assert braze.user("user42")["attributes"]["rokt:tags"] == [f"Sports/C/{suffix(subscription)}"]


@pytest.fixture
def proxy(aws: Aws) -> Iterator[AwsProxy]:
    with AwsProxy(aws.url) as running:
        yield running


@pytest.mark.parametrize(
    "after",
    [
        "/users/track",  # the first DynamoDB call after Braze took A,B: the ledger's commit
        "/v1/subscription/",  # the first after the Rokt read: the ledger written ahead of Braze
    ],
)
def test_a_ledger_write_failing_once_leaves_no_stale_tag(
    settings: Settings,
    aws: Aws,
    proxy: AwsProxy,
    route: Client,
    sandbox: Sandbox,
    braze: Braze,
    queue: QueuePair,
    after: str,
) -> None:
    through_proxy = Aws(proxy.url, boto3.session.Session(region_name="us-east-1"))
    x = Container(settings, through_proxy, queue, braze)
    subscription = sandbox.subscribe(tags=["A"])
    accept(route, sandbox.sent_webhooks())
    x.drain()
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["A", "B"]})
    accept(route, sandbox.sent_webhooks()[1:])
    fault = AwsFault("dynamodb", count=2, status=500, code="InternalServerError")  # one call, both attempts
    x.session.after(after, lambda: proxy.fail(fault))
    x.drain()
    assert all(f.count == 0 for f in proxy.faults)
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["A"]})
    accept(route, sandbox.sent_webhooks()[2:])
    x.drain()
    tail = suffix(subscription)
    assert braze.user("user42")["attributes"]["rokt:tags"] == [f"Sports/A/{tail}"]

    sandbox.unsubscribe(subscription)
    accept(route, sandbox.sent_webhooks()[3:])
    x.drain()
    attributes = braze.user("user42")["attributes"]
    assert not attributes.get("rokt:tags")
    assert all(not v.endswith(tail) for vs in attributes.values() for v in vs)
    names = sorted(e["name"] for e in braze.user("user42")["custom_events"])
    assert names == ["subscribe", "unsubscribe"]


SLOW_READ_SECONDS = 0.34


def test_slow_rokt_reads_still_write_a_whole_batch_in_one_invocation(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    x = Container(settings, aws, queue, braze)
    count = 24
    for i in range(count):
        sandbox.subscribe(subscriberId=f"slow{i}", calendarCode=f"c{i}")
    accept(route, sandbox.sent_webhooks())
    sandbox.fault(target="subscriptions", delay=SLOW_READ_SECONDS, count=count)
    messages = []
    for _ in range(5):
        messages += queue.receive(10)
    assert len(messages) == count

    answer = x.consume(messages, remaining_ms=9_000)  # today's code reads 24 x 0.34 s one after another

    assert answer["batchItemFailures"] == []
    assert braze.track_calls() == 1
    assert sandbox.count("token_requests") == 1  # 8 reads at once, one token renewal (the provider's lock)
    assert all(braze.user(f"slow{i}")["attributes"].get("rokt:subscription_id") for i in range(count))


def test_when_reading_time_runs_out_the_rest_goes_back_at_once_and_is_written_next_time(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    x = Container(settings, aws, queue, braze)
    count = 30
    for i in range(count):
        sandbox.subscribe(subscriberId=f"late{i}", calendarCode=f"c{i}")
    accept(route, sandbox.sent_webhooks())
    sandbox.fault(target="subscriptions", delay=0.4, count=count)
    messages: list[Any] = []
    for _ in range(5):
        messages += queue.receive(10)

    # 8.2 s left: 1.2 s of reading (8 at a time), 5 s kept for the flush, 2 s of Lambda margin
    answer = x.consume(messages, remaining_ms=8_200, release=False)

    deferred = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert 0 < len(deferred) < count
    written = [u for u in braze.users() if u.get("external_id", "").startswith("late")]
    assert len(written) == count - len(deferred)
    again = queue.receive(10)  # visible at once: no backoff for records that were never attempted
    assert {m["MessageId"] for m in again} <= deferred
    assert again
    x.consume(again, release=True)
    x.drain()
    for i in range(count):
        profile = braze.user(f"late{i}")
        assert profile["attributes"]["rokt:subscription_id"]
        assert [e["name"] for e in profile["custom_events"]] == ["subscribe"]


class SteppedClock:
    """The wall clock, moved forward by the test (leases and tokens read it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_a_lost_braze_answer_never_doubles_a_custom_event_and_the_state_is_rewritten(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    clock = SteppedClock()
    x = Container(settings, aws, queue, braze, clock=clock)
    for i in range(3):
        sandbox.subscribe(subscriberId=f"user{i}", calendarCode=f"cal{i}")
    accept(route, sandbox.sent_webhooks() * 2)
    braze.fault(loseAnswer=True, count=1)  # Braze applies the call, its answer never comes back

    first = x.consume(queue.receive(10))
    assert len(first["batchItemFailures"]) == 6  # the copies wait behind their first copy's claim
    for _ in range(10):  # the lease outlives a call that might still land; then the state is rewritten
        clock.offset += 60
        messages = queue.receive(10)
        if not messages:
            break
        x.consume(messages)

    assert queue.receive(10) == []
    for i in range(3):
        profile = braze.user(f"user{i}")
        assert profile["attributes"]["rokt:calendar_code"], profile
        # Braze applied the lost call: its custom event is never sent again
        assert [e["name"] for e in profile["custom_events"]] == ["subscribe"]


def test_a_failed_dead_letter_send_does_not_stop_the_rest_of_the_batch(
    settings: Settings, aws: Aws, proxy: AwsProxy, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    through_proxy = Aws(proxy.url, boto3.session.Session(region_name="us-east-1"))
    x = Container(settings, through_proxy, queue, braze)
    for i in range(3):
        sandbox.subscribe(subscriberId=f"user{i}", calendarCode=f"cal{i}")
    accept(route, sandbox.sent_webhooks())
    # every call refused: the 400 is bisected down to each subscription alone (3 + 1 + 2 + 1 + 1 calls)
    braze.fault(status=400, body={"message": "Invalid attribute"}, count=5)
    proxy.fail(AwsFault("sqs", "SendMessage", count=2, status=500, code="InternalError"))

    answer = x.consume(queue.receive(10))

    assert len(answer["batchItemFailures"]) == 1  # the one the DLQ did not take comes back
    assert len(queue.dead_letters()) == 2
    x.drain()  # the retried one is refused by Braze no more: it is written
    assert len(braze.users()) == 1


def move(sandbox: Sandbox, subscription_id: str, subscriber_id: str) -> None:
    """Rokt moves the subscription to another subscriber id (Rokt sends SubscriptionDetailsUpdated)."""
    state = sandbox.server.state
    with state.lock:
        found = state.subscriptions.get(subscription_id)
        assert found is not None
        found.subscriber_id = subscriber_id
        state.subscriptions.update({"subscriptionId": subscription_id})


def test_a_subscriber_moved_twice_around_a_lost_braze_answer_keeps_values_on_no_former_profile(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    clock = SteppedClock()
    x = Container(settings, aws, queue, braze, clock=clock)
    subscription = sandbox.subscribe(subscriberId="ann")
    accept(route, sandbox.sent_webhooks())
    x.drain()
    move(sandbox, subscription, "bob")
    accept(route, sandbox.sent_webhooks()[1:])
    braze.fault(loseAnswer=True, count=1)  # Braze moves the values from ann to bob; the answer never comes

    x.consume(queue.receive(SYNC_BATCH_SIZE))
    move(sandbox, subscription, "cy")  # before the retry
    accept(route, sandbox.sent_webhooks()[2:])
    for _ in range(10):  # the lease outlives the lost call; then the retries run
        clock.offset += 60
        messages = queue.receive(SYNC_BATCH_SIZE)
        if not messages:
            break
        x.consume(messages)

    assert queue.receive(SYNC_BATCH_SIZE) == []
    tail = suffix(subscription)
    for former in ("ann", "bob"):
        attributes = braze.user(former)["attributes"]
        assert all(not v.endswith(tail) and v != subscription for vs in attributes.values() for v in vs), former
    assert braze.user("cy")["attributes"]["rokt:subscription_id"] == [subscription]


def test_a_record_never_attempted_on_its_last_allowed_receive_is_dead_lettered_with_the_reason(
    settings: Settings, aws: Aws, route: Client, sandbox: Sandbox, braze: Braze
) -> None:
    """Invocations with too little time left to read anything: each gives the record back at once —
    until the receive the redrive policy would move it on, where the consumer dead-letters it itself."""
    queue = QueuePair(aws.sqs(), *sync_queue_names("test"), 3, "sync_subscribers")
    x = Container(settings, aws, queue, braze)
    sandbox.subscribe()
    accept(route, sandbox.sent_webhooks())

    answers = [x.consume(queue.receive(SYNC_BATCH_SIZE), remaining_ms=7_000) for _ in range(3)]

    assert [len(a["batchItemFailures"]) for a in answers] == [1, 1, 0]
    [dead] = queue.dead_letters()
    reason = dead["MessageAttributes"]["deadLetterReason"]["StringValue"]
    assert reason == "gave up after 3 receives (the queue's redrive limit): no time left to read the subscription"
    assert braze.track_calls() == 0
