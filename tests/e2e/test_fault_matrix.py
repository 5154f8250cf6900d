"""Whatever Rokt, SSM or DynamoDB do, every valid webhook's event reaches Rokt exactly once (or Braze
is told to retry until it does), nothing is doubled, and no answer takes 29 s. Through chalice local,
with the Braze simulator retrying as Braze does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from localworld.seed import LOCAL_WEBHOOK_SECRET
from tests.support.braze_simulator import BrazeSimulator, accounting
from tests.support.reliability import DRIP_FAULTS, FAULTS, Rig, running_rig, webhooks

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with running_rig() as running:
        yield running


# error, drop, hang and drip (a peer that answers one byte every 0.6 s)
MATRIX = {**FAULTS, **DRIP_FAULTS}


@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_matrix_delivers_everything_exactly_once(rig: Rig, fault: str):
    # Given a fault armed on Rokt, the token endpoint, SSM or DynamoDB
    rig.sandbox.clear_faults()
    rig.proxy.clear()
    tokens_before = rig.sandbox.count("tokens_issued")
    MATRIX[fault](rig)
    braze = BrazeSimulator(rig.stack.bridge_url, LOCAL_WEBHOOK_SECRET, concurrency=4)

    # When Braze sends a batch (with duplicates) and retries what it is told to retry
    sent = braze.send_all(webhooks())

    # Then every event reached Rokt once, none twice, none lost, and every answer beat API Gateway
    deliveries = {e["event"]["eventId"]: e["deliveries"] for e in rig.sandbox.events("brazetest")}
    counts = accounting(sent, deliveries)
    assert counts["lost"] == 0, (fault, counts, [(w.event_id, [a.status for a in w.attempts]) for w in sent])
    assert counts["doubled"] == 0, (fault, counts)
    assert counts["delivered"] == counts["events"] == 12
    assert counts["slowest_answer_ms"] < 29_000
    # and the fault really happened (else this case would prove nothing)
    assert rig.sandbox.stats()["faults_pending"] == 0
    if fault.startswith("ssm"):
        # A sick SSM is left alone for a backoff after a failure, so fewer calls reach it than were
        # armed — none at all while the bridge still backs off from the previous case's SSM failures.
        ssm_calls = sum(n for call, n in rig.proxy.counts.items() if call.startswith("ssm."))
        ssm_failed = sum(n for call, n in rig.proxy.failed.items() if call.startswith("ssm."))
        assert ssm_failed >= 1 or ssm_calls == 0
    else:
        assert all(f.count == 0 for f in rig.proxy.faults)
    if fault.startswith(("tokens", "token", "ssm")):
        assert rig.sandbox.count("tokens_issued") > tokens_before


def test_fault_matrix_refusals_are_final_and_explained(rig: Rig):
    rig.sandbox.clear_faults()
    rig.proxy.clear()
    rig.sandbox.fault(status=400, body={"error": "validation_error", "errors": ["title too long"]}, count=1)
    braze = BrazeSimulator(rig.stack.bridge_url, LOCAL_WEBHOOK_SECRET, concurrency=1)

    sent = braze.send_all(webhooks(count=3, duplicates=0))

    statuses = sorted(w.final for w in sent)
    assert statuses == [200, 200, 422]
    refused = next(w for w in sent if w.final == 422)
    assert len(refused.attempts) == 1
