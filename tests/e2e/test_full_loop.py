"""The whole integration, both directions, as `make run` wires it: a subscriber in the Rokt sandbox
reaches Braze through the bridge; a campaign rendered from that Braze profile reaches the subscriber's
calendar through the bridge. Processes talk over real HTTP on loopback only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from localworld.localstack import LocalStack
from stage.project import PROJECT_DIR

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.isolated("loop", sync=True) as local:
        yield local


def wait_for_profile(stack: LocalStack, external_id: str, attribute: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{stack.braze_url}/_sandbox/users/{external_id}", timeout=5)
        if answer.status_code == 200 and attribute in answer.json()["attributes"]:
            found: dict[str, Any] = answer.json()
            return found
        time.sleep(0.2)
    raise AssertionError(f"{external_id} never got {attribute}; worker log:\n{stack.log('queue-worker')[-2000:]}")


def braze_send(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localworld", "braze-send", "--bridge-url", stack.bridge_url,
         "--braze-url", stack.braze_url, "--time-scale", "0.001", *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def table(output: str) -> dict[str, tuple[int, str]]:
    """The final table: answer → (users, examples)."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 3 and cells[1].isdigit():
            rows[cells[0]] = (int(cells[1]), cells[2])
    return rows


def test_subscriber_to_braze_to_campaign_to_calendar(stack: LocalStack) -> None:
    subscribed = requests.post(
        f"{stack.sandbox_url}/_sandbox/subscribe",
        json={"accountCode": "brazetest", "calendarCode": "sports", "subscriberId": "user42", "tags": ["All Teams"]},
        timeout=5,
    ).json()
    subscription = subscribed["subscriptionId"]

    profile = wait_for_profile(stack, "user42", "rokt:subscription_id")
    assert profile["attributes"]["rokt:subscription_id"] == [subscription]
    assert [e["name"] for e in profile["custom_events"]] == ["subscribe"]

    sent = braze_send(stack, "--template", "seed", "--event-id", "Loop_0001")

    rows = table(sent.stdout)
    assert rows["delivered"] == (1, "user42"), sent.stdout + sent.stderr
    assert "braze-send" in sent.stderr  # the progress bar
    feed = requests.get(f"{stack.sandbox_url}/_sandbox/calendar/{subscription}.ics", timeout=5).text
    assert "UID:Loop_0001_user42@brazetest.sandbox" in feed
    # and the report over the bridge's own log file counts exactly what Rokt received for the campaign
    summary = subprocess.run(
        [sys.executable, "-m", "bridgectl", "report", "--log-file", str(stack.workdir / "bridge.log"),
         "--campaign", "Loop_0001", "--format", "json"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    [line] = json.loads(summary.stdout)["campaigns"]
    at_rokt = [e for e in requests.get(f"{stack.sandbox_url}/_sandbox/events", timeout=5).json()
               if e["event"]["eventId"].startswith("Loop_0001_")]  # fmt: skip
    assert (line["campaign"], line["route"], line["delivered"]) == ("Loop_0001", "create", len(at_rokt))
    assert line["received"] == sum(users for users, _ in rows.values())  # every profile braze-send rendered
    assert sum(line["errors"].values()) == line["received"] - line["delivered"], (line, rows)
    # and Rokt told the bridge, which told Braze, that the event reached the calendar
    profile = wait_for_profile(stack, "user42", "rokt:subscription_id")
    deadline = time.monotonic() + 30
    while not any(e["name"] == "calendar_event_added" for e in profile["custom_events"]):
        assert time.monotonic() < deadline, profile["custom_events"]
        time.sleep(0.2)
        profile = wait_for_profile(stack, "user42", "rokt:subscription_id")


def test_a_template_with_quotes_and_time_zones_shows_each_outcome_before_a_real_send(
    stack: LocalStack, tmp_path: Path
) -> None:
    for user in ("user42", "user43"):
        requests.post(
            f"{stack.sandbox_url}/_sandbox/subscribe",
            json={"accountCode": "brazetest", "calendarCode": f"cal-{user}", "subscriberId": user},
            timeout=5,
        ).raise_for_status()
        wait_for_profile(stack, user, "rokt:subscription_id")
    printed = subprocess.run(
        [sys.executable, "-m", "bridgectl", "--stage", "local", "braze-template", "--api-url", stack.bridge_url],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    create = printed.split("## update")[0]
    template = tmp_path / "campaign.txt"
    template.write_text(
        create.replace("{{eventDescr | json_escape}}", "{{custom_attribute.${favorite_team}}}").replace(
            "{% capture eventTZ %}Eastern Standard Time{% endcapture %}",
            "{% capture eventTZ %}{{${time_zone}}}{% endcapture %}",
        )
    )

    sent = braze_send(stack, "--template", str(template), "--dry-run")

    rows = table(sent.stdout)
    assert rows["dry_run"] == (1, "user42"), sent.stdout  # IANA America/New_York accepted and translated
    assert rows["400 invalid_json"] == (1, "user43"), sent.stdout  # favorite_team holds a double quote
    assert rows["422 template_defect"] == (1, "user44"), sent.stdout  # no rokt:account_code: the URL has none
    assert sent.returncode == 1
    assert requests.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=5).json().get("events_requests", 0) <= 1


def test_rokt_redelivers_until_the_bridge_answers_and_the_token_stays_out_of_the_logs(stack: LocalStack) -> None:
    hooks = requests.get(f"{stack.sandbox_url}/_sandbox/webhooks", timeout=5).json()
    assert all(h["state"] == "delivered" for endpoint in hooks for h in endpoint["history"]), json.dumps(hooks)
    # The bridge's own log lines (JSON) never hold the token; chalice local's access log, like an API
    # Gateway access log formatted with $context.path, does: README says to log $context.resourcePath.
    bridge_lines = [line for line in stack.log("bridge").splitlines() if line.startswith("{")]
    assert bridge_lines
    assert not [line for line in bridge_lines if "local-rokt-webhook-token" in line]
