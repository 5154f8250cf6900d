"""Braze templates rendered with a real Liquid engine, Braze's dialect translated (no IO)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localworld import campaign
from stage.braze_templates import braze_templates

SUB_A, SUB_B = "06423672-b6ba-4536-aa36-70788a7a0a36", "7ae10174-37fb-4448-8f61-2f86f167009e"
BRIDGE = "http://127.0.0.1:8000"


def profile(external_id: Any = "user42", **attributes: Any) -> dict[str, Any]:
    return {"external_id": external_id, "attributes": attributes}


def seed_renderer() -> campaign.Renderer:
    return campaign.Renderer(campaign.WebhookTemplate.seed(), bridge_url=BRIDGE, secret="s3cret-0123456789")


def test_the_seeds_template_renders_a_user_with_two_subscriptions():
    webhook = seed_renderer().render(
        profile(**{"rokt:account_code": ["brazetest/f5733866ade2"], "rokt:subscription_id": [SUB_A, SUB_B]})
    )

    assert webhook.path == f"{BRIDGE}/v1/subscriptionevent/brazetest"
    assert webhook.headers["Authorization"] == "Bearer s3cret-0123456789"
    body = json.loads(webhook.body)
    assert body["event"]["eventId"] == "Event_0001_user42"
    assert body["subscriptionIds"] == [SUB_A, SUB_B]
    assert webhook.user == "user42"


def test_a_user_without_rokt_attributes_renders_what_braze_renders():
    webhook = seed_renderer().render(profile())

    assert webhook.path == f"{BRIDGE}/v1/subscriptionevent/"
    assert json.loads(webhook.body)["subscriptionIds"] == [""]


def test_an_anonymous_user_renders_an_event_id_ending_in_underscore():
    body = json.loads(seed_renderer().render(profile(None, **{"rokt:subscription_id": [SUB_A]})).body)
    assert body["event"]["eventId"] == "Event_0001_"


def test_quotes_break_an_unescaped_value_and_json_escape_mends_it():
    template = campaign.WebhookTemplate.parse(braze_templates(BRIDGE)["create"])
    raw = template.body.replace("{{eventTitle | json_escape}}", "{{custom_attribute.${favorite_team}}}")
    escaped = template.body.replace(
        "{{eventTitle | json_escape}}", "{{custom_attribute.${favorite_team} | json_escape}}"
    )
    team = profile(favorite_team='The "Blues"\\', **{"rokt:subscription_id": [SUB_A]})

    broken = campaign.Renderer(
        campaign.WebhookTemplate(template.url, template.headers, raw), bridge_url=BRIDGE, secret="x"
    )
    with pytest.raises(ValueError, match="Expecting"):
        json.loads(broken.render(team).body)
    mended = campaign.Renderer(
        campaign.WebhookTemplate(template.url, template.headers, escaped), bridge_url=BRIDGE, secret="x"
    )
    assert json.loads(mended.render(team).body)["event"]["title"] == 'The "Blues"\\'


def test_standard_attributes_like_time_zone_render():
    template = campaign.WebhookTemplate.seed()
    body = template.body.replace("Eastern Standard Time", "{{${time_zone}}}")
    rendered = campaign.Renderer(
        campaign.WebhookTemplate(template.url, template.headers, body), bridge_url=BRIDGE, secret="x"
    )
    assert (
        json.loads(rendered.render(profile(time_zone="Australia/Sydney")).body)["event"]["timezone"]
        == "Australia/Sydney"
    )


def test_the_printed_template_parses_and_dry_run_adds_the_query():
    template = campaign.WebhookTemplate.parse(braze_templates(BRIDGE)["update"])
    webhook = campaign.Renderer(template, bridge_url=BRIDGE, secret="k" * 16).render(
        profile(**{"rokt:account_code": ["acme/abc"]}), dry_run=True
    )
    assert webhook.path == f"{BRIDGE}/v1/subscriptionevent/acme/update?dryRun=true"
    assert webhook.headers["Authorization"] == f"Bearer {'k' * 16}"


def test_connected_content_is_refused_with_a_reason():
    template = campaign.WebhookTemplate(
        "{{bridge}}/x", (("Authorization", "Bearer {% connected_content https://x :save token %}"),), "{}"
    )
    with pytest.raises(campaign.TemplateError, match="connected_content"):
        campaign.Renderer(template, bridge_url=BRIDGE, secret="x")


def test_the_summary_counts_outcomes_with_two_example_users():
    from localworld.braze_sender import Attempt, Webhook

    sent = [
        Webhook("/", "{}", user=f"u{i}", attempts=[Attempt(422, 0.01, answer={"error": "template_defect"})])
        for i in range(3)
    ]
    sent.append(Webhook("/", "{}", user="ok", attempts=[Attempt(200, 0.01, answer={"status": "delivered"})]))

    assert campaign.summary(sent) == [("422 template_defect", 3, ["u0", "u1"]), ("delivered", 1, ["ok"])]
