"""Scheduled reconciliation: Braze equals Rokt again within a period, whatever webhooks the bridge missed.

Every subscription the ledger knows (``ledger_index``: a sparse index, never a scan of the shared
table) is read from Rokt again (``GET /v1/subscription/{id}``, the sync consumer's client and token)
once per period (``RECONCILE_PERIOD_SECONDS``, default 24 h), spread evenly over the period's runs
(one every ``RECONCILE_EVERY_MINUTES``) and never faster than ``RECONCILE_READS_PER_SECOND``. Each read is
made under the subscription's lease — the sync consumer's own — so it never races a webhook: a
subscription a consumer is writing is skipped (the consumer reads Rokt's state anyway). Where Rokt's
state differs from what the ledger says Braze holds (an update, a tag change, a subscriber move, an
unsubscribe, a subscription Rokt no longer knows, or a write-ahead whose commit never came), the
subscription's attributes are rewritten through the sync consumer's own plan and writer (ledger
written ahead, one /users/track call per 75 subscriptions, ledger committed). No custom event is
ever invented for a healed change: events are history, and the bridge did not see it happen.

A subscription found active and right has its ledger entry's expiry pushed back (400 days). A Rokt
outage (5xx, timeouts) changes nothing: the subscriptions it hid are read again next run (and a run
meeting mostly failures stops early). The cursor (where the pass is, how big the last one was) is
saved after each batch, so each run continues where the last stopped, and the run stops before
Lambda's deadline. What it healed is counted by kind (``HEALED_METRICS``) and logged once per
subscription, never with an e-mail address.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.clock import MIN_ATTEMPT_SECONDS, Deadline, lambda_remaining_ms
from chalicelib.errors import BridgeError, RoktRejected, SubscriptionBusy
from chalicelib.observability import count, for_route, logger, redact_emails
from chalicelib.runtime import SYSTEM
from chalicelib.settings import RECONCILE_EVERY_MINUTES, RECONCILE_PERIOD_SECONDS, RECONCILE_READS_PER_SECOND
from chalicelib.sync import mapping, plan
from chalicelib.sync.ledger_index import MAX_RETRIES_KEPT, SHARDS, Cursor
from chalicelib.sync.reads import FINAL_READ_REFUSALS, LEASE_MARGIN_SECONDS, MAX_PARALLEL_READS, Leases
from chalicelib.sync.writer import Writer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from chalicelib.runtime import Lock, Runtime
    from chalicelib.sync.ledger_index import LedgerIndex
    from chalicelib.sync.outcomes import NotAttempted
    from chalicelib.sync.reads import SubscriptionReader
    from chalicelib.sync.records import LedgerEntry, SyncLedger
    from chalicelib.sync.writer import BrazeWriter, Refused

_ROUTE = {"route": "reconcile"}  # the route dimension of its metrics, and of its log lines
ROUTE = _ROUTE["route"]
# One batch: up to one /users/track call of subscriptions, read and written inside a consumer-sized
# budget, so its leases are held no longer than a sync consumer's (budget + LEASE_MARGIN_SECONDS).
BATCH_SIZE = 75
BATCH_BUDGET_SECONDS = 25.0
WRITE_RESERVE_SECONDS = 5.0  # of each batch's budget, kept for the write after the reads
LAMBDA_SAFETY_MARGIN_SECONDS = 5.0
# One count per kind of change healed (the dashboard's "Reconciliation healed").
HEALED_METRICS = {
    "update": "HealedUpdates",
    "tags": "HealedTagChanges",
    "move": "HealedMoves",
    "unsubscribe": "HealedUnsubscribes",
    "not_found": "HealedNotFound",
    "unconfirmed": "HealedUnconfirmed",
}


@dataclass(frozen=True)
class Drift:
    """One attribute where what the ledger says Braze holds differs from Rokt's state (e-mail addresses
    masked): ``braze_has`` and ``rokt_has`` are the subscription's values of ``field``."""

    subscription_id: str
    kind: str
    field: str
    braze_has: tuple[str, ...]
    rokt_has: tuple[str, ...]


