"""Logs and metrics as operators see them in CloudWatch, and the documented queries run on them."""

from __future__ import annotations

import fnmatch
import json
from typing import TYPE_CHECKING

import pytest

import app as bridge_app
from chalicelib.observability import redact_emails
from chalicelib.settings import APP_NAME
from stage import resources as stage_resources
from stage.project import PROJECT_DIR
from tests.conftest import Sandbox, make_bridge, post, seed_body, serving
from tests.support import insights

if TYPE_CHECKING:
    from tests.conftest import LogCapture

CREATE = "/v1/subscriptionevent/brazetest"


def four_webhooks(client, sandbox: Sandbox) -> None:
    """A delivered, a duplicate, an invalid and a failed webhook."""
    post(client, CREATE, seed_body())
    post(client, CREATE, seed_body())
    post(client, CREATE, seed_body("bad_user1", start="soon"))
    sandbox.fault(status=503, count=3)
    post(client, CREATE, seed_body("failing_user1"))


def test_one_summary_line_per_webhook_with_the_operator_fields(client, sandbox: Sandbox, json_logs: LogCapture):
    four_webhooks(client, sandbox)

    delivered, duplicate, invalid, failed = json_logs.summaries()
    for summary in (delivered, duplicate, invalid, failed):
        assert summary["service"] == "rokt-calendar-bridge"
        assert summary["level"] == "INFO"
        assert summary["correlation_id"]
        assert summary["route"] == "create"
        assert summary["accountCode"] == "brazetest"
        assert summary["latencyMs"] >= 0
    assert delivered["outcome"] == "delivered"
    assert (delivered["upstreamStatus"], delivered["attempts"], delivered["status"]) == (202, 1, 200)
    assert delivered["upstreamLatencyMs"] > 0
    assert (duplicate["outcome"], duplicate["eventId"], duplicate["status"]) == ("duplicate", "Event_0001_user42", 200)
    assert "attempts" not in duplicate
    assert (invalid["outcome"], invalid["error"], invalid["status"]) == ("invalid", "validation_failed", 400)
    assert invalid["eventId"] == "bad_user1"  # as sent, so reports can group it by campaign
    assert (failed["outcome"], failed["upstreamStatus"], failed["status"]) == ("retryable_failure", 503, 502)
    assert len(json_logs.records()) == 4


def test_correlation_id_is_answered_in_a_header(client, sandbox: Sandbox, json_logs: LogCapture):
    response = post(client, CREATE, seed_body())

    [summary] = json_logs.summaries()
    assert response.headers["X-Correlation-Id"] == summary["correlation_id"]


