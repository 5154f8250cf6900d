"""Scheduled reconciliation through the real path: the Rokt sandbox gives up on webhooks the bridge
missed, the app's scheduled handler (as Lambda invokes it, every 15 virtual minutes for a period)
re-reads the ledger's subscriptions from the sandbox over HTTP and rewrites the Braze sandbox's
profiles through moto's DynamoDB (the ledger, its index, the cursor)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import requests
from chalice.local import LambdaContext

import app as bridge_app
from chalicelib.rokt.subscriptions import RoktSubscriptionsClient
from chalicelib.runtime import Runtime
from chalicelib.sync import mapping
from chalicelib.sync.envelope import Account
from chalicelib.sync.ledger_index import CURSOR_KEY, LEDGER_INDEX, LEDGER_KEY_PREFIX, LedgerIndex
from chalicelib.sync.queue import SYNC_BATCH_SIZE, sync_queue_names
from chalicelib.sync.reconcile import Reconciler
from chalicelib.sync.records import SyncLedger
from chalicelib.wiring import Bridge
from localworld.queue_worker import scheduled_event
from tests.conftest import ROKT_TOKEN, TABLE, Aws, Braze, Sandbox, serving
from tests.support.queues import QueuePair
from tests.support.receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalice.test import Client

    from chalicelib.clock import Deadline
    from chalicelib.settings import Settings
    from tests.conftest import LogCapture

PERIOD = 86_400.0
RUN_EVERY = 15 * 60.0


class VirtualTime:
    """The bridge's clocks: wall time starts now and moves only when told (or when the pacer sleeps)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.offset += max(seconds, 0.0)

    def runtime(self) -> Runtime:
        return Runtime(time=self.time, monotonic=self.monotonic, sleep=self.sleep)