@dataclass
class Report:
    """What a run (or an operator's check) read and found."""

    read: int = 0
    unchanged: int = 0
    busy: int = 0
    failed: int = 0
    healed: Counter[str] = field(default_factory=Counter)
    drifts: list[Drift] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    pass_finished: bool = False

    def add(self, other: Report) -> None:
        self.read += other.read
        self.unchanged += other.unchanged
        self.busy += other.busy
        self.failed += other.failed
        self.healed.update(other.healed)
        self.drifts += other.drifts
        self.retry += other.retry

    def summary(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "unchanged": self.unchanged,
            "busy": self.busy,
            "failed": self.failed,
            "healed": dict(self.healed),
            "passFinished": self.pass_finished,
        }


@dataclass
class _Inspection:
    subscription_id: str
    outcome: str  # drift, unchanged, busy, failed, gone (nothing in the ledger), skipped
    previous: LedgerEntry | None = None
    group: plan.Group | None = None
    kind: str | None = None
    drifts: list[Drift] = field(default_factory=list)


class Pacer:
    """At most ``per_second`` starts per second across threads, on the runtime's clock, sleep and locks."""

    def __init__(self, per_second: float, runtime: Runtime) -> None:
        self._gap = 1.0 / per_second
        self._clock = runtime.monotonic
        self._sleep = runtime.sleep
        self._next = runtime.monotonic()
        self._lock = runtime.lock()

    def wait(self, deadline: Deadline) -> bool:
        """Wait for the next start; False (and no start taken) when the deadline would pass first."""
        with self._lock:
            now = self._clock()
            at = max(self._next, now)
            if at - now > deadline.remaining() - MIN_ATTEMPT_SECONDS:
                return False
            self._next = at + self._gap
        if at > now:
            self._sleep(at - now)
        return True


