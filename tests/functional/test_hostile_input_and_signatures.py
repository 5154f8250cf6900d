"""Hostile and broken input: refused clearly, never a 5xx, never an upstream call, nothing leaked."""

from __future__ import annotations

import json
import re
import string
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.auth import sign
from chalicelib.delivery.validation import KNOWN_EVENT_FIELDS
from chalicelib.wiring import Bridge
from localworld.campaign import Renderer, WebhookTemplate
from stage.braze_templates import braze_templates
from tests.conftest import PREFIX, SECRET, SUBSCRIPTION, Aws, Sandbox, make_bridge, post, seed_body, serving

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings
    from tests.conftest import LogCapture

CREATE = "/v1/subscriptionevent/brazetest"
SIGNING_KEY = "signing-key-for-tests-0123456789"
BRAZE_PLACEHOLDER_URL = "https://<api-id>.execute-api.<region>.amazonaws.com/api"
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.fixture
def signed_client(settings: Settings, aws: Aws, sandbox: Sandbox) -> Iterator[Client]:
    aws.ssm().put_parameter(Name=f"{PREFIX}/webhook-signing-keys", Value=f"old-key, {SIGNING_KEY}", Type="SecureString")
    with serving(make_bridge(settings, aws, require_signature=True)) as client:
        yield client


def signature_headers(body: Any, key: str = SIGNING_KEY, at: float | None = None, path: str = CREATE) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {"X-Bridge-Signature": f"t={timestamp},v1={sign(key, timestamp, path, json.dumps(body).encode())}"}


def test_signature_mode_accepts_a_valid_signature(signed_client, sandbox: Sandbox):
    response = post(signed_client, CREATE, seed_body(), headers=signature_headers(seed_body()))

    assert response.status_code == 200
    assert sandbox.count("events_created") == 1


def test_signature_mode_accepts_any_listed_key_for_rotation(signed_client, sandbox: Sandbox):
    response = post(signed_client, CREATE, seed_body(), headers=signature_headers(seed_body(), "old-key"))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Bridge-Signature": "v1=abc"}, "malformed"),
        # a captured signature replayed onto another body with the same eventId, or onto another route
        (signature_headers(seed_body(title="Another title")), "does not match"),
        (signature_headers(seed_body(), path=f"{CREATE}/update"), "does not match"),
        (signature_headers(seed_body(), key="guessed"), "does not match"),
        (signature_headers(seed_body(), at=time.time() - 3600), "away from now"),
        (signature_headers(seed_body(), at=time.time() + 3600), "away from now"),
    ],
)
def test_signature_mode_refuses_tampered_stale_or_missing(signed_client, sandbox: Sandbox, headers, reason):
    response = post(signed_client, CREATE, seed_body(), headers=headers)

    assert response.status_code == 401
    assert reason in response.json_body["message"]
    assert sandbox.requests() == []


@pytest.mark.parametrize("name", ["create", "update", "delete"])
def test_the_printed_signed_template_renders_a_signature_the_bridge_accepts(signed_client, sandbox: Sandbox, name):
    """The template `braze-template` prints for WEBHOOK_SIGNATURE=required, rendered as Braze would, is
    accepted on its own route; the same header on another body is refused."""
    template = WebhookTemplate.parse(braze_templates(BRAZE_PLACEHOLDER_URL, signature_required=True)[name])
    renderer = Renderer(template, bridge_url="", secret=SECRET, signing_key=SIGNING_KEY)
    profile = {
        "external_id": "user42",
        "attributes": {"rokt:account_code": ["brazetest"], "rokt:subscription_id": [SUBSCRIPTION]},
    }
    webhook = renderer.render(profile)
    path = webhook.path.removeprefix("/api")
    if name != "create":
        post(signed_client, CREATE, seed_body(), headers=signature_headers(seed_body()))

    accepted = post(signed_client, path, webhook.body, headers=webhook.headers)
    tampered = post(signed_client, path, webhook.body.replace("_user42", "_user43"), headers=webhook.headers)

    assert accepted.status_code == 200, accepted.json_body
    assert tampered.status_code == 401


def test_body_over_256_kib_is_413(client, sandbox: Sandbox):
    body = seed_body(description="x" * (300 * 1024))

    response = post(client, CREATE, body)

    assert response.status_code == 413
    assert response.json_body["error"] == "payload_too_large"
    assert sandbox.requests() == []


def test_deeply_nested_json_is_400(client, sandbox: Sandbox):
    response = post(client, CREATE, "[" * 50_000 + "]" * 50_000)

    assert response.status_code == 400
    assert response.json_body["error"] == "invalid_json"
    assert sandbox.requests() == []


@pytest.mark.parametrize("depth", [33, 915])
def test_an_unknown_field_nested_deeper_than_json_parsing_fails_is_400_not_500(client, sandbox: Sandbox, depth: int):
    # deep enough to break serialising Rokt's body (RecursionError at ~915), shallow enough to parse
    body = seed_body()
    body["event"]["extra"] = json.loads("[" * depth + "]" * depth)

    response = post(client, CREATE, body)

    assert response.status_code == 400
    assert response.json_body["error"] == "invalid_json"
    assert "nested" in response.json_body["message"]
    assert sandbox.requests() == []


