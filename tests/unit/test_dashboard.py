"""The dashboard shows only what the code emits, with the dimensions it emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chalicelib.delivery.models import Action
from stage import dashboard
from stage.names import NAMESPACE, SERVICE

CODE = Path(__file__).resolve().parents[2] / "chalicelib"


def emitted_by_the_code() -> tuple[set[str], set[str]]:
    """Metric names and route values found in chalicelib's source: what record_outcome, count() and
    add_metric are given, and the routes summaries carry."""
    source = "\n".join(p.read_text() for p in CODE.rglob("*.py"))
    names = set(re.findall(r'(?:name|metric)="([A-Z]\w+)"', source))
    for call in re.findall(r"count\(([^)]*)\)", source):
        names |= set(re.findall(r'"([A-Z]\w+)"', call))
    names |= set(re.findall(r'"[a-z_]+": "([A-Z]\w+)",', source))  # OUTCOME_METRICS values
    routes = set(re.findall(r'"route": "([a-z_]+)"', source)) | {a.value for a in Action}
    return names, routes


def our_lines(body: str) -> list[list[object]]:
    lines = []
    for widget in json.loads(body)["widgets"]:
        for line in widget["properties"]["metrics"]:
            if line[0] == NAMESPACE:
                lines.append(line)
    return lines


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_widget_names_a_metric_and_dimensions_the_code_emits(stage: str):
    names, routes = emitted_by_the_code()
    lines = our_lines(dashboard.dashboard_body(stage))

    assert lines, "the dashboard shows none of our metrics"
    for line in lines:
        metric, dimensions = line[1], [x for x in line[2:] if not isinstance(x, dict)]
        assert metric in names, f"{metric} is not emitted by chalicelib"
        assert dimensions[0::2] == ["service", "route"], line  # Powertools' service + record_outcome's route
        assert dimensions[1] == SERVICE
        assert dimensions[3] in routes, f"route {dimensions[3]!r} is never emitted"


def test_the_check_itself_catches_a_metric_the_code_does_not_emit():
    names, _ = emitted_by_the_code()
    assert {"Delivered", "BreakerOpened", "BrazeCalls", "TokenRefreshes"} <= names
    assert "Deliverd" not in names


def test_sqs_widgets_name_the_stage_queues_and_placeholders_are_filled():
    body = dashboard.dashboard_body("prod")
    assert "rokt-calendar-bridge-prod-deliveries-dlq" in body
    functions = {"api": "fn-api", "delivery": "fn-q", "sync": "fn-s", "reconcile": "fn-r"}
    filled = dashboard.filled(body, "eu-west-1", functions)
    assert "${" not in filled
    assert '"region":"eu-west-1"' in filled
    assert "fn-q" in filled
