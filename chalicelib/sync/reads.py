"""A batch's subscription reads: each subscription's lease, then its current state from Rokt, in a
bounded thread pool, until the reading deadline.

The lease comes first (it returns what the ledger says Braze may hold), so the state read is at least
as new as whatever the previous lease holder wrote. Reading stops while the time left still covers
the flush (``FLUSH_RESERVE_SECONDS``): a record whose subscription was not read by then is
``NotAttempted`` — it goes back to the queue at once, not counted as a failure.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import RoktRejected, UpstreamFailed, UpstreamTimeout
from chalicelib.sync.outcomes import DeadLetter, NotAttempted

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor, Future

    from chalicelib.clock import Deadline
    from chalicelib.sync.records import LedgerEntry, SyncLedger

# Rokt reads at once per container: below requests' pool of 10 connections per host, so no read
# waits for (or throws away) a connection; 75 reads at 340 ms take about 3.2 s.
MAX_PARALLEL_READS = 8
# What the flush needs after the reads: one /users/track call at Braze's usual pace, the ledger
# writes and the claim completions (DynamoDB, a few ms each, in AWS).
FLUSH_RESERVE_SECONDS = 5.0
# A lease outlives the consumer's own deadline by this much (a Braze call sent just before it).
LEASE_MARGIN_SECONDS = 10.0
# Rokt's answers to a subscription read that no retry changes (the request itself is wrong, or the
# subscription is gone for good); any other 4xx (408, 403, 409, 425…) may pass and is retried. A 404
# is not an error here: it reads as "Rokt does not know it" (the consumer's not-found horizon).
FINAL_READ_REFUSALS = frozenset({400, 410, 422})


class SubscriptionReader(Protocol):
    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Read:
    """A subscription read under its lease: Rokt's state and what the ledger says Braze may hold."""

    state: dict[str, Any] | None
    previous: LedgerEntry | None


class Leases:
    """The subscription leases one batch holds: given back by the ledger commit, kept to expire where
    Braze may still apply a call, the rest released when the batch ends."""

    def __init__(self, ledger: SyncLedger, owner: str) -> None:
        self._ledger = ledger
        self.owner = owner
        self._held: set[str] = set()  # leases this batch took and has not given back
        self._kept: set[str] = set()  # leases to let expire (a Braze call may still land)
        self._lock = threading.Lock()

    def acquire(self, subscription_id: str, hold_seconds: float) -> LedgerEntry | None:
        previous = self._ledger.acquire(subscription_id, self.owner, hold_seconds)
        with self._lock:
            self._held.add(subscription_id)
        return previous

    def given_back(self, subscription_id: str) -> None:
        """The ledger commit released this lease."""
        self._held.discard(subscription_id)

    def keep(self, subscription_ids: set[str]) -> None:
        self._kept |= subscription_ids

    def release(self, cleanup: Deadline) -> None:
        """Give back the rest while ``cleanup`` has time; a lease not given back expires by itself."""
        for subscription_id in self._held - self._kept:
            if cleanup.remaining() < MIN_ATTEMPT_SECONDS:
                return
            self._ledger.release(subscription_id, self.owner)


class Reads:
    """One read per subscription per batch, started as its first record is claimed."""

    def __init__(
        self,
        rokt: SubscriptionReader,
        leases: Leases,
        pool: Executor,
        *,
        deadline: Deadline,
        reading: Deadline,
        clock: Callable[[], float],
    ) -> None:
        self._rokt = rokt
        self._leases = leases
        self._pool = pool
        self._deadline = deadline
        self._reading = reading
        self._clock = clock
        self._started: dict[str, Future[Read]] = {}

    def closed(self) -> bool:
        """No time left to read another subscription."""
        return self._reading.remaining() < MIN_ATTEMPT_SECONDS

    def start(self, subscription_id: str) -> None:
        if subscription_id not in self._started:
            self._started[subscription_id] = self._pool.submit(self._read, subscription_id)

    def result(self, subscription_id: str) -> Read:
        """The subscription's read; NotAttempted if it did not finish in the reading time."""
        try:
            # reads end by the reads' deadline; a little slack for the thread to hand its answer back
            return self._started[subscription_id].result(timeout=max(self._reading.remaining(), 0.0) + 1.0)
        except FutureTimeout as exc:
            raise NotAttempted("the subscription read did not finish in time") from exc

    def _read(self, subscription_id: str) -> Read:
        """In a pool thread: lease the subscription, then read Rokt (after the lease, so the state is
        at least as new as whatever the previous lease holder wrote)."""
        if self.closed():
            raise NotAttempted("no time left to read the subscription")
        previous = self._leases.acquire(subscription_id, self._deadline.remaining() + LEASE_MARGIN_SECONDS)
        started = self._clock()
        try:
            state = self._rokt.get(subscription_id, self._reading)
        except UpstreamTimeout as exc:
            # cut short by the reading time (what is left is no more than the read took), not a Rokt
            # that is slow with time to spare: back to the queue at once, not a failure
            if self._reading.remaining() <= self._clock() - started + MIN_ATTEMPT_SECONDS:
                raise NotAttempted("the reading time ran out during the read") from exc
            raise
        except RoktRejected as exc:
            status = exc.upstream_status
            if status in FINAL_READ_REFUSALS:
                raise DeadLetter(f"Rokt refused to read subscription {subscription_id} (HTTP {status})") from exc
            raise UpstreamFailed(
                f"Rokt answered the read of subscription {subscription_id} with HTTP {status}; retried",
                upstream_status=status,
            ) from exc
        return Read(state, previous)