def test_non_utf8_body_is_400(client, sandbox: Sandbox):
    response = post(client, CREATE, b'{"event": "\xff\xfe"}')

    assert response.status_code == 400
    assert "UTF-8" in response.json_body["message"]


def test_validation_lists_every_problem_at_once(client, sandbox: Sandbox):
    response = post(client, CREATE, {"event": {"eventId": "e_1", "start": "yesterday"}, "subscriptionIds": [5]})

    assert response.status_code == 400
    assert response.json_body["error"] == "validation_failed"
    fields = {d["field"] for d in response.json_body["details"]}
    assert fields == {"event.title", "event.start", "event.timezone", "subscriptionIds[0]"}
    assert sandbox.requests() == []


def test_template_defects_are_422_with_advice(client, sandbox: Sandbox):
    response = post(client, CREATE, {**seed_body("Event_0001_"), "subscriptionIds": [""]})

    assert response.status_code == 422
    assert response.json_body["error"] == "template_defect"
    messages = " ".join(d["message"] for d in response.json_body["details"])
    assert "rokt:subscription_id" in messages
    assert "user_id" in messages
    assert sandbox.requests() == []


class _Exploding:
    def handle(self, *args: Any) -> Any:
        raise RuntimeError("internal detail that must not reach Braze")


class _ExplodingBridge(Bridge):
    def delivery_endpoint(self) -> Any:
        return _Exploding()


def test_crash_answers_generic_json_500_with_correlation_id(settings, aws: Aws, json_logs: LogCapture):
    exploding = _ExplodingBridge(settings, ssm_client=aws.ssm(), dynamodb_client=aws.dynamodb())
    with serving(exploding) as client:
        response = post(client, CREATE, seed_body())

    assert response.status_code == 500
    assert response.json_body["error"] == "internal_error"
    assert response.json_body["correlationId"] == response.headers["X-Correlation-Id"]
    assert "internal detail" not in response.body.decode()
    assert "Traceback" not in response.body.decode()
    [error] = [r for r in json_logs.records() if r["level"] == "ERROR"]
    assert error["correlation_id"] == response.json_body["correlationId"]


def test_logs_hold_no_secret_email_or_body(client, sandbox: Sandbox, json_logs: LogCapture):
    body = seed_body(description="Write to jane.doe@example.com", contact="john@example.org")
    post(client, CREATE, body)
    post(client, CREATE, seed_body("e_user2"), secret="not-the-secret-123")
    post(client, CREATE, "{bad json jane.doe@example.com")

    text = json_logs.text
    assert len(json_logs.summaries()) == 3
    assert not EMAIL.search(text)
    for leaked in (SECRET, "not-the-secret-123", "Write to", "Event Description"):
        assert leaked not in text
    [first] = [s for s in json_logs.summaries() if s.get("eventId") == "Event_0001_user42"]
    assert first["unknownFields"] == ["contact"]


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)  # NaN and ±Infinity too
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
# Text hypothesis leaves out by default: lone surrogates (JSON's \\ud800 decodes to one), and digits that
# are not ASCII (superscript two, Arabic-Indic digits) which str.isdigit() accepts and int() may refuse.
odd_text = st.text(alphabet=st.characters(categories=["Cs", "Nd", "No", "Ll"]), min_size=1, max_size=6)
event_values = (
    json_value
    | st.sampled_from(["2019-02-21T15:00:00", "Eastern Standard Time", "15", "", "x_", ".", "..", "9" * 5000])
    | odd_text
    | odd_text.map(lambda text: f"Event_0001_{text}")
)
events = st.fixed_dictionaries({}, optional=dict.fromkeys(sorted(KNOWN_EVENT_FIELDS), event_values))
bodies = st.one_of(
    json_value.map(json.dumps),
    st.builds(
        lambda event, ids: json.dumps({"event": event, "subscriptionIds": ids}),
        events,
        st.lists(st.sampled_from([SUBSCRIPTION, "", "nope", " "]), max_size=3) | json_value,
    ),
    st.binary(max_size=64),
    # a number too long for Python to convert, where a value would be
    st.builds(lambda event: json.dumps({"event": event})[:-1] + ', "n": ' + "9" * 5000 + "}", events),
)
accounts = st.text(alphabet=string.ascii_letters + string.digits + "-_%./?#~ \r\n\x00é", min_size=1, max_size=70)
routes = st.sampled_from(["", "/update", "/delete"])


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(account=accounts, route=routes, body=bodies)
def test_property_never_5xx_and_invalid_input_never_goes_upstream(client, sandbox: Sandbox, account, route, body):
    before = sandbox.stats()

    response = post(client, f"/v1/subscriptionevent/{quote(account, safe='')}{route}", body)

    assert response.status_code < 500, response.body
    refused_by_rokt = response.status_code == 422 and b"rejected_by_rokt" in response.body
    if response.status_code >= 400 and not refused_by_rokt:
        after = sandbox.stats()
        assert after.get("events_requests", 0) == before.get("events_requests", 0)
        assert after.get("token_requests", 0) == before.get("token_requests", 0)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/subscriptionevent/",
        "/v1/subscriptionevent",
        "/v1/subscriptionevent//update",
        "/v1/subscriptionevent//delete",
    ],
)
def test_an_empty_account_code_is_a_template_defect_naming_the_attribute(client, sandbox: Sandbox, path: str):
    body = seed_body() if not path.endswith("delete") else {"event": {"eventId": "Event_0001_user42"}}

    response = post(client, path, body)

    assert response.status_code == 422, response.body
    assert response.json_body["error"] == "template_defect"
    [detail] = response.json_body["details"]
    assert detail["field"] == "accountCode"
    assert "rokt:account_code" in detail["message"]
    assert sandbox.count("events_requests") == 0