class Reconciler:
    """Re-reads the ledger's subscriptions from Rokt and rewrites what drifted (see the module)."""

    def __init__(
        self,
        rokt: SubscriptionReader,
        braze: BrazeWriter,
        ledger: SyncLedger,
        index: LedgerIndex,
        *,
        fallback: mapping.IdentityFallback,
        period_seconds: float = RECONCILE_PERIOD_SECONDS,
        reads_per_second: float = RECONCILE_READS_PER_SECOND,
        parallel_reads: int = MAX_PARALLEL_READS,
        runtime: Runtime = SYSTEM,
    ) -> None:
        self._rokt = rokt
        self._braze = braze
        self._ledger = ledger
        self._index = index
        self._fallback = fallback
        self._period = period_seconds
        self._parallel = parallel_reads
        self._runtime = runtime
        self._pacer = Pacer(reads_per_second, runtime)

    # --- the scheduled run ------------------------------------------------------------------------
    def run(self, context: Any = None) -> Report:
        """Continue the pass from the saved cursor: what is due by the next run, within Lambda's time. The
        ledger's index or the cursor failing (DynamoDB) ends the run: the next continues from the cursor
        last saved (what this run healed since is only read again)."""
        for_route(ROUTE)
        clock, sleep = self._runtime.monotonic, self._runtime.sleep
        remaining_ms = lambda_remaining_ms(context)
        budget = math.inf if remaining_ms is None else remaining_ms / 1000 - LAMBDA_SAFETY_MARGIN_SECONDS
        deadline = Deadline(budget, clock=clock, sleep=sleep)
        report = Report()
        try:
            cursor = self._start(self._index.cursor())
            self._continue(cursor, deadline, report)
        except BridgeError as exc:
            logger.warning("reconciliation run stopped; the next continues", extra={**_ROUTE, "error": str(exc)})
            return report
        logger.info("reconciliation run", extra={**_ROUTE, **report.summary(), "passDone": cursor.done})
        return report

    def _continue(self, cursor: Cursor, deadline: Deadline, report: Report) -> None:
        """The subscriptions to read again first, then the pass's share due, saving the cursor after each batch."""
        due = self._due(cursor)
        retry, cursor.retry = cursor.retry, []
        while retry and deadline.remaining() > BATCH_BUDGET_SECONDS / 2:
            batch, retry = retry[:BATCH_SIZE], retry[BATCH_SIZE:]
            report.add(self._batch(batch, deadline, write=True))
        while due > 0 and not cursor.finished and deadline.remaining() > BATCH_BUDGET_SECONDS / 2:
            ids, after = self._index.page(cursor.shard, cursor.after, int(min(BATCH_SIZE, due)))
            found = self._batch(ids, deadline, write=True)
            report.add(found)
            cursor.done += len(ids)
            due -= len(ids)
            cursor.shard, cursor.after = (cursor.shard, after) if after is not None else (cursor.shard + 1, None)
            cursor.retry = _unique(retry + report.retry)[:MAX_RETRIES_KEPT]
            self._index.save(cursor)
            if ids and found.failed > len(ids) // 2:
                logger.warning("reconciliation stopped early: Rokt is failing", extra=_ROUTE)
                break
        cursor.retry = _unique(retry + report.retry)[:MAX_RETRIES_KEPT]
        self._index.save(cursor)
        report.pass_finished = cursor.finished

    def _start(self, cursor: Cursor) -> Cursor:
        """The pass in progress; a new one (its size counted) when the last finished and its period is
        over, or none began — so each subscription is read again about one period after its last read."""
        now = self._runtime.time()
        if cursor.started == 0.0 or (cursor.finished and now >= cursor.started + self._period):
            return Cursor(started=now, last_size=self._index.count(), retry=cursor.retry)
        return cursor

    def _due(self, cursor: Cursor) -> float:
        """How many subscriptions this run should re-read: the pass's share due by the next run, paced on
        the ledger's size when the pass began — and all that is left when the next run would be past the
        period (the ledger grew meanwhile), so every subscription is read within it."""
        if cursor.finished:
            return 0
        elapsed = self._runtime.time() - cursor.started + RECONCILE_EVERY_MINUTES * 60
        if cursor.last_size is None or elapsed >= self._period:
            return math.inf
        target = math.ceil(cursor.last_size * elapsed / self._period)
        return max(target - cursor.done, 0)

    # --- operators --------------------------------------------------------------------------------
    def subscriptions(
        self, ids: Iterable[str], *, dry_run: bool, progress: Callable[[Report], None] = lambda _: None
    ) -> Report:
        """Reconcile these subscriptions now (``bridgectl reconcile``), at the read ceiling; the cursor is
        left alone. ``dry_run``: only report the drifts, write nothing."""
        report = Report()
        pending = list(ids)
        deadline = Deadline(math.inf, clock=self._runtime.monotonic, sleep=self._runtime.sleep)
        while pending:
            batch, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
            report.add(self._batch(batch, deadline, write=not dry_run))
            progress(report)
        return report

    def everything(self) -> Iterable[list[str]]:
        """Every subscription the ledger knows, a page at a time (``bridgectl reconcile --all``)."""
        for shard in range(SHARDS):
            after: str | None = None
            while True:
                ids, after = self._index.page(shard, after)
                if ids:
                    yield ids
                if after is None:
                    break

    # --- one batch --------------------------------------------------------------------------------
    def _batch(self, ids: list[str], run: Deadline, *, write: bool) -> Report:
        """Read each subscription under its lease, then write what drifted in one flush."""
        report = Report()
        if not ids:
            return report
        clock, sleep = self._runtime.monotonic, self._runtime.sleep
        seconds = min(BATCH_BUDGET_SECONDS, run.remaining())
        deadline = Deadline(seconds, clock=clock, sleep=sleep)
        reading = Deadline(seconds - WRITE_RESERVE_SECONDS, clock=clock, sleep=sleep)
        leases = Leases(self._ledger, self._runtime.new_id())
        with self._runtime.executor(self._parallel, "reconcile") as pool:
            try:
                found = list(pool.map(lambda sid: self._inspect(sid, leases, deadline, reading), ids))
                groups = self._settle(found, report, leases, write=write)
                if groups:
                    book = _HealingBook(report, {i.subscription_id: i for i in found}, self._runtime.lock())
                    writer = Writer(
                        self._braze,
                        self._ledger,
                        book,
                        leases=leases,
                        pool=pool,
                        deadline=deadline,
                        cleanup=Deadline(deadline.remaining() + 1.0, clock=clock, sleep=sleep),
                    )
                    writer.write(plan.chunks(groups))
            finally:
                leases.release(Deadline(deadline.remaining() + 1.0, clock=clock, sleep=sleep))
        return report

    def _settle(self, found: list[_Inspection], report: Report, leases: Leases, *, write: bool) -> list[plan.Group]:
        """Count what the reads found, refresh the expiry of what is right; the groups to write."""
        groups = []
        for inspection in found:
            sid = inspection.subscription_id
            if inspection.outcome == "failed":
                report.failed += 1
                report.retry.append(sid)
                continue
            if inspection.outcome in ("drift", "unchanged"):
                report.read += 1
            if inspection.outcome == "busy":
                report.busy += 1
            elif inspection.outcome == "unchanged":
                report.unchanged += 1
                if write:
                    self._touch(sid, leases)
            elif inspection.outcome == "gone" and write:
                self._forget_empty(sid, leases)
            elif inspection.outcome == "drift" and inspection.group is not None:
                report.drifts += inspection.drifts
                if write:
                    groups.append(inspection.group)
        return groups

    def _touch(self, subscription_id: str, leases: Leases) -> None:
        try:
            self._ledger.touch(subscription_id, leases.owner)
        except BridgeError:
            logger.warning("ledger expiry not refreshed; next pass", extra={"subscriptionId": subscription_id})
            return
        leases.given_back(subscription_id)

    def _forget_empty(self, subscription_id: str, leases: Leases) -> None:
        """The lease made an item with no entry (the subscription left the ledger meanwhile): delete it."""
        try:
            self._ledger.commit(subscription_id, None, leases.owner)
        except BridgeError:
            return
        leases.given_back(subscription_id)

    def _inspect(self, subscription_id: str, leases: Leases, deadline: Deadline, reading: Deadline) -> _Inspection:
        """In a pool thread: lease, read Rokt (paced), compare with the ledger."""
        if reading.remaining() < MIN_ATTEMPT_SECONDS or not self._pacer.wait(reading):
            return _Inspection(subscription_id, "failed")
        try:
            previous = leases.acquire(subscription_id, deadline.remaining() + LEASE_MARGIN_SECONDS)
        except SubscriptionBusy:
            return _Inspection(subscription_id, "busy")
        except BridgeError:
            return _Inspection(subscription_id, "failed")
        try:
            state = self._rokt.get(subscription_id, reading)
        except RoktRejected as exc:
            if exc.upstream_status in FINAL_READ_REFUSALS:
                logger.error(
                    "Rokt refuses to read a subscription; not reconciled",
                    extra={**_ROUTE, "subscriptionId": subscription_id, "status": exc.upstream_status},
                )
                return _Inspection(subscription_id, "skipped", previous)
            return _Inspection(subscription_id, "failed", previous)
        except BridgeError:
            return _Inspection(subscription_id, "failed", previous)
        return self._compare(subscription_id, state, previous)

    def _compare(self, subscription_id: str, state: dict[str, Any] | None, previous: LedgerEntry | None) -> _Inspection:
        """``previous`` None: the bridge has written nothing for the subscription (it had no subscriber to
        write to, or the entry is gone): forgotten once Rokt has, kept while still nobody's, written once
        Rokt names its subscriber."""
        if previous is None and state is None:
            return _Inspection(subscription_id, "gone")
        account = mapping.written_account(subscription_id, previous.values if previous else {}, state)
        if account is None:
            logger.error(
                "no account code for a ledger entry; not reconciled",
                extra={**_ROUTE, "subscriptionId": subscription_id},
            )
            return _Inspection(subscription_id, "skipped", previous)
        current = (
            mapping.subscriber(subscription_id, state, account, self._fallback)
            if state is not None
            else mapping.Subscriber(subscription_id, active=False, identity=previous.identity if previous else None)
        )
        if previous is None and not current.active:
            return _Inspection(subscription_id, "gone")
        kind = _kind(state, current, previous)
        if kind is None:
            return _Inspection(subscription_id, "unchanged", previous)
        group = plan.group(subscription_id, current, previous, [])
        if group is None:
            return _Inspection(subscription_id, "unchanged", previous)
        drifts = _drifts(subscription_id, kind, current, previous)
        return _Inspection(subscription_id, "drift", previous, group, kind, drifts)