def test_emf_metrics_are_printed_per_webhook(client, sandbox: Sandbox, capsys):
    post(client, CREATE, seed_body())
    post(client, CREATE, seed_body())

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    first, second = blobs
    directive = first["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "RoktCalendarBridge"
    assert directive["Dimensions"] == [["route", "service"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"Webhooks", "Delivered", "WebhookLatency", "UpstreamLatency", "TokenRefreshes"} <= names
    assert first["route"] == "create"
    assert "eventId" not in first
    assert second["Duplicates"] == [1.0]
    assert "UpstreamLatency" not in second


def test_health_emits_no_metrics(client, capsys):
    client.http.get("/health")

    assert '"_aws"' not in capsys.readouterr().out


def test_documented_queries_answer_the_operator_questions(client, sandbox: Sandbox, json_logs: LogCapture):
    four_webhooks(client, sandbox)
    records = json_logs.records()
    queries = insights.documented_queries()

    history = insights.run(queries["one-event-history"], records)
    failures = insights.run(queries["failures-by-status"], records)
    duplicates = insights.run(queries["duplicates-rate"], records)
    slowest = insights.run(queries["slowest-upstream"], records)
    warnings = insights.run(queries["warnings"], records)

    assert [row["outcome"] for row in history] == ["delivered", "duplicate"]
    assert {(r["outcome"], r["status"], r["upstreamStatus"], r["webhooks"]) for r in failures} == {
        ("invalid", 400, None, 1),
        ("retryable_failure", 502, 503, 1),
    }
    assert {(r["outcome"], r["webhooks"]) for r in duplicates} == {
        ("delivered", 1),
        ("duplicate", 1),
        ("invalid", 1),
        ("retryable_failure", 1),
    }
    assert [row["eventId"] for row in slowest] == ["Event_0001_user42"]
    assert warnings == []
    assert set(queries) == {
        "one-event-history",
        "failures-by-status",
        "duplicates-rate",
        "slowest-upstream",
        "warnings",
    }


def test_tracing_enabled_outside_lambda_disables_itself_quietly(settings, aws, sandbox: Sandbox):
    with serving(make_bridge(settings, aws, tracing=True)) as client:
        response = post(client, CREATE, seed_body())

    assert response.status_code == 200
    assert sandbox.count("events_created") == 1


def test_missing_metrics_namespace_never_fails_a_webhook(client, sandbox: Sandbox, json_logs: LogCapture):
    from chalicelib.observability import metrics

    namespace = metrics.namespace
    metrics.namespace = None
    try:
        response = post(client, CREATE, seed_body())
    finally:
        metrics.namespace = namespace

    assert response.status_code == 200
    assert "metrics not published: set POWERTOOLS_METRICS_NAMESPACE for this stage" in json_logs.messages()


def test_an_event_id_holding_an_email_address_is_masked_in_the_logs(client, sandbox: Sandbox, json_logs: LogCapture):
    # Braze user ids are sometimes e-mail addresses; the template puts them in the eventId
    post(client, CREATE, seed_body("Event_0001_jane.doe@example.com"))
    post(client, CREATE, seed_body("Event_0002_jane.doe@example.com", start="soon"))

    delivered, invalid = json_logs.summaries()
    assert delivered["eventId"] == invalid["eventId"].replace("0002", "0001") == "Event_0001_[email redacted]"
    assert "jane.doe@example.com" not in json_logs.text
    assert sandbox.events()[0]["event"]["eventId"] == "Event_0001_jane.doe@example.com"  # Rokt gets it as sent


@pytest.mark.parametrize(
    "address",
    ["john_doe@example.com", "josé@example.com", "ana@exämple.de", "o'brien+tag@münchen.example", "a.b_c-d@x.io"],
)
def test_an_event_id_holding_any_email_address_is_masked_whole(
    client, sandbox: Sandbox, json_logs: LogCapture, address: str
):
    post(client, CREATE, seed_body(f"Event_0001_{address}"))
    post(client, CREATE + "/delete", {"event": {"eventId": f"Event_0002_{address}"}})

    delivered, deleted = json_logs.summaries()
    assert delivered["eventId"] == "Event_0001_[email redacted]"
    assert deleted["eventId"] == "Event_0002_[email redacted]"
    local, _, domain = address.partition("@")
    for leaked in (address, local, domain, local.split("_")[0] + "_", "@"):
        assert leaked not in json_logs.text.replace("[email redacted]", ""), leaked


def test_an_account_code_or_a_field_name_holding_an_email_address_is_masked_in_every_log_line(
    client, sandbox: Sandbox, json_logs: LogCapture
):
    # a template that puts an address in the account code, or names a field after one
    post(client, "/v1/subscriptionevent/jane.doe@example.com", seed_body())
    body = seed_body()
    body["event"]["ana.maria@example.com"] = "x"
    post(client, CREATE, body)

    first, second = json_logs.summaries()
    assert first["accountCode"] == "[email redacted]"
    assert second["unknownFields"] == ["[email redacted]"]
    assert "@" not in json_logs.text


@pytest.mark.parametrize(
    "text", ["write to josé@example.com", "ana@exämple.de said", "john_doe@example.com", "<o'brien@x.ie>"]
)
def test_addresses_in_rokt_error_bodies_are_masked_whatever_their_characters(text: str):
    masked = redact_emails({"errors": [text]})["errors"][0]

    assert "@" not in masked
    assert "[email redacted]" in masked
    assert "brien" not in masked


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_with_xray_the_rokt_webhook_route_is_never_sampled_so_its_token_stays_out_of_traces(stage: str):
    """API Gateway's trace segment records the request URL, and the Rokt webhook token is in that path
    (a fixed route, docs/rokt-to-braze.md). A stage with ``"xray": true`` gets an X-Ray sampling rule that API
    Gateway evaluates first and that samples none of those requests: no segment records the URL, and
    Lambda follows API Gateway's decision, so no trace holds the token."""
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    assert config["stages"][stage]["xray"] is True
    [token_route] = [path for path in bridge_app.app.routes if "{token}" in path]
    stage_prefix = "/" + config["stages"][stage]["api_gateway_stage"]

    resources = stage_resources.merge_template(stage)["Resources"]
    [rule] = [r["Properties"]["SamplingRule"] for r in resources.values() if r.get("Type") == "AWS::XRay::SamplingRule"]

    assert (rule["FixedRate"], rule["ReservoirSize"], rule["Priority"]) == (0, 0, 1)
    assert rule["ServiceType"] == "AWS::ApiGateway::Stage"
    assert rule["ServiceName"] == f"{APP_NAME}/{stage_prefix[1:]}"
    assert rule["HTTPMethod"] == rule["Host"] == rule["ResourceARN"] == "*"
    assert len(rule["RuleName"]) <= 32
    token_url = token_route.replace("{token}", "secret-token-123")
    for url in (token_url, stage_prefix + token_url):
        assert fnmatch.fnmatchcase(url, rule["URLPath"]), url
    for other in [p for p in bridge_app.app.routes if "{token}" not in p]:
        assert not fnmatch.fnmatchcase(stage_prefix + other, rule["URLPath"]), other
