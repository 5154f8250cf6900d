"""The Rokt adapter (client + token provider) against the sandbox over real HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities.parameters import SSMProvider

from chalicelib.clock import Deadline
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.validation import parse_request
from chalicelib.errors import RoktRejected
from chalicelib.rokt.events import RoktCalendarClient
from chalicelib.rokt.tokens import TokenEndpoint, TokenProvider
from chalicelib.rokt.transport import RoktTransport, retry_after_seconds
from chalicelib.secrets import SecretStore
from tests.conftest import PREFIX, Aws, Sandbox, seed_body


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def provider(sandbox: Sandbox, aws: Aws, clock: Clock, jitter_draw: float = 0.5) -> TokenProvider:
    store = SecretStore(SSMProvider(boto3_client=aws.ssm()), PREFIX)
    endpoint = TokenEndpoint(requests.Session(), sandbox.url, connect_timeout=1, read_timeout=2)
    return TokenProvider(endpoint, store, clock=clock, rng=lambda: jitter_draw)


def client_for(sandbox: Sandbox, tokens: TokenProvider, **kwargs: Any) -> RoktCalendarClient:
    transport = RoktTransport(sandbox.url, tokens, requests.Session(), connect_timeout=1, read_timeout=2)
    return RoktCalendarClient(transport, **kwargs)


def deadline() -> Deadline:
    return Deadline(10)


def request(action: Action = Action.CREATE, event_id: str = "Event_0001_user42", account: str = "brazetest"):
    body = seed_body(event_id) if action is Action.CREATE else {"event": seed_body(event_id)["event"]}
    return parse_request(action, account, body)


def test_expired_token_is_renewed(sandbox: Sandbox, aws: Aws):
    clock = Clock()
    tokens = provider(sandbox, aws, clock)
    rokt = client_for(sandbox, tokens)
    rokt.send(rokt.plan(request(event_id="a_1")), deadline())

    clock.now += 301
    result = rokt.send(rokt.plan(request(event_id="a_2")), deadline())

    assert result.status == 202
    assert sandbox.count("tokens_issued") == 2


def test_token_is_refreshed_ahead_of_expiry_not_on_every_call(sandbox: Sandbox, aws: Aws):
    clock = Clock()
    tokens = provider(sandbox, aws, clock, jitter_draw=0.0)
    first = tokens.get(deadline())

    clock.now += 239  # 61 s before a 300 s token expires: still fresh
    same = tokens.get(deadline())
    clock.now += 2  # inside the 60 s refresh-ahead window
    renewed = tokens.get(deadline())

    assert same == first
    assert renewed != first
    assert sandbox.count("tokens_issued") == 2


def test_eight_containers_share_one_token_per_lifetime(sandbox: Sandbox, aws: Aws):
    clock = Clock()
    fleet = [provider(sandbox, aws, clock, jitter_draw=i / 8) for i in range(8)]

    for _ in range(50):
        for container in fleet:
            container.get(deadline())
        clock.now += 4  # 200 s in all, inside one 300 s lifetime minus the refresh window

    assert sandbox.count("tokens_issued") == 1
    assert sandbox.count("token_requests") == 1


def test_fleet_renews_with_few_calls_when_the_shared_token_ages(sandbox: Sandbox, aws: Aws):
    clock = Clock()
    fleet = [provider(sandbox, aws, clock, jitter_draw=i / 8) for i in range(8)]

    for _ in range(150):
        for container in fleet:
            container.get(deadline())
        clock.now += 4  # 600 s: two token lifetimes

    assert sandbox.count("tokens_issued") <= 3


def test_paths_percent_encode_account_and_event_id(sandbox: Sandbox, aws: Aws):
    tokens = provider(sandbox, aws, Clock())
    rokt = client_for(sandbox, tokens)
    hostile = EventRequest(
        Action.DELETE, "brazetest", "../../oauth2/token?x=1#y", {"eventId": "../../oauth2/token?x=1#y"}
    )

    with pytest.raises(RoktRejected) as caught:
        rokt.send(rokt.plan(hostile), deadline())

    assert caught.value.upstream_status == 404
    [sent] = [r for r in sandbox.requests() if r["method"] == "DELETE"]
    assert sent["rawSegments"] == ["v1", "subscriptionevent", "brazetest", "..%2F..%2Foauth2%2Ftoken%3Fx%3D1%23y"]


def test_flat_update_shape_sends_event_fields_at_top_level(sandbox: Sandbox, aws: Aws):
    rokt = client_for(sandbox, provider(sandbox, aws, Clock()), update_shape="flat")

    plan = rokt.plan(request(Action.UPDATE))

    assert plan.body is not None
    assert plan.body["eventId"] == "Event_0001_user42"
    assert "event" not in plan.body


def test_token_is_cached_in_ssm_as_json(sandbox: Sandbox, aws: Aws):
    tokens = provider(sandbox, aws, Clock())

    value = tokens.get(deadline())

    stored = aws.ssm().get_parameter(Name=f"{PREFIX}/rokt/access-token", WithDecryption=True)
    assert json.loads(stored["Parameter"]["Value"])["access_token"] == value


class _Resp:
    def __init__(self, retry_after: str | None) -> None:
        self.headers = {"Retry-After": retry_after} if retry_after is not None else {}


@pytest.mark.parametrize(
    ("header", "expected"),
    [("42", 42), (None, 30), ("0", 1), ("99999", 3600), ("soon", 30)],
)
def test_retry_after_parsing(header: str | None, expected: int):
    assert retry_after_seconds(_Resp(header)) == expected  # type: ignore[arg-type]


def test_retry_after_accepts_http_dates():
    in_two_minutes = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))

    assert 100 <= retry_after_seconds(_Resp(in_two_minutes)) <= 120  # type: ignore[arg-type]