def _kind(state: dict[str, Any] | None, current: mapping.Subscriber, previous: LedgerEntry | None) -> str | None:
    """What changed between the ledger and Rokt's state; None when nothing did."""
    if state is None:
        return "not_found"
    if not current.active:
        return "unsubscribe"
    if previous is None:  # nobody held it: a subscriber now (a move from nobody), or still nobody
        return "move" if current.identity else None
    who = current.identity or previous.identity
    if who != previous.identity or previous.former:
        return "move"
    if _sorted(current.values) != _sorted(previous.values):
        names = set(current.values) | set(previous.values)
        changed = {k for k in names if sorted(current.values.get(k, [])) != sorted(previous.values.get(k, []))}
        return "tags" if changed == {"rokt:tags"} else "update"
    if not previous.settled:
        return "unconfirmed"
    return None


def _drifts(subscription_id: str, kind: str, current: mapping.Subscriber, previous: LedgerEntry | None) -> list[Drift]:
    """Each attribute that differs (and the profile, for a move), e-mail addresses masked."""
    rokt = current.values if current.active else {}
    found = []
    who = current.identity or (previous.identity if previous else None)
    had = previous.values if previous else {}
    holders = [f"{k}:{v}" for h in (previous.holders() if previous else ()) for k, v in h.items()]
    if kind == "move":
        target = [f"{k}:{v}" for k, v in (who or {}).items()]
        found.append(Drift(subscription_id, kind, "profile", _masked(holders), _masked(target)))
    for name in sorted(set(rokt) | set(had)):
        have, want = sorted(had.get(name, [])), sorted(rokt.get(name, []))
        if have != want:
            found.append(Drift(subscription_id, kind, name, _masked(have), _masked(want)))
    if not found:
        found.append(Drift(subscription_id, kind, "(write not confirmed)", _masked(holders), _masked(holders)))
    return found


