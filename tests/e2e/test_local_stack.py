"""The real thing on loopback: `chalice local` (from a copy of the `local` stage with only the
endpoints, prefix and table replaced) + moto server + the Rokt sandbox, all as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import requests

from localworld.localstack import LocalStack
from localworld.seed import LOCAL_WEBHOOK_SECRET
from stage.project import PROJECT_DIR, SAMPLE_BODY
from tests.conftest import Sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.isolated("e2e") as local:
        yield local


@pytest.fixture
def sandbox(stack: LocalStack) -> Sandbox:
    handle = Sandbox(stack.sandbox_url)
    handle.reset()
    return handle


def webhook(stack: LocalStack, path: str, body: Any, secret: str = LOCAL_WEBHOOK_SECRET) -> requests.Response:
    return requests.post(
        f"{stack.bridge_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {secret}", "User-Agent": "Braze Sender e2e"},
        timeout=35,
    )


def unique_body(**event: Any) -> dict[str, Any]:
    body = {**SAMPLE_BODY, "event": {**SAMPLE_BODY["event"], "eventId": f"Event_{uuid.uuid4().hex[:10]}_user42"}}
    body["event"].update(event)
    return body


def test_seed_webhook_is_delivered_through_chalice_local(stack: LocalStack, sandbox: Sandbox):
    body = unique_body()

    response = webhook(stack, "/v1/subscriptionevent/brazetest", body)

    assert response.status_code == 200
    assert response.json()["status"] == "delivered"
    assert response.headers["Content-Type"] == "application/json"
    [stored] = sandbox.events("brazetest")
    assert stored["event"]["eventId"] == body["event"]["eventId"]
    assert stored["event"]["notifyBefore"] == 15


def test_update_and_delete_through_chalice_local(stack: LocalStack, sandbox: Sandbox):
    body = unique_body()
    webhook(stack, "/v1/subscriptionevent/brazetest", body)

    updated = webhook(stack, "/v1/subscriptionevent/brazetest/update", {"event": {**body["event"], "title": "New"}})
    deleted = webhook(stack, "/v1/subscriptionevent/brazetest/delete", {"event": {"eventId": body["event"]["eventId"]}})

    assert (updated.status_code, deleted.status_code) == (200, 200)
    [stored] = sandbox.events("brazetest")
    assert (stored["event"]["title"], stored["deleted"]) == ("New", True)


def test_twenty_concurrent_duplicates_reach_rokt_once(stack: LocalStack, sandbox: Sandbox):
    body = unique_body()
    sandbox.fault(delay=0.5)  # keep the first delivery in flight while the others arrive

    def send(_: int) -> requests.Response:
        # chalice local's listen backlog is small: a connection it resets is retried, as Braze would
        for _attempt in range(3):
            try:
                return webhook(stack, "/v1/subscriptionevent/brazetest", body)
            except requests.ConnectionError:
                time.sleep(0.2)
        return webhook(stack, "/v1/subscriptionevent/brazetest", body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))

    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 429}
    assert 200 in statuses
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 429)
    assert sandbox.count("events_created") == 1
    after = webhook(stack, "/v1/subscriptionevent/brazetest", body)
    [first] = [a.json() for a in answers if a.status_code == 200 and "duplicate" not in a.json()]
    assert after.json() == {**first, "duplicate": True}


def test_slow_rokt_is_answered_504_before_api_gateway_gives_up(stack: LocalStack, sandbox: Sandbox):
    sandbox.fault(delay=40)
    started = time.monotonic()

    response = webhook(stack, "/v1/subscriptionevent/brazetest", unique_body())

    assert response.status_code == 504
    assert time.monotonic() - started < 29


def test_dry_run_over_http_sends_nothing(stack: LocalStack, sandbox: Sandbox):
    response = webhook(stack, "/v1/subscriptionevent/brazetest?dryRun=true", unique_body())

    assert response.status_code == 200
    assert response.json()["upstreamRequest"]["url"] == f"{stack.sandbox_url}/v1/subscriptionevent/brazetest"
    assert sandbox.requests() == []


@pytest.mark.parametrize("path", ["..%2F..%2Foauth2%2Ftoken", "a%3Fb%3Dc", "%2E%2E", "x" * 300, "a%0D%0AX-Evil:%201"])
def test_hostile_account_codes_never_reach_rokt_over_http(stack: LocalStack, sandbox: Sandbox, path: str):
    response = webhook(stack, f"/v1/subscriptionevent/{path}", unique_body())

    assert 400 <= response.status_code < 500
    assert sandbox.requests() == []


def test_bridge_logs_are_json_lines(stack: LocalStack, sandbox: Sandbox):
    webhook(stack, "/v1/subscriptionevent/brazetest", unique_body())
    time.sleep(0.2)

    summaries = [line for line in stack.log("bridge").splitlines() if '"message":"webhook handled"' in line]

    assert summaries
    assert LOCAL_WEBHOOK_SECRET not in stack.log("bridge")


SECOND_CONTAINER = """
import json, os, sys
from chalice.test import Client
import app
from chalicelib.settings import Settings
from chalicelib.wiring import Bridge
app.use_bridge(Bridge(Settings.from_env(os.environ)))
with Client(app.app, stage_name="local") as client:
    answer = client.http.post("/v1/subscriptionevent/brazetest", body=sys.argv[1],
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + sys.argv[2]})
print(json.dumps({"status": answer.status_code}))
"""


def test_another_process_reuses_the_shared_token_without_a_token_call(stack: LocalStack, sandbox: Sandbox):
    # Given chalice local delivered once, so a token is cached in SSM
    assert webhook(stack, "/v1/subscriptionevent/brazetest", unique_body()).status_code == 200
    issued = sandbox.count("tokens_issued")

    # When a brand-new process (another Lambda container) delivers a webhook
    second = subprocess.run(
        [sys.executable, "-c", SECOND_CONTAINER, json.dumps(unique_body()), LOCAL_WEBHOOK_SECRET],
        env={**os.environ, **stack.env},
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # Then it delivered with the token from SSM: no call to Rokt's token endpoint
    assert json.loads(second.stdout.strip().splitlines()[-1]) == {"status": 200}
    assert sandbox.count("tokens_issued") == issued


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "error"),
    [
        ("GET", "/v1/subscriptionevent/brazetest", {}, 405, "method_not_allowed"),
        ("POST", "/v1/subscriptionevent/brazetest", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("POST", "/v1/subscriptionevent/", {}, 422, "template_defect"),
        ("POST", "/v1/subscriptionevent//update", {}, 422, "template_defect"),
    ],
)
def test_chalice_local_answers_in_our_json_shape(
    stack: LocalStack, sandbox: Sandbox, method: str, path: str, headers: dict[str, str], status: int, error: str
):
    response = requests.request(
        method,
        f"{stack.bridge_url}{path}",
        data=json.dumps(unique_body()),
        headers={"Authorization": f"Bearer {LOCAL_WEBHOOK_SECRET}", "Content-Type": "application/json", **headers},
        timeout=35,
    )

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == error
    assert response.json()["message"]
    assert sandbox.requests() == []
