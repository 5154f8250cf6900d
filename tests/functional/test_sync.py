"""Rokt → Braze through the real path: Rokt sandbox webhooks → the Chalice route → moto's SQS → the
app's sync handler → the Braze sandbox, with Rokt's GET /v1/subscription read over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chalicelib.sync.mapping import suffix
from chalicelib.sync.queue import SYNC_BATCH_SIZE, sync_queue_names
from tests.conftest import ROKT_TOKEN, Aws, Braze, Sandbox, make_bridge, serving
from tests.support.queues import QueuePair

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings
    from tests.conftest import LogCapture

ROUTE = f"/rokt/webhooks/{ROKT_TOKEN}"


@pytest.fixture
def sync_queue(aws: Aws) -> QueuePair:
    return QueuePair(aws.sqs(), *sync_queue_names("test"), 3, "sync_subscribers")


@pytest.fixture
def synced(settings: Settings, aws: Aws, braze: Braze, sync_queue: QueuePair) -> Iterator[Client]:
    bridge = make_bridge(settings, aws, braze_rest_endpoint=braze.url, sync_queue_url=sync_queue.url)
    with serving(bridge) as client:
        yield client


def send(client: Client, envelope: Any, path: str = ROUTE) -> Any:
    body = envelope if isinstance(envelope, (str, bytes)) else json.dumps(envelope)
    return client.http.post(path, headers={"Content-Type": "application/json"}, body=body)


def forward(client: Client, sandbox: Sandbox, envelopes: list[dict[str, Any]] | None = None) -> None:
    """What Rokt would POST to the registered URL, each answered 2xx."""
    for envelope in envelopes if envelopes is not None else sandbox.sent_webhooks():
        answer = send(client, envelope)
        assert answer.status_code in (200, 202), answer.json_body


def sync(client: Client, queue: QueuePair) -> None:
    queue.drain(client, SYNC_BATCH_SIZE)


def events(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in profile["custom_events"] if e["name"] == name]


def test_a_subscribe_becomes_the_documented_attributes_and_one_subscribe_event(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    subscription = sandbox.subscribe(
        email="ada@example.com", tags=["All Teams"], optIn1=True, countryCode="AU", method="webcal"
    )
    answer = send(synced, sandbox.sent_webhooks()[0])
    assert answer.status_code == 202
    assert answer.json_body == {"status": "accepted", "eventId": sandbox.sent_webhooks()[0]["eventId"]}
    sync(synced, sync_queue)

    profile = braze.user("user42")
    tail = suffix(subscription)
    attributes = profile["attributes"]
    assert attributes["rokt:subscription_id"] == [subscription]
    assert attributes["rokt:account_code"] == [f"brazetest/{tail}"]
    assert attributes["rokt:calendar_code"] == [f"sports/{tail}"]
    assert attributes["rokt:calendar_title"] == [f"Sports/{tail}"]
    assert attributes["rokt:subscription_method"] == [f"WebCal/{tail}"]
    assert attributes["rokt:tags"] == [f"Sports/All Teams/{tail}"]
    assert attributes["rokt:optIn1"] == [f"True/{tail}"]
    assert attributes["rokt:country_code"] == [f"AU/{tail}"]
    assert attributes["rokt:subscriber_email"] == [f"ada@example.com/{tail}"]
    assert {"rokt:account_id", "rokt:account_name", "rokt:calendar_id"} <= set(attributes)
    [subscribe] = events(profile, "subscribe")
    assert subscribe["properties"]["account_code"] == "brazetest"
    assert subscribe["properties"]["subscription_id"] == subscription
    # what the Braze → Rokt template renders from this profile
    assert attributes["rokt:account_code"][0].split("/")[0] == "brazetest"


@pytest.mark.parametrize("time_format", ["space", "offset", "naive", "iso"])
def test_every_time_rokt_sends_reaches_braze_as_iso_8601_utc(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair, time_format: str
) -> None:
    """createdAt (the subscribe event's time) and deactivatedDate (the unsubscribe's, when the webhook
    has no removedDateTimeUtc) in each of Rokt's formats: Braze gets "YYYY-MM-DDTHH:MM:SSZ"."""
    sandbox.configure(timeFormat=time_format)
    subscription = sandbox.subscribe()
    created = sandbox.control("GET", "subscriptions")[0]["createdAt"]
    sandbox.unsubscribe(subscription)
    subscribe, unsubscribe = sandbox.sent_webhooks()
    unsubscribe["eventDetails"]["subscription"].pop("removedDateTimeUtc")
    forward(synced, sandbox, [subscribe])
    sync(synced, sync_queue)
    forward(synced, sandbox, [unsubscribe])
    sync(synced, sync_queue)

    profile = braze.user("user42")
    [subscribed] = events(profile, "subscribe")
    [unsubscribed] = events(profile, "unsubscribe")
    iso_utc = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"
    assert re.fullmatch(iso_utc, subscribed["time"]), (created, subscribed["time"])
    assert re.fullmatch(iso_utc, unsubscribed["time"]), unsubscribed["time"]
    assert subscribed["time"] <= unsubscribed["time"]
    expected = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    expected = expected if expected.tzinfo else expected.replace(tzinfo=dt.UTC)
    assert subscribed["time"] == expected.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_two_subscriptions_coexist_until_one_is_cancelled(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    first = sandbox.subscribe(calendarCode="sports")
    second = sandbox.subscribe(calendarCode="music")
    forward(synced, sandbox)
    sync(synced, sync_queue)
    assert braze.user("user42")["attributes"]["rokt:subscription_id"] == [first, second]

    sandbox.unsubscribe(first)
    forward(synced, sandbox, sandbox.sent_webhooks()[2:])
    sync(synced, sync_queue)

    profile = braze.user("user42")
    assert profile["attributes"]["rokt:subscription_id"] == [second]
    assert profile["attributes"]["rokt:calendar_code"] == [f"music/{suffix(second)}"]
    assert all(not v.endswith(suffix(first)) for values in profile["attributes"].values() for v in values)
    assert len(events(profile, "unsubscribe")) == 1
    assert len(events(profile, "subscribe")) == 2


def test_redelivered_three_times_and_reversed_gives_the_same_profile_and_no_duplicate_events(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    kept = sandbox.subscribe(calendarCode="sports", tags=["A"])
    gone = sandbox.subscribe(calendarCode="music")
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": kept, "tags": ["B"]})
    sandbox.unsubscribe(gone)
    envelopes = sandbox.sent_webhooks()

    forward(synced, sandbox, list(reversed(envelopes)) * 3)
    sync(synced, sync_queue)

    profile = braze.user("user42")
    tail = suffix(kept)
    assert profile["attributes"]["rokt:subscription_id"] == [kept]
    assert profile["attributes"]["rokt:tags"] == [f"Sports/B/{tail}"]
    assert sorted(e["name"] for e in profile["custom_events"]) == ["subscribe", "subscribe", "unsubscribe"]


def test_a_changed_tag_replaces_the_old_one(synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair):
    subscription = sandbox.subscribe(tags=["A", "B"])
    forward(synced, sandbox)
    sync(synced, sync_queue)
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["C"]})
    forward(synced, sandbox, sandbox.sent_webhooks()[1:])
    sync(synced, sync_queue)
    assert braze.user("user42")["attributes"]["rokt:tags"] == [f"Sports/C/{suffix(subscription)}"]