def _sorted(values: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in values.items() if v}


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _masked(values: list[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in redact_emails(values))


class _HealingBook:
    """The reconciliation's ``Bookkeeping``: no records, only subscriptions healed or left for next run."""

    def __init__(self, report: Report, inspections: dict[str, _Inspection], lock: Lock) -> None:
        self._report = report
        self._inspections = inspections
        self._lock = lock

    def before_call(self, group: plan.Group) -> None:
        """Nothing besides the write-ahead: a reconciliation sends no custom event."""

    def after_commit(self, group: plan.Group, refused: Refused) -> None:
        """Nothing: no claim to complete."""

    def written(self, group: plan.Group, status: int, refused: Refused) -> None:
        inspection = self._inspections[group.subscription_id]
        kind = inspection.kind or "update"
        with self._lock:
            self._report.healed[kind] += 1
        count(HEALED_METRICS[kind])
        logger.info(
            "subscription reconciled",
            extra={
                **_ROUTE,
                "subscriptionId": group.subscription_id,
                "kind": kind,
                "fields": sorted({d.field for d in inspection.drifts}),
                "status": status,
            },
        )

    def refused(self, group: plan.Group, why: str, refused: Refused) -> None:
        count("ReconciliationRefused")
        logger.error("Braze refused a reconciled subscription", extra={**_ROUTE, "reason": why})

    def failed(self, groups: list[plan.Group], error: BridgeError | NotAttempted, *, sent: bool) -> None:
        count("ReconciliationFailed", len(groups))
        logger.warning("reconciliation write failed; next run", extra={**_ROUTE, "error": str(error), "sent": sent})
        with self._lock:
            self._report.retry += [group.subscription_id for group in groups]
            self._report.failed += len(groups)
