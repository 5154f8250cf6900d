"""The sync consumer's lease on a subscription outlasts the batch that holds it: its whole deadline and a
margin for two containers' clocks and the last Braze call (a lease ending with the deadline lets another
consumer write the subscription while this one's call may still land); and a claim whose custom event Braze
has is completed even when DynamoDB fails the first try."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.clock import Deadline
from chalicelib.errors import DependencyUnavailable
from chalicelib.sync.bookkeeping import RecordBook
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


class FlakyClaims:
    """DynamoDB failing the first completion of a claim."""

    def __init__(self) -> None:
        self.completed: list[str] = []
        self._failures = 1

    def complete(self, event_id: str, result: dict[str, Any]) -> None:
        if self._failures:
            self._failures -= 1
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable")
        self.completed.append(event_id)


def test_a_claim_whose_event_braze_has_is_completed_even_if_the_first_try_fails():
    # left in progress, the claim expires and a redelivery writes the state again (at most once: its
    # "sent" mark keeps the custom event from going twice) — one more try avoids that work
    claims = FlakyClaims()
    book = RecordBook(
        claims,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        pool=None,  # type: ignore[arg-type]
        deadline=Deadline(20.0, clock=lambda: 0.0),
        cleanup=Deadline(21.0, clock=lambda: 0.0),
        clock=lambda: 0.0,
    )

    assert book._complete("evt-1", {"status": "synced"})
    assert claims.completed == ["evt-1"]