def test_test_and_unused_events_are_acknowledged_and_never_written(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    sandbox.control("POST", "webhooks/test")
    [test] = sandbox.sent_webhooks()
    for envelope in (
        test,
        {"eventId": "e-2", "eventType": "SubscriptionEventUpdated", "eventDetails": {}},
        {"eventId": "e-3", "eventType": "SomethingNew"},
    ):
        answer = send(synced, envelope)
        assert answer.status_code == 200
        assert answer.json_body["status"] == "ignored"
    assert sync_queue.receive() == []
    assert braze.track_calls() == 0


def test_the_docs_misspelled_details_update_type_is_synced(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    sandbox.configure(detailsUpdatedType="SubscriptionDetailsUpdate")
    subscription = sandbox.subscribe(tags=["A"])
    forward(synced, sandbox)
    sync(synced, sync_queue)
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["Z"]})
    update = sandbox.sent_webhooks()[-1]
    assert update["eventType"] == "SubscriptionDetailsUpdate"
    assert send(synced, update).status_code == 202
    sync(synced, sync_queue)
    assert braze.user("user42")["attributes"]["rokt:tags"] == [f"Sports/Z/{suffix(subscription)}"]


def test_calendar_event_added_and_removed_are_custom_events(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    subscription = sandbox.subscribe()
    details = {"accountCode": "brazetest", "subscription": {"calendarSubscriptionId": subscription}}
    added = {
        "eventType": "SubscriptionEventAdded",
        "eventDetails": {**details, "subscriptionEvent": {"eventId": 391756, "title": "Final"}},
    }
    removed = {
        "eventType": "SubscriptionEventRemoved",
        "eventDetails": {**details, "subscriptionEvent": {"eventId": "391756"}},
    }
    forward(synced, sandbox, [{"eventId": "w-1", **added}, {"eventId": "w-2", **removed}, {"eventId": "w-1", **added}])
    sync(synced, sync_queue)
    profile = braze.user("user42")
    [event_added] = events(profile, "calendar_event_added")
    assert event_added["properties"]["event_id"] == "391756"
    assert event_added["properties"]["title"] == "Final"
    assert len(events(profile, "calendar_event_removed")) == 1


def test_without_subscriber_id_the_email_identifies_or_the_webhook_is_skipped(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair, json_logs: LogCapture
) -> None:
    sandbox.subscribe(subscriberId=None, email="grace@example.com")
    sandbox.subscribe(subscriberId=None, email="grace@example.com", calendarCode="music")
    for index, (fallback, expected_calls) in enumerate((("email", 1), ("none", 0))):
        braze.control("POST", "reset")
        braze.control("POST", "seed", [{"external_id": "known", "email": "grace@example.com"}])
        bridge = make_bridge(
            settings,
            aws,
            braze_rest_endpoint=braze.url,
            sync_queue_url=sync_queue.url,
            braze_identity_fallback=fallback,
            idempotency_table=settings.idempotency_table,
        )
        with serving(bridge) as client:
            forward(client, sandbox, [sandbox.sent_webhooks()[index]])
            sync(client, sync_queue)
        assert braze.track_calls() == expected_calls
        attributes = braze.user("known")["attributes"]
        assert ("rokt:subscription_id" in attributes) is (fallback == "email")
    assert "grace@example.com" not in json_logs.text


def test_wrong_token_is_401_and_no_token_reaches_a_log(synced: Client, sandbox: Sandbox, json_logs: LogCapture):
    sandbox.subscribe()
    envelope = sandbox.sent_webhooks()[0]
    assert send(synced, envelope, "/rokt/webhooks/not-the-token").status_code == 401
    assert send(synced, envelope).status_code == 202
    assert ROKT_TOKEN not in json_logs.text
    assert "not-the-token" not in json_logs.text
    summaries = [r for r in json_logs.records() if r["message"] == "rokt webhook received"]
    assert [s["path"] for s in summaries] == ["/rokt/webhooks/{token}"] * 2


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ({"eventType": "Subscribe"}, 400, "validation_failed"),
        ({"eventId": 7, "eventType": "Subscribe"}, 400, "validation_failed"),
        # text that is not encodable (a lone surrogate) or not allowed in an SQS attribute (U+FFFF)
        ('{"eventId": "a\\ud800b", "eventType": "Subscribe", "eventDetails": {}}', 400, "validation_failed"),
        ('{"eventId": "e-1", "eventType": "Subscribe\\udfff", "eventDetails": {}}', 400, "validation_failed"),
        ('{"eventId": "e-1\\uffff", "eventType": "Test"}', 400, "validation_failed"),
        ("[" * 100_000, 400, "invalid_json"),
        # parses, but deeper than any webhook (the simulator's seed 214: a 500 from queuing it)
        ('{"eventId": "e-1", "eventType": "Subscribe", "x": ' + "[" * 900 + "]" * 900 + "}", 400, "invalid_json"),
        ('{"eventId": "e-1", "eventType": "Subscribe", "x": ' + "[" * 32 + "]" * 32 + "}", 400, "invalid_json"),
        ('{"eventId": "x", "eventType": "Test", "n": ' + "9" * 5000 + "}", 400, "invalid_json"),
        ("x" * (300 * 1024), 413, "payload_too_large"),
    ],
)
def test_bodies_that_can_never_succeed_are_4xx(
    synced: Client, braze: Braze, sync_queue: QueuePair, body: Any, status: int, error: str
) -> None:
    answer = send(synced, body)
    assert answer.status_code == status
    assert answer.json_body["error"] == error
    assert sync_queue.receive() == []


