"""Rokt (or its token endpoint, or DynamoDB) down for longer than Braze's whole retry window, then back.
Through chalice local, with the Braze simulator retrying exactly as Braze does and the
queue worker playing Lambda's SQS poller; time compressed by the simulator's scale and by settings
(breaker cool-down, backoff cap), never by sleeping through the outage.

Without a queue behind direct mode every event sent during the outage is lost once Braze gives up;
with it: none lost, none doubled, and Braze sees no failure at all."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from localworld.aws_proxy import AwsFault
from localworld.seed import LOCAL_WEBHOOK_SECRET
from tests.support.braze_simulator import RETRIED, BrazeSimulator, accounting
from tests.support.reliability import Rig, running_rig, webhooks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.e2e

COMPRESSED = {
    "BREAKER_FAILURE_THRESHOLD": "3",
    "BREAKER_COOLDOWN_SECONDS": "0.5",
    "DELIVERY_RETRY_MAX_BACKOFF_SECONDS": "1",
}
EVENTS = 12
RECOVERY_SECONDS = 60.0
FOREVER = 1_000_000  # an outage that only healing ends


def rokt_down(rig: Rig) -> Callable[[], None]:
    rig.sandbox.fault(status=503, count=FOREVER)
    return rig.sandbox.clear_faults


def token_endpoint_down(rig: Rig) -> Callable[[], None]:
    rig.sandbox.revoke_tokens()
    rig.sandbox.fault(target="token", status=503, count=FOREVER)
    return rig.sandbox.clear_faults


def dynamodb_down(rig: Rig) -> Callable[[], None]:
    rig.proxy.fail(AwsFault("dynamodb", count=FOREVER, status=500, code="InternalServerError"))
    return rig.proxy.clear


OUTAGES = {"rokt_down": rokt_down, "token_endpoint_down": token_endpoint_down, "dynamodb_down": dynamodb_down}


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with running_rig(spill=True, extra_env=COMPRESSED) as running:
        yield running


def deliveries(rig: Rig) -> dict[str, int]:
    return {e["event"]["eventId"]: e["deliveries"] for e in rig.sandbox.events("brazetest")}


def wait_for_deliveries(rig: Rig, event_ids: set[str]) -> dict[str, int]:
    """Poll the Rokt sandbox until every event arrived (bounded)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while time.monotonic() < deadline:
        seen = deliveries(rig)
        if event_ids <= set(seen):
            time.sleep(1.0)  # a little longer, so a late second delivery would show as doubled
            return deliveries(rig)
        time.sleep(0.2)
    return deliveries(rig)


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_an_outage_longer_than_braze_retries_loses_nothing(rig: Rig, outage: str):
    rig.sandbox.clear_faults()
    rig.proxy.clear()
    # Given the dependency down
    heal = OUTAGES[outage](rig)
    braze = BrazeSimulator(rig.stack.bridge_url, LOCAL_WEBHOOK_SECRET, concurrency=4)

    # When Braze sends (with duplicates) and retries until it gives up — the outage outlasts it
    sent = braze.send_all(webhooks(EVENTS))
    heal()

    # Then, once the dependency is back, every event reached Rokt once: none lost, none doubled
    event_ids = {w.event_id for w in sent}
    counts = accounting(sent, wait_for_deliveries(rig, event_ids))
    assert counts["lost"] == 0, (outage, counts)
    assert counts["doubled"] == 0, (outage, counts)
    assert counts["delivered"] == EVENTS
    # and Braze saw no failure to retry: each webhook was accepted (queued) or delivered at once
    failures = [a.status for w in sent for a in w.attempts if a.status in RETRIED or a.status == 0]
    assert failures == [], (outage, failures)
    assert {w.final for w in sent} <= {200, 202}


def test_without_the_queue_the_same_outage_loses_every_event():
    """The old behaviour, kept as the control: direct mode alone, Rokt down past Braze's retries."""
    with running_rig(extra_env=COMPRESSED) as rig:
        heal = rokt_down(rig)
        braze = BrazeSimulator(rig.stack.bridge_url, LOCAL_WEBHOOK_SECRET, concurrency=4, max_wait=0.5)
        sent = braze.send_all(webhooks(4, duplicates=0))
        heal()
        time.sleep(1.0)
        counts = accounting(sent, deliveries(rig))
    assert counts["lost"] == 4, counts  # every one: Braze gave up while Rokt was still down
