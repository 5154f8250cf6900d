"""Every answer Braze or Rokt can get is our JSON ``{"error", "message"}``: Chalice's
own 405 and 415 included, through the same gateway emulation `chalice local` uses."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SECRET, post, seed_body

CREATE = "/v1/subscriptionevent/brazetest"


def body_of(response) -> dict[str, object]:
    assert response.headers["Content-Type"] == "application/json"
    parsed: dict[str, object] = json.loads(response.body)
    return parsed


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("get", CREATE, "POST"), ("put", f"{CREATE}/update", "POST"), ("delete", f"{CREATE}/delete", "POST"),
     ("post", "/health", "GET"), ("get", "/rokt/webhooks/some-token", "POST")],
)  # fmt: skip
def test_wrong_method_is_our_405_naming_the_allowed_method(client, method: str, path: str, allowed: str):
    response = getattr(client.http, method)(path, headers={"Authorization": f"Bearer {SECRET}"})

    assert response.status_code == 405
    assert body_of(response) == {
        "error": "method_not_allowed",
        "message": f"Unsupported method: {method.upper()}; this route takes {allowed}",
    }
    assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_our_415_saying_what_to_send(client, sandbox, content_type: str):
    response = post(client, CREATE, seed_body(), headers={"Content-Type": content_type})

    assert response.status_code == 415
    body = body_of(response)
    assert body["error"] == "unsupported_media_type"
    assert "send Content-Type: application/json" in str(body["message"])
    assert sandbox.requests() == []


# An empty account code (422 template_defect naming rokt:account_code): test_hostile_input_and_signatures.py.