def test_without_sync_configuration_the_route_is_503_and_delivery_is_unaffected(client: Client, sandbox: Sandbox):
    sandbox.subscribe()
    answer = send(client, sandbox.sent_webhooks()[0])
    assert answer.status_code == 503
    assert answer.json_body["error"] == "dependency_unavailable"


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
details = st.fixed_dictionaries(
    {
        "accountCode": st.just("brazetest") | json_value,
        "subscription": st.just({"calendarSubscriptionId": "sub-1"}) | json_value,
    },
    optional={"calendarSubscriptionId": json_value, "subscriptionEvent": st.just({"eventId": 5}) | json_value},
)
event_types = st.sampled_from(
    ["Subscribe", "Unsubscribe", "SubscriptionEventAdded", "SubscriptionDetailsUpdate", "Test"]
)
plausible = st.fixed_dictionaries(
    {"eventId": st.uuids().map(str) | json_value, "eventType": event_types | json_value, "eventDetails": details}
)
envelopes = st.fixed_dictionaries(
    {}, optional={"eventId": json_value, "eventType": json_value, "eventDetails": json_value}
)
hostile = st.one_of(
    plausible.map(lambda e: json.dumps(e, allow_nan=True)),  # NaN and Infinity are what Python's json emits
    envelopes.map(json.dumps),
    json_value.map(json.dumps),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=200).map(lambda depth: "[" * depth * 500),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(body=hostile)
