"""Braze webhook → bridge → Rokt sandbox over real HTTP, through chalice's test client."""

from __future__ import annotations

from tests.conftest import SUBSCRIPTION, Sandbox, post, seed_body


def test_create_delivers_the_seed_body_to_the_account_path(client, sandbox: Sandbox):
    # Given the seed's sample webhook
    body = seed_body()

    # When Braze posts it
    response = post(client, "/v1/subscriptionevent/brazetest", body)

    # Then Rokt got exactly the normalized event on the account's path, and Braze is told so
    assert response.status_code == 200
    assert response.json_body == {
        "status": "delivered",
        "eventId": "Event_0001_user42",
        "accountCode": "brazetest",
        "upstreamStatus": 202,
    }
    [sent] = [r for r in sandbox.requests() if r["path"].startswith("/v1/")]
    assert sent["method"] == "POST"
    assert sent["path"] == "/v1/subscriptionevent/brazetest"
    assert sent["body"] == {
        "event": {
            "eventId": "Event_0001_user42",
            "title": "Event Title",
            "description": "Event Description",
            "location": "Event Location",
            "start": "2019-02-21T15:00:00",
            "end": "2019-02-21T16:00:00",
            "timezone": "Eastern Standard Time",
            "notifyBefore": 15,
        },
        "subscriptionIds": [SUBSCRIPTION],
    }
    assert response.headers["Content-Type"] == "application/json"


def test_create_translates_iana_zone_and_forwards_unknown_fields(client, sandbox: Sandbox):
    body = seed_body(timezone="America/New_York", campaign="summer")

    response = post(client, "/v1/subscriptionevent/brazetest", body)

    assert response.status_code == 200
    [stored] = sandbox.events("brazetest")
    assert stored["event"]["timezone"] == "Eastern Standard Time"
    assert stored["event"]["timezoneIanaId"] == "America/New_York"
    assert stored["event"]["campaign"] == "summer"


def test_update_accepts_wrapped_and_flat_bodies(client, sandbox: Sandbox):
    post(client, "/v1/subscriptionevent/brazetest", seed_body())
    wrapped = {"event": {**seed_body()["event"], "title": "Moved"}}
    flat = {**seed_body()["event"], "title": "Moved again"}

    first = post(client, "/v1/subscriptionevent/brazetest/update", wrapped)
    second = post(client, "/v1/subscriptionevent/brazetest/update", flat)

    assert (first.status_code, second.status_code) == (200, 200)
    [stored] = sandbox.events("brazetest")
    assert stored["event"]["title"] == "Moved again"
    assert stored["updates"] == 2
    sent = [r for r in sandbox.requests() if r["path"].endswith("/update")]
    assert all(set(r["body"]) == {"event"} for r in sent)


def test_delete_cancels_the_event(client, sandbox: Sandbox):
    post(client, "/v1/subscriptionevent/brazetest", seed_body())

    response = post(client, "/v1/subscriptionevent/brazetest/delete", {"event": {"eventId": "Event_0001_user42"}})

    assert response.status_code == 200
    assert response.json_body["status"] == "delivered"
    [stored] = sandbox.events("brazetest")
    assert stored["deleted"] is True
    assert any(
        r["method"] == "DELETE" and r["path"].endswith("/brazetest/Event_0001_user42") for r in sandbox.requests()
    )


def test_dry_run_answers_the_upstream_request_and_sends_nothing(client, sandbox: Sandbox):
    response = post(client, "/v1/subscriptionevent/brazetest?dryRun=true", seed_body())

    assert response.status_code == 200
    assert response.json_body["status"] == "dry_run"
    upstream = response.json_body["upstreamRequest"]
    assert upstream["method"] == "POST"
    assert upstream["url"] == f"{sandbox.url}/v1/subscriptionevent/brazetest"
    assert upstream["body"]["event"]["notifyBefore"] == 15
    assert "Bearer" not in response.body.decode()
    assert sandbox.requests() == []


def test_dry_run_stores_no_idempotency_record(client, sandbox: Sandbox):
    post(client, "/v1/subscriptionevent/brazetest?dryRun=true", seed_body())

    response = post(client, "/v1/subscriptionevent/brazetest", seed_body())

    assert response.status_code == 200
    assert "duplicate" not in response.json_body
    assert sandbox.count("events_created") == 1


def test_health_is_open_and_reveals_nothing(client):
    response = client.http.get("/health")

    assert response.status_code == 200
    assert set(response.json_body) == {"status", "version"}
    assert response.json_body["status"] == "ok"
