"""Each Rokt answer class becomes the status that makes Braze do the right thing."""

from __future__ import annotations

import time

import pytest

from localworld.localstack import free_port
from tests.conftest import Sandbox, make_bridge, post, seed_body, serving

CREATE = "/v1/subscriptionevent/brazetest"


def test_rokt_validation_error_becomes_422_with_upstream_details(client, sandbox: Sandbox):
    sandbox.fault(status=400, body={"error": "validation_error", "errors": ["bad title"]})

    response = post(client, CREATE, seed_body())

    assert response.status_code == 422
    assert response.json_body["error"] == "rejected_by_rokt"
    assert response.json_body["upstreamStatus"] == 400
    assert response.json_body["upstreamBody"] == {"error": "validation_error", "errors": ["bad title"]}


def test_rokt_error_bodies_never_echo_subscriber_emails(client, sandbox: Sandbox):
    sandbox.fault(status=409, body={"error": "conflict", "subscriber": "jane.doe@example.com"})

    response = post(client, CREATE, seed_body())

    assert response.status_code == 422
    assert "jane.doe@example.com" not in response.body.decode()


def test_rokt_429_passes_retry_after_to_braze(client, sandbox: Sandbox):
    sandbox.fault(status=429, retryAfter="42")

    response = post(client, CREATE, seed_body())

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "42"
    assert response.json_body["error"] == "rate_limited"
    assert sandbox.count("events_requests") == 1


def test_rokt_429_without_retry_after_gets_a_default(client, sandbox: Sandbox):
    sandbox.fault(status=429)

    response = post(client, CREATE, seed_body())

    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


def test_rokt_5xx_is_retried_then_delivered(client, sandbox: Sandbox):
    sandbox.fault(status=503, count=2)

    response = post(client, CREATE, seed_body())

    assert response.status_code == 200
    assert sandbox.count("events_requests") == 3
    assert sandbox.count("events_created") == 1


def test_rokt_persistent_5xx_becomes_502_after_bounded_retries(client, sandbox: Sandbox):
    sandbox.fault(status=500, count=10)

    response = post(client, CREATE, seed_body())

    assert response.status_code == 502
    assert response.json_body == {
        "error": "upstream_error",
        "message": "Rokt answered HTTP 500",
        "upstreamStatus": 500,
    }
    assert sandbox.count("events_requests") == 3


def test_dropped_connection_becomes_502_without_resending(client, sandbox: Sandbox):
    sandbox.fault(drop=True)

    response = post(client, CREATE, seed_body())

    assert response.status_code == 502
    assert sandbox.count("events_requests") == 1


def test_slow_rokt_becomes_504_inside_the_budget(client, sandbox: Sandbox, bridge):
    sandbox.fault(delay=3.0)
    started = time.monotonic()

    response = post(client, CREATE, seed_body())

    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json_body["error"] == "upstream_timeout"
    assert elapsed < bridge.settings.request_budget_seconds


def test_revoked_token_is_refreshed_once_and_the_webhook_delivered(client, sandbox: Sandbox):
    post(client, CREATE, seed_body("warm_user1"))
    sandbox.revoke_tokens()

    response = post(client, CREATE, seed_body("after_revoke_user1"))

    assert response.status_code == 200
    assert sandbox.count("tokens_issued") == 2
    assert sandbox.count("events_created") == 2


def test_unreachable_rokt_token_endpoint_becomes_503(settings, aws):
    dead = f"http://127.0.0.1:{free_port()}"
    with serving(make_bridge(settings, aws, rokt_api_url=dead)) as client:
        response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert response.json_body["error"] == "dependency_unavailable"


@pytest.mark.parametrize("account", ["..%2F..%2Foauth2%2Ftoken", "a%3Fb", "x" * 200, "%2E%2E", "a%0d%0aX-Evil:1"])
def test_hostile_account_code_never_reaches_rokt(client, sandbox: Sandbox, account: str):
    response = post(client, f"/v1/subscriptionevent/{account}", seed_body())

    assert response.status_code in (400, 403, 404)
    assert sandbox.requests() == []
