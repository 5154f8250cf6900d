"""`make soak-sync`, small and seeded, so `make test` covers the concurrency soak: consumer threads
on one queue, random batch order, redeliveries, webhooks Rokt gave up on, the reconciliation alongside,
Rokt, Braze and DynamoDB faults (bench/sync_soak.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.sync_soak import Rig, SoakConfig, ok, prepare_aws, run
from tests.conftest import BRAZE_KEY, CLIENT_ID, CLIENT_SECRET

if TYPE_CHECKING:
    from tests.conftest import Aws, Braze, Sandbox


def test_several_consumers_with_faults_leave_every_profile_equal_to_rokt_and_one_event_per_webhook(
    aws: Aws, sandbox: Sandbox, braze: Braze
) -> None:
    session = prepare_aws(aws.url, (CLIENT_ID, CLIENT_SECRET), BRAZE_KEY)
    # with this seed and size the code before the lease left wrong profiles
    config = SoakConfig(consumers=4, subscriptions=12, changes=60, seed=3, max_seconds=120)

    result = run(Rig(aws.url, sandbox.url, braze.url, session), config)

    assert ok(result), result
    assert result["profiles_checked"] == 12
    assert result["events_written"] == result["events_expected"] > 0
    assert result["faults_armed"] > 0
    assert result["duplicates_sent"] > 0
    assert result["webhooks_missed"] > 0  # healed by the reconciliation running alongside, then one period after
    assert result["reconcile_reads"] > 0
