"""The sync consumer's lease on a subscription outlasts the batch that holds it: its whole deadline and a
margin for two containers' clocks and the last Braze call (a lease ending with the deadline lets another
consumer write the subscription while this one's call may still land)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.clock import Deadline
from chalicelib.sync.reads import Leases, Reads


class Ledger:
    def __init__(self) -> None:
        self.holds: list[float] = []

    def acquire(self, subscription_id: str, owner: str, hold_seconds: float) -> None:
        self.holds.append(hold_seconds)


class Rokt:
    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None:
        return None


def test_a_subscription_is_leased_for_the_batch_s_whole_deadline_and_a_margin():
    ledger = Ledger()
    now = [0.0]
    with ThreadPoolExecutor(max_workers=1) as pool:
        reads = Reads(
            Rokt(),
            Leases(ledger, "consumer-1"),  # type: ignore[arg-type]
            pool,
            deadline=Deadline(20.0, clock=lambda: now[0]),
            reading=Deadline(10.0, clock=lambda: now[0]),
            clock=lambda: now[0],
        )
        reads.start("sub-1")
        reads.result("sub-1")

    assert ledger.holds
    assert ledger.holds[0] >= 20.0 + 5.0
