"""The Rokt sandbox's subscriptions and outbound webhooks behave as Rokt documents (docs/design.md,
"The Rokt sandbox")."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.support.receiver import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import Sandbox


@pytest.fixture
def hook(sandbox: Sandbox) -> Iterator[Receiver]:
    with Receiver() as receiver:
        control(sandbox, "POST", "webhooks/config", {"timeScale": 0.001, "retryEveryMinutes": 3, "retryForMinutes": 30})
        control(sandbox, "POST", "webhooks", {"url": receiver.url + "/rokt/webhooks/t"})
        yield receiver


def control(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    answer = requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5)
    answer.raise_for_status()
    return answer.json()


def subscribe(sandbox: Sandbox, **fields: Any) -> dict[str, Any]:
    body = {"accountCode": "brazetest", "calendarCode": "sports", "subscriberId": "user42", "email": "a@b.co", **fields}
    result: dict[str, Any] = control(sandbox, "POST", "subscribe", body)
    return result


def access_token(sandbox: Sandbox) -> str:
    answer = requests.post(
        f"{sandbox.url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("local-client-id", "local-client-secret"),
        timeout=5,
    )
    return str(answer.json()["access_token"])


def settle(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + 10
    while not control(sandbox, "GET", "webhooks/idle")["idle"]:
        assert time.monotonic() < deadline, "webhooks never settled"
        time.sleep(0.02)


def test_subscribe_sends_the_documented_envelope(sandbox: Sandbox, hook: Receiver) -> None:
    created = subscribe(sandbox, tags=["All Teams"], method="webcal")
    [envelope] = hook.wait_for(1)
    assert set(envelope) == {"eventId", "eventType", "eventDetails"}
    assert envelope["eventType"] == "Subscribe"
    details = envelope["eventDetails"]
    assert {"actionType", "accountId", "accountName", "accountCode"} <= set(details)
    assert details["subscription"]["calendarSubscriptionId"] == created["subscriptionId"]
    assert details["subscription"]["subscriptionMethod"] == "Webcal"
    assert details["subscription"]["calendarTags"][0]["tagId"]
    assert created["subscriptionType"] == "WebCal"  # the API's casing differs from the webhook's


def test_get_subscription_needs_a_token_and_reflects_unsubscribe(sandbox: Sandbox, hook: Receiver) -> None:
    created = subscribe(sandbox)
    url = f"{sandbox.url}/v1/subscription/{created['subscriptionId']}"
    assert requests.get(url, timeout=5).status_code == 401
    token = access_token(sandbox)
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, headers=auth, timeout=5).json()["isActive"] is True
    control(sandbox, "POST", "unsubscribe", {"subscriptionId": created["subscriptionId"]})
    state = requests.get(url, headers=auth, timeout=5).json()
    assert state["isActive"] is False
    assert state["subscriberId"] == "user42"
    envelopes = hook.wait_for(2)
    assert envelopes[1]["eventType"] == "Unsubscribe"
    assert envelopes[1]["eventDetails"]["calendarSubscriptionId"] == created["subscriptionId"]
    assert requests.get(f"{sandbox.url}/v1/subscription/nope", headers=auth, timeout=5).status_code == 404


def test_non_2xx_is_retried_until_2xx_with_the_same_event_id(sandbox: Sandbox, hook: Receiver) -> None:
    hook.answer(500, 302, 404)
    subscribe(sandbox)
    envelopes = hook.wait_for(4)
    assert len({e["eventId"] for e in envelopes}) == 1
    settle(sandbox)
    [endpoint] = control(sandbox, "GET", "webhooks")
    [entry] = endpoint["history"]
    assert [a["status"] for a in entry["attempts"]] == [500, 302, 404, 200]
    assert entry["state"] == "delivered"


def test_rokt_gives_up_after_its_retry_window(sandbox: Sandbox, hook: Receiver) -> None:
    hook.answer(*[503] * 20)
    subscribe(sandbox)
    settle(sandbox)
    [endpoint] = control(sandbox, "GET", "webhooks")
    entry = endpoint["history"][0]
    assert entry["state"] == "failed"
    assert len(entry["attempts"]) == 11  # at 0 min, then every 3 minutes up to 30


def test_test_event_redelivery_and_out_of_order(sandbox: Sandbox, hook: Receiver) -> None:
    control(sandbox, "POST", "webhooks/test")
    [test] = hook.wait_for(1)
    assert test["eventType"] == "Test"
    control(sandbox, "POST", "webhooks/redeliver", {"eventId": test["eventId"]})
    assert hook.wait_for(2)[1]["eventId"] == test["eventId"]
    control(sandbox, "POST", "webhooks/hold")
    created = subscribe(sandbox)
    control(sandbox, "POST", "unsubscribe", {"subscriptionId": created["subscriptionId"]})
    time.sleep(0.1)
    assert len(hook.received) == 2  # held back
    control(sandbox, "POST", "webhooks/release", {"order": "reverse"})
    assert [e["eventType"] for e in hook.wait_for(4)[2:]] == ["Unsubscribe", "Subscribe"]


def test_calendar_events_reaching_a_subscription_are_announced(sandbox: Sandbox, hook: Receiver) -> None:
    from tests.conftest import seed_body

    created = subscribe(sandbox)
    hook.wait_for(1)
    token = access_token(sandbox)
    body = seed_body("Launch_user42", notifyBefore=15)
    body["subscriptionIds"] = [created["subscriptionId"]]
    answer = requests.post(
        f"{sandbox.url}/v1/subscriptionevent/brazetest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert answer.status_code == 202
    added = hook.wait_for(2)[1]
    assert added["eventType"] == "SubscriptionEventAdded"
    assert added["eventDetails"]["subscriptionEvent"]["eventId"] == "Launch_user42"
    assert added["eventDetails"]["subscription"]["calendarSubscriptionId"] == created["subscriptionId"]


def test_only_loopback_targets_can_be_registered(sandbox: Sandbox) -> None:
    answer = requests.post(f"{sandbox.url}/_sandbox/webhooks", json={"url": "http://10.0.0.1/x"}, timeout=5)
    assert answer.status_code == 400