def test_property_hostile_bodies_get_4xx_or_2xx_never_5xx_and_never_reach_braze(
    synced: Client, braze: Braze, sync_queue: QueuePair, body: Any
) -> None:
    answer = send(synced, body)

    assert answer.status_code in (200, 202, 400, 413), answer.body
    assert braze.track_calls() == 0
    queued = sync_queue.receive()
    assert len(queued) == (1 if answer.status_code == 202 else 0)
    for message in queued:
        sync_queue.sqs.delete_message(QueueUrl=sync_queue.url, ReceiptHandle=message["ReceiptHandle"])
    event(f"HTTP {answer.status_code}")


def test_backfill_writes_existing_subscriptions_once_without_custom_events_and_resumes(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair, tmp_path
) -> None:
    from bridgectl import backfill
    from chalicelib.sync.envelope import Account

    ids = [sandbox.subscribe(subscriberId=f"old{i}", calendarCode=f"c{i}") for i in range(12)]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"run": "switch", "queued": 10, "total": 12}))  # an earlier run stopped here
    account = Account("brazetest")

    queued = backfill.backfill(
        sync_queue.sqs, sync_queue.url, ids, account, run="switch", state_file=state, show_progress=False
    )
    assert queued == 2
    state.unlink()
    assert backfill.backfill(sync_queue.sqs, sync_queue.url, ids, account, run="switch", state_file=state) == 12
    sync(synced, sync_queue)
    calls = braze.track_calls()
    assert calls == 1  # 14 webhooks, 12 subscriptions: one /users/track call

    for i, subscription in enumerate(ids):
        profile = braze.user(f"old{i}")
        assert profile["attributes"]["rokt:subscription_id"] == [subscription]
        assert profile["custom_events"] == []
    state.unlink()
    backfill.backfill(sync_queue.sqs, sync_queue.url, ids, account, run="switch", state_file=state)
    sync(synced, sync_queue)
    assert braze.track_calls() == calls  # the same run again writes nothing


@pytest.mark.parametrize(
    "where",
    ["subscription", "eventDetails", "eventDetails, the subscription's own blank", "eventDetails, the other not text"],
)
def test_an_unsubscribe_is_synced_from_any_documented_place_of_its_subscription_id(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair, where: str
) -> None:
    """Rokt's docs list the id at eventDetails level and show it inside ``subscription`` (docs/rokt-to-braze.md)."""
    subscription = sandbox.subscribe()
    forward(synced, sandbox)
    sync(synced, sync_queue)
    sandbox.unsubscribe(subscription)
    unsubscribe = sandbox.sent_webhooks()[-1]
    details = unsubscribe["eventDetails"]
    details.pop("calendarSubscriptionId", None)
    details["subscription"].pop("calendarSubscriptionId", None)
    if where == "subscription":
        details["subscription"]["calendarSubscriptionId"] = subscription
    else:
        details["calendarSubscriptionId"] = subscription
        if "blank" in where:
            details["subscription"]["calendarSubscriptionId"] = "  "
        elif "not text" in where:
            details["subscription"]["calendarSubscriptionId"] = 12345

    assert send(synced, unsubscribe).status_code == 202
    sync(synced, sync_queue)

    assert not braze.user("user42")["attributes"].get("rokt:subscription_id")
    assert len(events(braze.user("user42"), "unsubscribe")) == 1
    assert sync_queue.dead_letters() == []


