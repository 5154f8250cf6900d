"""The fleet-wide Rokt token cache: memory → SSM SecureString → OAuth: one token per lifetime for the whole fleet."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import EndpointConnectionError

from chalicelib.wiring import Bridge
from tests.conftest import CLIENT_SECRET, PREFIX, SECRET, Aws, Sandbox, make_bridge, post, seed_body, serving

if TYPE_CHECKING:
    from chalicelib.settings import Settings

CREATE = "/v1/subscriptionevent/brazetest"


class SsmOutage:
    """A botocore hook that makes every SSM call fail as if the endpoint were unreachable."""

    def __init__(self) -> None:
        self.active = False
        self.calls = 0

    def __call__(self, request: Any, **_: Any) -> None:
        self.calls += 1
        if self.active:
            raise EndpointConnectionError(endpoint_url=request.url)


def test_many_webhooks_need_one_token_call(client, sandbox: Sandbox):
    answers = [post(client, CREATE, seed_body(f"e_user{i}")).status_code for i in range(25)]

    assert answers == [200] * 25
    assert sandbox.count("tokens_issued") == 1


def test_second_container_reuses_the_ssm_token_without_a_token_call(settings: Settings, aws: Aws, sandbox: Sandbox):
    with serving(make_bridge(settings, aws)) as first:
        assert post(first, CREATE, seed_body("a_user1")).status_code == 200
    with serving(make_bridge(settings, aws)) as second:
        assert post(second, CREATE, seed_body("b_user1")).status_code == 200

    assert sandbox.count("tokens_issued") == 1
    assert sandbox.count("events_created") == 2


def test_shared_token_is_a_secure_string_with_expiry(client, sandbox: Sandbox, aws: Aws):
    post(client, CREATE, seed_body())
    ssm = aws.ssm()

    raw = ssm.get_parameter(Name=f"{PREFIX}/rokt/access-token", WithDecryption=True)["Parameter"]
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [f"{PREFIX}/rokt/access-token"]}])[
        "Parameters"
    ][0]

    assert described["Type"] == "SecureString"
    cached = json.loads(raw["Value"])
    assert set(cached) == {"access_token", "expires_at"}
    assert cached["access_token"] in sandbox.server.state.tokens


def test_token_endpoint_5xx_answers_503(client, sandbox: Sandbox):
    sandbox.fault(target="token", status=500, count=5)

    response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert response.json_body["error"] == "dependency_unavailable"
    assert sandbox.count("events_requests") == 0


def test_rejected_client_credentials_answer_503(client, sandbox: Sandbox):
    sandbox.configure(clients={"someone-else": "x"})

    response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert "credentials" in response.json_body["message"]


def test_ssm_outage_keeps_delivery_going_with_a_direct_token(settings: Settings, aws: Aws, sandbox: Sandbox, json_logs):
    # Given a warm container whose SSM then becomes unreachable and whose token gets revoked
    outage = SsmOutage()
    ssm = aws.ssm()
    ssm.meta.events.register("before-send.ssm", outage)
    bridge = Bridge(settings, ssm_client=ssm, dynamodb_client=aws.dynamodb())
    with serving(bridge) as client:
        assert post(client, CREATE, seed_body("warm_user1")).status_code == 200
        outage.active = True
        sandbox.revoke_tokens()

        # When the next webhook arrives
        response = post(client, CREATE, seed_body("during_outage_user1"))

    # Then it is delivered with a token fetched directly, and the logs say why
    assert response.status_code == 200
    assert sandbox.count("tokens_issued") == 2
    messages = json_logs.messages()
    assert "SSM token cache unreadable; fetching a Rokt token directly" in messages
    assert "SSM unreachable; using the last value read" in messages


def test_a_long_ssm_outage_logs_the_stale_fallback_once_per_backoff_not_per_webhook(
    settings: Settings, aws: Aws, sandbox: Sandbox, json_logs
):
    outage = SsmOutage()
    ssm = aws.ssm()
    ssm.meta.events.register("before-send.ssm", outage)
    with serving(Bridge(settings, ssm_client=ssm, dynamodb_client=aws.dynamodb())) as client:
        assert post(client, CREATE, seed_body("warm_user1")).status_code == 200
        outage.active = True
        answers = [post(client, CREATE, seed_body(f"during_{i}_user")).status_code for i in range(20)]

    assert answers == [200] * 20
    stale = [r for r in json_logs.records() if r["message"] == "SSM unreachable; using the last value read"]
    # one line per parameter served stale (the webhook secrets), not one per webhook
    assert 1 <= len(stale) <= 2, [r["parameter"] for r in stale]


def test_token_and_secrets_never_appear_in_logs(client, sandbox: Sandbox, json_logs):
    post(client, CREATE, seed_body("e_user1"))
    sandbox.revoke_tokens()
    post(client, CREATE, seed_body("e_user2"))
    post(client, CREATE, seed_body("e_user3"), secret="wrong-secret-value")

    logs = json_logs.text
    assert len(json_logs.summaries()) == 3
    issued = list(sandbox.server.state.tokens)
    for secret in [*issued, CLIENT_SECRET, SECRET, "wrong-secret-value"]:
        assert secret not in logs


def test_a_401_that_is_not_about_the_token_renews_it_once_not_per_webhook(client, sandbox: Sandbox):
    from tests.conftest import post, seed_body

    sandbox.fault(target="events", status=401, count=20)  # Rokt refuses whatever token it gets

    answers = [post(client, "/v1/subscriptionevent/brazetest", seed_body(f"r401_{i}_user")) for i in range(5)]

    assert [a.status_code for a in answers] == [502] * 5
    # the first token, and one forced renewal after the first 401: not one more per webhook
    assert sandbox.count("tokens_issued") == 2