class StoppedTime(VirtualTime):
    """Virtual time with no real time in it: it moves only when told (or when the pacer sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self._wall, self._monotonic = time.time(), time.monotonic()

    def time(self) -> float:
        return self._wall + self.offset

    def monotonic(self) -> float:
        return self._monotonic + self.offset


@pytest.fixture
def clock() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def queue(aws: Aws) -> QueuePair:
    return QueuePair(aws.sqs(), *sync_queue_names("test"), 50, "sync_subscribers")


def make(settings: Settings, aws: Aws, braze: Braze, queue: QueuePair, clock: VirtualTime, **overrides: Any) -> Bridge:
    return Bridge(
        replace(settings, braze_rest_endpoint=braze.url, sync_queue_url=queue.url, **overrides),
        ssm_client=aws.ssm(),
        dynamodb_client=aws.dynamodb(),
        sqs_client=aws.sqs(),
        runtime=clock.runtime(),
    )


@pytest.fixture
def synced(settings: Settings, aws: Aws, braze: Braze, queue: QueuePair, clock: VirtualTime) -> Iterator[Client]:
    with serving(make(settings, aws, braze, queue, clock)) as client:
        yield client


def forward(client: Client, envelopes: list[dict[str, Any]]) -> None:
    for envelope in envelopes:
        answer = client.http.post(
            f"/rokt/webhooks/{ROKT_TOKEN}", headers={"Content-Type": "application/json"}, body=json.dumps(envelope)
        )
        assert answer.status_code in (200, 202), answer.json_body


def reconcile_once(remaining_ms: int = 300_000) -> dict[str, Any]:
    """The scheduled function, as Lambda invokes it (EventBridge's scheduled event)."""
    event = scheduled_event("e-1")
    context = LambdaContext("reconcile_subscriptions", 512, max_runtime_ms=remaining_ms)
    answer: dict[str, Any] = bridge_app.app.handler_map["reconcile_subscriptions"](event, context)
    return answer


def one_period(clock: VirtualTime) -> list[dict[str, Any]]:
    """The schedule for one reconciliation period: a run every 15 minutes."""
    runs = []
    for _ in range(int(PERIOD // RUN_EVERY)):
        runs.append(reconcile_once())
        clock.sleep(RUN_EVERY)
    return runs


def bridge_down_while(sandbox: Sandbox, change: Any) -> None:
    """Rokt's webhooks go to an endpoint that answers 503 (the bridge is down) until Rokt gives up on
    them (30 Rokt-minutes, compressed); ``change`` makes Rokt's changes meanwhile."""
    with Receiver() as down:
        down.answer(*[503] * 1000)
        sandbox.control("POST", "webhooks/config", {"timeScale": 0.0005})
        sandbox.control("POST", "webhooks", {"url": down.url})
        change()
        deadline = time.monotonic() + 20
        while not sandbox.control("GET", "webhooks/idle")["idle"]:
            assert time.monotonic() < deadline, "Rokt never gave up"
            time.sleep(0.02)
    [endpoint] = sandbox.control("GET", "webhooks")
    assert endpoint["history"], "no webhook was missed"
    assert {entry["state"] for entry in endpoint["history"]} == {"failed"}  # Rokt gave up on every one


def expected_profiles(sandbox: Sandbox) -> dict[str, dict[str, list[str]]]:
    """Each subscriber's rokt:* values as Rokt's current state makes them."""
    profiles: dict[str, dict[str, list[str]]] = {}
    for state in sandbox.control("GET", "subscriptions"):
        if not state["isActive"]:
            continue
        account = Account(state["accountCode"])
        values = mapping.subscriber(state["subscriptionId"], state, account, "email").values
        target = profiles.setdefault(state["subscriberId"], {})
        for name, found in values.items():
            if name not in ("rokt:account_id", "rokt:account_name"):
                target.setdefault(name, []).extend(found)
    return {who: {k: sorted(v) for k, v in values.items()} for who, values in profiles.items()}


def actual_profiles(braze: Braze) -> dict[str, dict[str, list[str]]]:
    found = {}
    for user in braze.users():
        values = {
            k: sorted(v)
            for k, v in user["attributes"].items()
            if k.startswith("rokt:") and k not in ("rokt:account_id", "rokt:account_name") and v
        }
        if values:
            found[user["external_id"]] = values
    return found


def events(braze: Braze) -> int:
    return sum(len(user["custom_events"]) for user in braze.users())


def test_a_bridge_that_missed_two_hours_of_webhooks_equals_rokt_after_one_period_for_every_kind_of_change(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime, json_logs: LogCapture
) -> None:
    ids = {
        name: sandbox.subscribe(subscriberId=f"user-{name}", calendarCode=f"cal-{name}", tags=["A"])
        for name in ("update", "tags", "move", "unsubscribe", "gone", "same")
    }
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    assert actual_profiles(braze) == expected_profiles(sandbox)
    written_events = events(braze)

    def rokt_changes() -> None:
        update = sandbox.control  # each sends a webhook Rokt will give up on
        update("POST", "subscriptions/update", {"subscriptionId": ids["update"], "optIn1": True, "method": "microsoft"})
        update("POST", "subscriptions/update", {"subscriptionId": ids["tags"], "tags": ["B", "C"]})
        update("POST", "subscriptions/update", {"subscriptionId": ids["move"], "subscriberId": "user-moved"})
        sandbox.unsubscribe(ids["unsubscribe"])
        update("POST", "subscriptions/forget", {"subscriptionId": ids["gone"]})

    clock.sleep(2 * 3600)  # two hours the bridge did not hear about
    bridge_down_while(sandbox, rokt_changes)
    assert actual_profiles(braze) != expected_profiles(sandbox)

    runs = one_period(clock)

    assert actual_profiles(braze) == expected_profiles(sandbox)
    assert "user-gone" not in actual_profiles(braze)
    assert events(braze) == written_events  # healing invents no custom event
    healed = [r for r in json_logs.records() if r["message"] == "subscription reconciled"]
    assert sorted(r["kind"] for r in healed) == ["move", "not_found", "tags", "unsubscribe", "update"]
    assert sum(run["read"] for run in runs) == 6 - 1 + 1  # each subscription read once (gone: read, then removed)
    assert all(run["failed"] == 0 for run in runs)


def test_a_subscriber_id_rokt_gives_an_anonymous_subscription_reaches_braze_though_its_webhook_was_missed(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    """Simulation seed 2053: a subscription without subscriber id or e-mail has nobody to write to, so the
    bridge wrote nothing — yet the ledger must still list it, or a subscriber id Rokt adds later, whose
    webhook the bridge missed, never reaches Braze."""
    anonymous = sandbox.subscribe(subscriberId=None, calendarCode="cal-anonymous", tags=["A"])
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    assert actual_profiles(braze) == {}

    def named_later() -> None:
        sandbox.control("POST", "subscriptions/update", {"subscriptionId": anonymous, "subscriberId": "user-later"})

    bridge_down_while(sandbox, named_later)
    runs = one_period(clock)

    assert actual_profiles(braze) == expected_profiles(sandbox)
    assert "user-later" in actual_profiles(braze)
    assert events(braze) == 0  # healing invents no custom event
    assert all(run["failed"] == 0 for run in runs)


@pytest.mark.parametrize("change", ["stays_anonymous", "unsubscribe", "forget"])
def test_a_ledger_item_for_an_anonymous_subscription_is_kept_while_rokt_has_it_and_forgotten_after(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime, aws: Aws, change: str
) -> None:
    anonymous = sandbox.subscribe(subscriberId=None, calendarCode="cal-anonymous", tags=["A"])
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)

    def rokt_changes() -> None:
        if change == "unsubscribe":
            sandbox.unsubscribe(anonymous)
        else:
            sandbox.control("POST", "subscriptions/update", {"subscriptionId": anonymous, "tags": ["B"]})

    if change == "forget":  # Rokt no longer knows it (no webhook says so)
        sandbox.control("POST", "subscriptions/forget", {"subscriptionId": anonymous})
    else:
        bridge_down_while(sandbox, rokt_changes)
    one_period(clock)

    key = {"id": {"S": LEDGER_KEY_PREFIX + anonymous}}
    kept = "Item" in aws.dynamodb().get_item(TableName=TABLE, Key=key)
    assert kept is (change == "stays_anonymous")  # re-read each period while Rokt has it; else gone
    assert actual_profiles(braze) == {}


def test_the_ledger_is_enumerated_through_its_sparse_index_and_the_cursor_survives_each_run(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, aws: Aws, clock: VirtualTime
) -> None:
    for number in range(5):
        sandbox.subscribe(subscriberId=f"user-{number}", calendarCode=f"cal-{number}")
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    dynamodb = aws.dynamodb()
    indexed = [
        item["id"]["S"]
        for shard in range(16)
        for item in dynamodb.query(
            TableName=TABLE,
            IndexName=LEDGER_INDEX,
            KeyConditionExpression="ledger_shard = :s",
            ExpressionAttributeValues={":s": {"S": str(shard)}},
        )["Items"]
    ]
    table = [item["id"]["S"] for item in dynamodb.scan(TableName=TABLE)["Items"]]
    assert len(indexed) == 5  # the ledger items only, not the claims beside them
    assert len(table) > len(indexed)

    def cursor() -> dict[str, Any]:
        found = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": CURSOR_KEY}})["Item"]["cursor"]["S"]
        return dict(json.loads(found))

    first = reconcile_once()
    assert first["read"] == 1  # the pass is spread over the period: 5 x 15 min / 24 h, rounded up
    assert cursor()["last_size"] == 5  # counted through the index when the pass began
    assert cursor()["done"] == 1

    runs = one_period(clock)  # each run continues where the last stopped
    assert sum(run["read"] for run in runs) == 4  # the rest of the pass, within its period
    assert runs[-1]["passFinished"]
    assert cursor()["done"] == 5
    assert reconcile_once()["read"] == 1  # a period after the last began, the next pass


def test_a_rokt_outage_changes_nothing_and_is_read_again_next_run(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    subscription = sandbox.subscribe(subscriberId="ann", tags=["A"])
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    before = actual_profiles(braze)
    bridge_down_while(
        sandbox,
        lambda: sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["Z"]}),
    )
    sandbox.fault(target="subscriptions", status=503, count=50)

    outage = reconcile_once()

    assert outage["failed"] == 1
    assert actual_profiles(braze) == before
    sandbox.clear_faults()
    clock.sleep(RUN_EVERY)
    assert reconcile_once()["healed"] == {"tags": 1}
    assert actual_profiles(braze) == expected_profiles(sandbox)


def test_an_active_subscription_found_right_has_its_ledger_expiry_pushed_back(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, aws: Aws, clock: VirtualTime
) -> None:
    subscription = sandbox.subscribe(subscriberId="ann")
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    key = {"id": {"S": f"rokt-calendar-bridge.sync-ledger#{subscription}"}}
    written = int(aws.dynamodb().get_item(TableName=TABLE, Key=key)["Item"]["expiration"]["N"])
    calls = braze.track_calls()

    clock.sleep(30 * 86_400)
    assert reconcile_once()["unchanged"] == 1

    item = aws.dynamodb().get_item(TableName=TABLE, Key=key)["Item"]
    assert int(item["expiration"]["N"]) >= written + 30 * 86_400 - 5
    assert "lease_owner" not in item
    assert braze.track_calls() == calls  # nothing drifted: no Braze call (no data points spent)


def test_a_reconciliation_racing_webhooks_for_the_same_subscriptions_leaves_braze_equal_to_rokt(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    ids = [sandbox.subscribe(subscriberId=f"user-{n}", calendarCode=f"cal-{n}", tags=["A"]) for n in range(6)]
    reconciling = make(settings, aws, braze, queue, clock)
    consuming = make(settings, aws, braze, queue, VirtualTime())
    with serving(consuming) as client:
        forward(client, sandbox.sent_webhooks())
        queue.drain(client, SYNC_BATCH_SIZE)
        seen = len(sandbox.sent_webhooks())
        bridge_down_while(  # missed: only the reconciliation can see these
            sandbox,
            lambda: [
                sandbox.control("POST", "subscriptions/update", {"subscriptionId": s, "tags": ["missed"]})
                for s in ids[:3]
            ],
        )
        for subscription in ids:  # then changes whose webhooks do arrive, while the reconciliation runs
            sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["live"]})
        live = [w for w in sandbox.sent_webhooks()[seen:] if w["eventDetails"]["subscription"]["calendarTags"]]
        live = [w for w in live if w["eventDetails"]["subscription"]["calendarTags"][0]["name"] == "live"]
        sandbox.fault(target="subscriptions", delay=0.3, count=6)  # the reconciliation's reads are slow
        done = threading.Event()

        def reconcile() -> None:
            try:
                reconciling.reconciler().subscriptions(ids, dry_run=False)
            finally:
                done.set()

        worker = threading.Thread(target=reconcile)
        worker.start()
        forward(client, live)
        queue.drain(client, SYNC_BATCH_SIZE)
        worker.join(30)
        assert done.is_set()
        queue.drain(client, SYNC_BATCH_SIZE)  # records that found a subscription leased came back

    assert actual_profiles(braze) == expected_profiles(sandbox)
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).ok