@pytest.mark.parametrize(
    ("event_type", "details", "field"),
    [
        (
            "Unsubscribe",
            {"accountCode": "brazetest", "subscription": {"removedDateTimeUtc": "2020-05-06 01:18:49"}},
            "calendarSubscriptionId",
        ),
        ("Subscribe", {"accountCode": "brazetest"}, "calendarSubscriptionId"),
        ("SubscriptionDetailsUpdate", {"subscription": {"calendarSubscriptionId": "s-1"}}, "accountCode"),
        ("SubscriptionEventAdded", None, "eventDetails"),
        (
            "SubscriptionEventAdded",
            {"accountCode": "b", "subscription": {"calendarSubscriptionId": "s-1"}},
            "subscriptionEvent.eventId",
        ),
    ],
)
def test_a_subscription_webhook_the_bridge_cannot_use_is_accepted_and_dead_lettered_with_its_reason(
    synced: Client, braze: Braze, sync_queue: QueuePair, event_type: str, details: Any, field: str
) -> None:
    """Never refused into Rokt's void (it gives up after 30 minutes): 2xx, kept in the DLQ for an operator."""
    envelope: dict[str, Any] = {"eventId": "w-unusable", "eventType": event_type}
    if details is not None:
        envelope["eventDetails"] = details

    answer = send(synced, envelope)
    assert answer.status_code == 202, answer.json_body
    assert answer.json_body == {"status": "accepted", "eventId": "w-unusable"}
    sync(synced, sync_queue)

    [dead] = sync_queue.dead_letters()
    reason = dead["MessageAttributes"]["deadLetterReason"]["StringValue"]
    assert reason.startswith("unusable webhook:"), reason
    assert field in reason
    assert dead["MessageAttributes"]["eventId"]["StringValue"] == "w-unusable"
    assert braze.track_calls() == 0


@pytest.fixture
def dev_sync_queue(aws: Aws) -> QueuePair:
    """The sync queue `backfill --stage dev` finds by name (the dev stage sets no SYNC_QUEUE_URL)."""
    return QueuePair(aws.sqs(), *sync_queue_names("dev"), 3, "sync_subscribers")


def test_the_documented_backfill_keeps_the_account_id_and_name_the_live_flow_wrote(
    settings: Settings, aws: Aws, sandbox: Sandbox, braze: Braze, dev_sync_queue: QueuePair, cli_env, tmp_path
) -> None:
    """The documented `bridgectl --stage S backfill --account-code brazetest [--file ids.txt]`, without
    --account-id/--account-name. Backfill → sync queue → consumer → Braze sandbox; what the webhook
    cannot see is not gone."""
    from bridgectl import cli

    subscription = sandbox.subscribe(tags=["A"])
    tail = suffix(subscription)
    bridge = make_bridge(settings, aws, braze_rest_endpoint=braze.url, sync_queue_url=dev_sync_queue.url)
    with serving(bridge) as client:
        forward(client, sandbox)  # the live Subscribe names the account's id and name
        sync(client, dev_sync_queue)
        written = braze.user("user42")["attributes"]
        assert len(written["rokt:account_id"]) == 1
        assert written["rokt:account_name"] == [f"Brazetest/{tail}"]
        ids = tmp_path / "ids.txt"
        ids.write_text(f"# switching from Rokt's push\n{subscription}\n")
        state = tmp_path / "state.json"

        code = cli.main(
            [
                "--stage",
                "dev",
                "backfill",
                "--account-code",
                "brazetest",
                "--file",
                str(ids),
                "--state-file",
                str(state),
            ]
        )
        assert code == 0
        assert dev_sync_queue.drain(client, SYNC_BATCH_SIZE) == 1

    profile = braze.user("user42")
    assert braze.track_calls() == 2  # the backfill was written, and took nothing away
    assert profile["attributes"]["rokt:account_id"] == written["rokt:account_id"]
    assert profile["attributes"]["rokt:account_name"] == [f"Brazetest/{tail}"]
    assert profile["attributes"] == written
    assert [e["name"] for e in profile["custom_events"]] == ["subscribe"]


def test_a_webhook_without_the_account_id_and_name_leaves_them_as_written(
    synced: Client, sandbox: Sandbox, braze: Braze, sync_queue: QueuePair
) -> None:
    subscription = sandbox.subscribe(tags=["A"])
    forward(synced, sandbox)
    sync(synced, sync_queue)
    written = braze.user("user42")["attributes"]
    sandbox.control("POST", "subscriptions/update", {"subscriptionId": subscription, "tags": ["B"]})
    update = sandbox.sent_webhooks()[-1]
    del update["eventDetails"]["accountId"], update["eventDetails"]["accountName"]

    forward(synced, sandbox, [update])
    sync(synced, sync_queue)

    attributes = braze.user("user42")["attributes"]
    assert attributes["rokt:tags"] == [f"Sports/B/{suffix(subscription)}"]
    assert attributes["rokt:account_id"] == written["rokt:account_id"]
    assert attributes["rokt:account_name"] == written["rokt:account_name"]
