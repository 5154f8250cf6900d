"""Client input never produces a 5xx: numbers too long to parse, NaN/Infinity, dot
segments as eventId — each a 400 naming the field, nothing sent to Rokt."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import Sandbox, post, seed_body

if TYPE_CHECKING:
    from chalice.test import Client

CREATE = "/v1/subscriptionevent/brazetest"
HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        (CREATE, json.dumps(seed_body())[:-1] + f', "extra": {HUGE}}}', "extra"),
        (CREATE, json.dumps(seed_body(notifyBefore=HUGE)), "event.notifyBefore"),
        (CREATE, json.dumps(seed_body()).replace('"15"', HUGE), "event.notifyBefore"),
        (CREATE, json.dumps(seed_body())[:-1] + ', "extra": NaN}', "extra"),
        (CREATE, json.dumps(seed_body())[:-1] + ', "extra": {"deep": [1e400]}}', "extra.deep[0]"),
        (CREATE, json.dumps(seed_body()).replace('"Event Location"', "NaN"), None),
        (CREATE, json.dumps(seed_body()).replace('"Event Location"', "Infinity"), None),
        (CREATE, json.dumps(seed_body()).replace('"15"', "-Infinity"), None),
        (CREATE, json.dumps(seed_body(".")), "event.eventId"),
        (CREATE, json.dumps(seed_body("..")), "event.eventId"),
        (f"{CREATE}/delete", json.dumps({"event": {"eventId": ".."}}), "event.eventId"),
        (f"{CREATE}/delete", json.dumps({"event": {"eventId": "."}}), "event.eventId"),
        (f"{CREATE}/update", json.dumps({"event": {**seed_body()["event"], "allDayEvent": 1e400}}), None),
    ],
)
def test_hostile_input_is_a_400_and_never_reaches_rokt(
    client: Client, sandbox: Sandbox, path: str, raw: str, field: str | None
) -> None:
    answer = post(client, path, raw)

    assert answer.status_code == 400, answer.body
    body: dict[str, Any] = json.loads(answer.body)
    assert body["error"] in ("invalid_json", "validation_failed")
    if field is not None:
        assert field in [d["field"] for d in body["details"]]
    assert sandbox.count("events_requests") == 0


def test_a_signature_timestamp_too_long_to_parse_is_401_not_500(settings, aws) -> None:
    from dataclasses import replace

    from tests.conftest import make_bridge, serving

    with serving(make_bridge(replace(settings, require_signature=True), aws)) as client:
        answer = post(client, CREATE, seed_body(), headers={"X-Bridge-Signature": f"t={HUGE},v1={'ab' * 32}"})
    assert answer.status_code == 401


def test_the_url_dry_run_shows_is_the_url_sent(client: Client, sandbox: Sandbox) -> None:
    for event_id in ("a.b", ".x", "x.", "%2E%2E", "a/../b", "..."):
        preview = post(client, f"{CREATE}/delete?dryRun=true", {"event": {"eventId": event_id}})
        url = json.loads(preview.body)["upstreamRequest"]["url"]
        sandbox.reset()
        post(client, f"{CREATE}", seed_body(event_id))
        post(client, f"{CREATE}/delete", {"event": {"eventId": event_id}})
        [received] = [r for r in sandbox.requests() if r["method"] == "DELETE"]
        assert url.endswith("/" + "/".join(received["rawSegments"][-3:])), (event_id, url, received)