def test_bridgectl_reconcile_shows_what_would_change_without_an_e_mail_then_writes_it(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    from bridgectl import reconcile

    bridge = make(settings, aws, braze, queue, clock)
    kept = sandbox.subscribe(subscriberId="ann", email="ann@example.com", tags=["A"])
    moved = sandbox.subscribe(subscriberId="bob", email="bob@example.com", calendarCode="music")
    with serving(bridge) as client:
        forward(client, sandbox.sent_webhooks())
        queue.drain(client, SYNC_BATCH_SIZE)
    before = actual_profiles(braze)
    bridge_down_while(
        sandbox,
        lambda: [
            sandbox.control("POST", "subscriptions/update", {"subscriptionId": kept, "tags": ["B"]}),
            sandbox.control("POST", "subscriptions/update", {"subscriptionId": moved, "subscriberId": "cy"}),
        ],
    )
    found = bridge.reconciler()
    seen: list[int] = []

    looked = reconcile.check(found, found.everything(), dry_run=True, progress=lambda r: seen.append(r.read))
    shown = reconcile.table(looked.drifts)

    assert actual_profiles(braze) == before  # a dry run writes nothing
    assert seen
    assert seen[-1] == 2
    assert "rokt:tags" in shown
    assert "Sports/A/" in shown
    assert "Sports/B/" in shown
    assert "profile" in shown
    assert "external_id:bob" in shown
    assert "external_id:cy" in shown
    assert "@" not in shown  # rokt:subscriber_email values are masked
    assert reconcile.summary(looked).startswith("2 read, 0 unchanged, 2 drifted")

    written = reconcile.check(found, [[kept, moved]], dry_run=False, progress=lambda _: None)
    assert written.healed == {"tags": 1, "move": 1}
    assert actual_profiles(braze) == expected_profiles(sandbox)


def test_subscriptions_the_ledger_gains_after_an_empty_pass_are_still_read_within_the_period(
    synced: Client, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    """Found by the simulator: a pass over an empty ledger paced the next one on its size (none)."""
    assert reconcile_once()["read"] == 0  # the ledger is empty
    clock.sleep(PERIOD)
    subscription = sandbox.subscribe(subscriberId="ann", tags=["A"])
    forward(synced, sandbox.sent_webhooks())
    queue.drain(synced, SYNC_BATCH_SIZE)
    retag = {"subscriptionId": subscription, "tags": ["B"]}
    bridge_down_while(sandbox, lambda: sandbox.control("POST", "subscriptions/update", retag))

    one_period(clock)

    assert actual_profiles(braze) == expected_profiles(sandbox)


def test_what_one_pass_costs_per_subscription_is_what_the_capacity_model_prices(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, queue: QueuePair, clock: VirtualTime
) -> None:
    """Counted at the service boundaries: Rokt reads, DynamoDB calls by operation, Braze calls."""
    from bridgectl import capacity
    from localworld.aws_proxy import AwsProxy

    ids = [sandbox.subscribe(subscriberId=f"u{n}", calendarCode=f"c{n}") for n in range(30)]
    with serving(make(settings, aws, braze, queue, clock)) as client:
        forward(client, sandbox.sent_webhooks())
        queue.drain(client, SYNC_BATCH_SIZE)
    drifted = ids[:10]
    bridge_down_while(
        sandbox,
        lambda: [
            sandbox.control("POST", "subscriptions/update", {"subscriptionId": s, "tags": ["X"]}) for s in drifted
        ],
    )
    with AwsProxy(aws.url) as proxy:
        counted = Aws(proxy.url, aws.session)  # a period of one run: this run's share is the whole pass
        with serving(make(settings, counted, braze, queue, clock, reconcile_period_seconds=RUN_EVERY)):
            reads, calls = sandbox.count("subscriptions_requests"), braze.track_calls()
            proxy.counts.clear()
            run = reconcile_once()
            counts = dict(proxy.counts)

    assert run["read"] == 30
    assert run["healed"] == {"tags": 10}
    assert sandbox.count("subscriptions_requests") - reads == 30  # one Rokt read per subscription
    unchanged, healed = 30 - len(drifted), len(drifted)
    writes = unchanged * capacity.WRITES_UNCHANGED + healed * capacity.WRITES_DRIFTED
    assert counts["dynamodb.UpdateItem"] == writes  # the lease, then the expiry refresh or write-ahead + commit
    assert counts["dynamodb.Query"] <= 16 + 16 * 2  # each shard counted, then its pages (keys only)
    assert "dynamodb.Scan" not in counts
    assert counts["dynamodb.GetItem"] == 1  # the cursor, once per run
    batches = counts["dynamodb.PutItem"] - 1  # the cursor, after each batch and at the end
    assert 1 <= braze.track_calls() - calls <= min(healed, batches)  # only batches with something drifted


class SlowReads:
    """The reconciler's Rokt reads, each taking ``seconds`` of the clock; after each, ``meanwhile`` runs (what
    another container does between the reconciler's read and its Braze write) and its answer is kept."""

    def __init__(self, rokt: RoktSubscriptionsClient, clock: VirtualTime, seconds: float, meanwhile: Any) -> None:
        self._rokt = rokt
        self._clock = clock
        self._seconds = seconds
        self._meanwhile = meanwhile
        self.answers: list[Any] = []

    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None:
        state = self._rokt.get(subscription_id, deadline)
        self._clock.sleep(self._seconds)
        self.answers.append(self._meanwhile())
        return state


def test_a_webhook_s_consumer_finds_the_subscription_busy_between_the_reconciler_s_read_and_its_braze_write(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, queue: QueuePair
) -> None:
    """The reconciler holds each subscription's lease for its whole batch (not for no time): a webhook for
    the same subscription, consumed while the reconciler is between Rokt and Braze, goes back to the queue."""
    clock = StoppedTime()
    subscription = sandbox.subscribe(subscriberId="ann", tags=["A"])
    bridge = make(settings, aws, braze, queue, clock)
    with serving(bridge) as client:
        forward(client, sandbox.sent_webhooks())
        queue.drain(client, SYNC_BATCH_SIZE)
        seen = len(sandbox.sent_webhooks())
        sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["live"]})
        forward(client, sandbox.sent_webhooks()[seen:])  # queued, not consumed yet: the reconciler comes first
        calls = braze.track_calls()
        received: list[Any] = []

        def consume_the_webhook() -> dict[str, Any]:
            received.extend(queue.receive(SYNC_BATCH_SIZE))
            assert received, "the webhook was not queued"
            return queue.consume(client, received)

        reads = SlowReads(RoktSubscriptionsClient(bridge.rokt_transport()), clock, 2.0, consume_the_webhook)
        reconciler = Reconciler(
            reads,
            bridge.braze(),
            SyncLedger(aws.dynamodb(), settings.idempotency_table, clock=clock.time),
            LedgerIndex(aws.dynamodb(), settings.idempotency_table),
            fallback=settings.braze_identity_fallback,
            runtime=clock.runtime(),
        )

        report = reconciler.subscriptions([subscription], dry_run=False)

        [answer] = reads.answers
        assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == [m["MessageId"] for m in received]
        assert braze.track_calls() == calls + 1  # the reconciler's write only: the consumer wrote nothing
        assert report.healed == {"tags": 1}
        queue.release(received)
        queue.drain(client, SYNC_BATCH_SIZE)  # the webhook again, the lease given back: written

    assert actual_profiles(braze) == expected_profiles(sandbox)