def test_a_captured_dry_run_preview_cannot_be_replayed_as_a_real_send(signed_client, sandbox: Sandbox):
    # Given a signed ?dryRun=true preview (the query is part of what is signed)
    preview_headers = signature_headers(seed_body(), path=f"{CREATE}?dryRun=true")
    preview = post(signed_client, f"{CREATE}?dryRun=true", seed_body(), headers=preview_headers)

    # When someone replays its signature without the query
    replayed = post(signed_client, CREATE, seed_body(), headers=preview_headers)

    assert preview.status_code == 200
    assert preview.json_body["status"] == "dry_run"
    assert replayed.status_code == 401
    assert "does not match" in replayed.json_body["message"]
    assert sandbox.requests() == []


def test_the_printed_signed_template_signs_a_preview_query_the_bridge_accepts_only_with_it(
    signed_client, sandbox: Sandbox
):
    """A marketer previews by setting ``query`` to ``?dryRun=true`` in the printed template (URL and header)."""
    printed = braze_templates(BRAZE_PLACEHOLDER_URL, signature_required=True)["create"]
    assert printed.count("{% assign query = '' %}") == 2
    template = WebhookTemplate.parse(printed.replace("{% assign query = '' %}", "{% assign query = '?dryRun=true' %}"))
    webhook = Renderer(template, bridge_url="", secret=SECRET, signing_key=SIGNING_KEY).render(
        {
            "external_id": "user42",
            "attributes": {"rokt:account_code": ["brazetest"], "rokt:subscription_id": [SUBSCRIPTION]},
        }
    )
    path = webhook.path.removeprefix("/api")

    preview = post(signed_client, path, webhook.body, headers=webhook.headers)
    replayed = post(signed_client, path.removesuffix("?dryRun=true"), webhook.body, headers=webhook.headers)

    assert path.endswith("/v1/subscriptionevent/brazetest?dryRun=true")
    assert (preview.status_code, preview.json_body["status"]) == (200, "dry_run")
    assert replayed.status_code == 401
    assert sandbox.requests() == []


@pytest.mark.parametrize("timestamp", ["²", "١٢٣", "1²"])
def test_a_signature_timestamp_of_non_ascii_digits_is_401_not_500(signed_client, sandbox: Sandbox, timestamp: str):
    response = post(signed_client, CREATE, seed_body(), headers={"X-Bridge-Signature": f"t={timestamp},v1=ab"})

    assert response.status_code == 401
    assert "malformed" in response.json_body["message"]


@pytest.mark.parametrize("route", ["", "/update", "/delete"])
def test_an_event_id_with_a_lone_surrogate_is_400_not_500(client, sandbox: Sandbox, route: str):
    body = seed_body("Event_0001_\ud800") if route != "/delete" else {"event": {"eventId": "Event_0001_\ud800"}}

    response = post(client, CREATE + route, json.dumps(body))

    assert response.status_code == 400, response.body
    assert response.json_body["details"][0]["field"] == "event.eventId"
    assert sandbox.count("events_requests") == 0


# Digits str.isdigit() accepts: ASCII, superscripts and circled ones (int() refuses), other scripts' (it takes)
digit_like = st.text(alphabet=st.sampled_from("0123456789\u00b2\u00b9\u2460\u0663\u07c1"), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timestamp=digit_like | st.text(max_size=14), signature=st.text(max_size=70), route=routes)
def test_property_a_malformed_signature_header_is_401_never_5xx(
    signed_client, sandbox: Sandbox, timestamp, signature, route
):
    header = f"t={timestamp},v1={signature}"

    response = post(signed_client, CREATE + route, seed_body(), headers={"X-Bridge-Signature": header})

    assert response.status_code == 401, response.body
    assert sandbox.count("events_requests") == 0


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_id=odd_text | odd_text.map(lambda text: f"Event_0001_{text}"), route=routes)
def test_property_any_event_id_text_is_never_5xx(client, sandbox: Sandbox, event_id, route):
    body = seed_body(event_id) if route != "/delete" else {"event": {"eventId": event_id}}

    response = post(client, CREATE + route, json.dumps(body))

    assert response.status_code < 500, response.body
    if any("\ud800" <= char <= "\udfff" for char in event_id):
        assert response.status_code == 400, response.body
