"""The Braze templates (``stage/braze/*.liquid``) are the product a marketing engineer pastes: each
one, printed by ``braze-template`` and rendered for a profile with a real Liquid engine as Braze would,
is posted to the bridge — create, then update, then delete reach Rokt, in that order."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from localworld.campaign import Renderer, WebhookTemplate
from stage.braze_templates import ROUTES, body, braze_templates
from tests.conftest import SECRET, SUBSCRIPTION, Sandbox, post

if TYPE_CHECKING:
    from chalice.test import Client

PLACEHOLDER_URL = "https://<api-id>.execute-api.<region>.amazonaws.com/api"
PROFILE = {
    "external_id": "user42",
    "attributes": {"rokt:account_code": ["brazetest"], "rokt:subscription_id": [SUBSCRIPTION], "first_name": "Ada"},
}


def test_each_template_renders_and_the_bridge_delivers_them_in_order(client: Client, sandbox: Sandbox):
    answers = []
    for route, template in braze_templates(PLACEHOLDER_URL).items():
        webhook = Renderer(WebhookTemplate.parse(template), bridge_url="", secret=SECRET).render(PROFILE)
        assert webhook.path.removeprefix("/api") == f"/v1/subscriptionevent/brazetest{ROUTES[route]}"
        answers.append(post(client, webhook.path.removeprefix("/api"), webhook.body))

    assert [(a.status_code, a.json_body["status"]) for a in answers] == [(200, "delivered")] * 3
    assert (sandbox.count("events_created"), sandbox.count("events_updated"), sandbox.count("events_deleted")) == (
        1,
        1,
        1,
    )


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_body_file_is_the_json_braze_sends_once_rendered(route: str):
    template = WebhookTemplate(url=PLACEHOLDER_URL, headers=(), body=body(route))

    sent = json.loads(Renderer(template, bridge_url="", secret=SECRET).render(PROFILE).body)

    assert sent["event"]["eventId"] == "Event_0001_user42"
    assert ("subscriptionIds" in sent) == (route == "create")
    if route == "create":
        assert sent["subscriptionIds"] == [SUBSCRIPTION]
