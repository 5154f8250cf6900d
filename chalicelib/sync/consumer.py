"""The sync queue's consumer: a batch of accepted Rokt webhooks → as few /users/track calls as possible.

Three passes over a batch. **Claim** (Powertools BatchProcessor, one record at a time): read the
webhook, claim its ``eventId`` (exactly once) and start reading its subscription. **Read** (a bounded
thread pool, one task per subscription, sharing the container's token): take the subscription's
lease, which returns what the ledger says Braze may hold, then read its current state from Rokt.
Reading stops while the time left still covers the Braze write and the claim completions; records
not read by then go back at once (visibility 0), not counted as failures. **Flush**: one attribute
object per subscription (state, so order and redelivery do not matter) and one custom event per
webhook (history), packed 75 + 75 per call, with the ledger written ahead of Braze and committed
after it, under the lease (see ``records``). Each record's fate follows its call: written → claim
completed and acknowledged; 429/5xx → claim released, retried later through the queue's
visibility; sent but unanswered (or the ledger not committed) → the claim remembers the custom
event was sent and the record comes back to rewrite the state only; refused for good →
dead-lettered with the reason, never silently dropped.

Retries end where the consumer decides (``chalicelib.fates``): 24 h after the message was queued, or
on the last receive the queue's redrive policy allows, whichever comes first — then the record goes
to the DLQ with the reason, so SQS's own redrive only ever moves a message whose invocation crashed.
A subscription Rokt answers 404 for, that the bridge never wrote, may be one Rokt has not made
readable yet: it is retried for ``SYNC_NOT_FOUND_HORIZON_SECONDS`` before it is a dead letter.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from chalicelib.braze.client import MAX_OBJECTS_PER_KIND, BrazeError, BrazeOutcomeUnknown, BrazeRateLimited
from chalicelib.clock import MIN_ATTEMPT_SECONDS, Deadline, lambda_remaining_ms
from chalicelib.errors import BridgeError, InFlight, RoktRejected, UpstreamFailed, UpstreamTimeout, ValidationFailed
from chalicelib.fates import Fate, RecordFates
from chalicelib.observability import count, logger, record_outcome
from chalicelib.runtime import SYSTEM
from chalicelib.settings import RETRY_HORIZON_SECONDS
from chalicelib.sqs import sent_at
from chalicelib.sync import mapping
from chalicelib.sync.envelope import parse, problems
from chalicelib.sync.queue import (
    SYNC_BASE_BACKOFF_SECONDS,
    SYNC_MAX_BACKOFF_SECONDS,
    SYNC_NOT_FOUND_HORIZON_SECONDS,
)
from chalicelib.sync.records import EVENT_SENT, LedgerEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.braze.client import TrackResult
    from chalicelib.runtime import Runtime
    from chalicelib.sqs import QueueRecords
    from chalicelib.sync.envelope import RoktWebhook
    from chalicelib.sync.records import Claim, EventClaims, SyncLedger

CONSUMER_BUDGET_SECONDS = 25.0
LAMBDA_SAFETY_MARGIN_SECONDS = 2.0
IN_FLIGHT_DELAY_SECONDS = 30
# Rokt reads at once per container: below requests' pool of 10 connections per host, so no read
# waits for (or throws away) a connection; 75 reads at 340 ms take about 3.2 s.
MAX_PARALLEL_READS = 8
# What the flush needs after the reads: one /users/track call at Braze's usual pace, the ledger
# writes and the claim completions (DynamoDB, a few ms each, in AWS).
FLUSH_RESERVE_SECONDS = 5.0
# A lease outlives the consumer's own deadline by this much (a Braze call sent just before it).
LEASE_MARGIN_SECONDS = 10.0


class SubscriptionReader(Protocol):
    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None: ...


class BrazeWriter(Protocol):
    def track(
        self, attributes: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], deadline: Deadline
    ) -> TrackResult: ...


class DeadLetter(Exception):
    """This record can never be written as it is: park it in the DLQ with the reason."""


class NotStaged(Exception):
    """The batch's reading time ran out before this record's subscription was read: not a failure."""


@dataclass
class _Staged:
    record: SQSRecord
    webhook: RoktWebhook
    subscriber: mapping.Subscriber
    previous: LedgerEntry | None
    event: dict[str, Any] | None
    started: float
    sent_before: bool = False  # the claim says its custom event may already be in Braze


@dataclass(frozen=True)
class _Read:
    """A subscription read under its lease: Rokt's state and what the ledger says Braze may hold."""

    state: dict[str, Any] | None
    previous: LedgerEntry | None


@dataclass
class _Claimed:
    record: SQSRecord
    webhook: RoktWebhook
    claim: Claim
    started: float


@dataclass
class _Batch:
    deadline: Deadline
    reads_deadline: Deadline
    remaining_ms: int | None
    pool: Executor
    owner: str
    claimed: list[_Claimed] = field(default_factory=list)
    staged: list[_Staged] = field(default_factory=list)
    reads: dict[str, Future[_Read]] = field(default_factory=dict)
    leased: set[str] = field(default_factory=set)  # leases this batch took and has not given back
    kept: set[str] = field(default_factory=set)  # leases to let expire (a Braze call may still land)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failed: set[str] = field(default_factory=set)


class SyncConsumer:
    def __init__(
        self,
        rokt: SubscriptionReader,
        braze: BrazeWriter,
        claims: EventClaims,
        ledger: SyncLedger,
        records: QueueRecords,
        *,
        fallback: mapping.IdentityFallback,
        budget_seconds: float = CONSUMER_BUDGET_SECONDS,
        flush_reserve_seconds: float = FLUSH_RESERVE_SECONDS,
        parallel_reads: int = MAX_PARALLEL_READS,
        horizon_seconds: float = RETRY_HORIZON_SECONDS,
        not_found_seconds: float = SYNC_NOT_FOUND_HORIZON_SECONDS,
        runtime: Runtime = SYSTEM,
    ) -> None:
        self._rokt = rokt
        self._braze = braze
        self._claims = claims
        self._ledger = ledger
        self._fates = RecordFates(
            records,
            horizon_seconds=horizon_seconds,
            base_backoff_seconds=SYNC_BASE_BACKOFF_SECONDS,
            max_backoff_seconds=SYNC_MAX_BACKOFF_SECONDS,
            wall_clock=runtime.time,
            what="rokt webhook",
            metric="SyncDeadLettered",
        )
        self._fallback = fallback
        self._budget = budget_seconds
        self._flush_reserve = flush_reserve_seconds
        self._parallel_reads = parallel_reads
        self._runtime = runtime
        self._clock = runtime.monotonic
        self._not_found_horizon = not_found_seconds
        self._wall_clock = runtime.time

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        with self._runtime.executor(self._parallel_reads, "rokt-read") as pool:
            batch = self._batch(context, pool)
            try:
                processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
                with processor(records=event.get("Records", []), handler=lambda record: self._stage(record, batch)):
                    processor.process()
                failed = {str(item["itemIdentifier"]) for item in processor.response()["batchItemFailures"]}
                for claimed in batch.claimed:
                    self._settle_or_fail(claimed, batch)
                self._flush(batch)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # every read is bounded by the reads' deadline
                for subscription_id in batch.leased - batch.kept:
                    self._ledger.release(subscription_id, batch.owner)
        failed |= batch.failed
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}

    def _batch(self, context: Any, pool: Executor) -> _Batch:
        sleep = self._runtime.sleep
        deadline = Deadline.within(self._budget, context, LAMBDA_SAFETY_MARGIN_SECONDS, self._clock, sleep)
        reads = Deadline(deadline.remaining() - self._flush_reserve, clock=self._clock, sleep=sleep)
        return _Batch(deadline, reads, lambda_remaining_ms(context), pool, self._runtime.new_id())

    # --- claim ------------------------------------------------------------------------------
    def _stage(self, record: SQSRecord, batch: _Batch) -> None:
        started = self._clock()
        with self._fate(record, started) as fate:
            fate.webhook = webhook = parse(json.loads(record.body)["webhook"])
            if not webhook.used or webhook.subscription_id is None or webhook.account is None:
                raise DeadLetter(f"{webhook.event_type} webhooks are not synced")
            claim = self._claims.claim(webhook.event_id, batch.remaining_ms)
            if claim == "done":
                fate.outcome = "duplicate"
                return
            if claim == "busy":
                raise InFlight("another consumer is writing this webhook", retry_after=IN_FLIGHT_DELAY_SECONDS)
            fate.claim = claim
            if webhook.subscription_id not in batch.reads:
                batch.reads[webhook.subscription_id] = batch.pool.submit(self._read, webhook.subscription_id, batch)
            batch.claimed.append(_Claimed(record, webhook, claim, started))
            fate.outcome = "staged"
        if fate.failed:
            batch.failed.add(record.message_id)

    def _read(self, subscription_id: str, batch: _Batch) -> _Read:
        """In a pool thread: lease the subscription, then read Rokt (after the lease, so the state is
        at least as new as whatever the previous lease holder wrote)."""
        if batch.reads_deadline.remaining() < MIN_ATTEMPT_SECONDS:
            raise NotStaged("no time left to read the subscription")
        hold = batch.deadline.remaining() + LEASE_MARGIN_SECONDS
        previous = self._ledger.acquire(subscription_id, batch.owner, hold)
        with batch.lock:
            batch.leased.add(subscription_id)
        started = self._clock()
        try:
            state = self._rokt.get(subscription_id, batch.reads_deadline)
        except UpstreamTimeout as exc:
            # cut short by the reading time (what is left is no more than the read took), not a Rokt
            # that is slow with time to spare: back to the queue at once, not a failure
            if batch.reads_deadline.remaining() <= self._clock() - started + MIN_ATTEMPT_SECONDS:
                raise NotStaged("the reading time ran out during the read") from exc
            raise
        except RoktRejected as exc:
            status = exc.upstream_status
            raise DeadLetter(f"Rokt refused to read subscription {subscription_id} (HTTP {status})") from exc
        return _Read(state, previous)

    # --- read -------------------------------------------------------------------------------
    def _settle(self, claimed: _Claimed, batch: _Batch) -> None:
        """Wait for the record's subscription read, then stage its writes (or decide its fate)."""
        record, webhook = claimed.record, claimed.webhook
        with self._fate(record, claimed.started) as fate:
            fate.webhook, fate.claim = webhook, claimed.claim
            staged = self._prepare(claimed, self._wait(batch.reads[str(webhook.subscription_id)], batch))
            if isinstance(staged, str):
                fate.outcome = staged
                return
            batch.staged.append(staged)
            fate.outcome = "staged"
        if fate.failed:
            batch.failed.add(record.message_id)

    def _settle_or_fail(self, claimed: _Claimed, batch: _Batch) -> None:
        """As BatchProcessor does in the claim pass: a bug in one record fails that record only."""
        try:
            self._settle(claimed, batch)
        except Exception as exc:  # reported; the record comes back
            logger.exception("sync record failed unexpectedly", extra={"messageId": claimed.record.message_id})
            if claimed.claim == "new":
                self._claims.release(claimed.webhook.event_id, exc)
            batch.failed.add(claimed.record.message_id)

    def _wait(self, read: Future[_Read], batch: _Batch) -> _Read:
        try:
            # reads end by the reads' deadline; a little slack for the thread to hand its answer back
            return read.result(timeout=max(batch.reads_deadline.remaining(), 0.0) + 1.0)
        except FutureTimeout as exc:
            raise NotStaged("the subscription read did not finish in time") from exc

    def _prepare(self, claimed: _Claimed, read: _Read) -> _Staged | str:
        """The record's staged writes, or why there are none: ``skipped`` (no identity to write to)."""
        webhook = claimed.webhook
        subscription_id = str(webhook.subscription_id)
        if webhook.account is None:  # checked before claiming; here for the type
            raise DeadLetter(f"{webhook.event_type} webhooks are not synced")
        state, previous = read.state, read.previous
        if state is None and previous is None:
            self._unknown_subscription(claimed.record, subscription_id)
        account = mapping.known_account(subscription_id, webhook.account, state, previous.values if previous else None)
        subscriber = (
            mapping.subscriber(subscription_id, state, account, self._fallback)
            if state is not None
            else mapping.Subscriber(subscription_id, active=False, identity=previous.identity if previous else None)
        )
        who = subscriber.identity or (previous.identity if previous else None)
        if who is None:
            count("SyncSkippedNoIdentity")
            logger.info("subscription has no subscriber id or usable e-mail", extra={"eventId": webhook.event_id})
            self._claims.complete(webhook.event_id, {"skipped": "no_identity"})
            return "skipped"
        event = None
        if claimed.claim == "new":  # "sent": the custom event may be in Braze already; never twice
            now = mapping.utc_time(self._wall_clock())
            event = mapping.custom_event(webhook, who, subscriber if state is not None else None, now)
        return _Staged(
            claimed.record, webhook, subscriber, previous, event, claimed.started, sent_before=claimed.claim == "sent"
        )

    @contextlib.contextmanager
    def _fate(self, record: SQSRecord, started: float) -> Iterator[_Fate]:
        """What becomes of a record whose staging raised: dead-lettered with the reason, retried later,
        or (NotStaged) straight back to the queue; logged once unless it was staged."""
        fate = _Fate()
        try:
            yield fate
        except NotStaged:
            fate.outcome = "not_attempted"
            self._give_back(fate)
            self._fates.give_back(record)
            fate.failed = NotStaged()
        except DeadLetter as exc:
            fate.outcome, fate.error = "dead_lettered", type(exc).__name__
            self._dead_letter_or_retry(record, str(exc), fate, exc)
        except ValidationFailed as exc:  # accepted from Rokt, but without what the sync needs
            fate.outcome, fate.error = "dead_lettered", exc.code
            self._dead_letter_or_retry(record, f"unusable webhook: {problems(exc)}", fate, exc)
        except (ValueError, KeyError, TypeError) as exc:  # the message itself is unreadable
            fate.outcome, fate.error = "dead_lettered", type(exc).__name__
            self._dead_letter_or_retry(record, f"unreadable message: {exc}", fate, exc)
        except BridgeError as exc:
            fate.outcome, fate.error = exc.outcome, exc.code
            if not isinstance(exc, InFlight):
                self._give_back(fate, exc)
            if self._fates.retry(record, exc.message, getattr(exc, "retry_after", None)) is Fate.DEAD_LETTERED:
                fate.outcome = "dead_lettered"
            else:
                fate.failed = exc
        finally:
            if fate.outcome != "staged":
                summary = {**_summary(record, fate.webhook), "outcome": fate.outcome}
                if fate.error:
                    summary["error"] = fate.error
                summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
                record_outcome("rokt webhook synced", summary)

    def _dead_letter_or_retry(self, record: SQSRecord, reason: str, fate: _Fate, exc: Exception) -> None:
        """Dead-letter a record that can never be written (its claim given back); if the DLQ does not take
        it, retry it instead."""
        self._give_back(fate, exc)
        if self._fates.dead_letter(record, reason) is Fate.RETRIED:
            fate.outcome = "retryable_failure"
            fate.failed = exc

    def _give_back(self, fate: _Fate, reason: Exception | None = None) -> None:
        """Release a claim this record took (a ``sent`` claim stays: it remembers the event)."""
        if fate.webhook is not None and fate.claim == "new":
            self._claims.release(fate.webhook.event_id, reason or NotStaged())

    # --- flush ------------------------------------------------------------------------------
    def _flush(self, batch: _Batch) -> None:
        for chunk in _chunks(_groups(batch.staged)):
            self._write(chunk, batch)

    def _write(self, chunk: list[_Group], batch: _Batch) -> None:
        """Ledger written ahead (per subscription, in parallel), one /users/track call, ledger committed."""
        ahead = self._ledger_writes(
            batch,
            [
                (g, functools.partial(self._ledger.put, g.subscription_id, g.ahead, batch.owner))
                for g in chunk
                if g.ahead is not None
            ],
        )
        for group, error in ahead:
            if error is not None:  # Braze is not told what the ledger could not record first
                self._write_failed(group.records, batch, error)
        chunk = [group for group in chunk if all(error is None for g, error in ahead if g is group)]
        if not chunk:
            return
        attributes = [obj for group in chunk for obj in group.attributes]
        owners = [group.records[0] for group in chunk for _ in group.attributes]
        with_events = [s for group in chunk for s in group.records if s.event is not None]
        events = [s.event for s in with_events if s.event is not None]
        records = [s for group in chunk for s in group.records]
        try:
            result = self._braze.track(attributes, events, batch.deadline)
        except (BrazeError, BridgeError) as exc:
            if isinstance(exc, BrazeOutcomeUnknown):  # Braze may still apply it: keep the lease until it expires
                batch.kept |= {group.subscription_id for group in chunk}
            self._write_failed(records, batch, exc)
            return
        count("BrazeCalls")
        self._log_object_errors(result, owners, with_events)
        commits = self._ledger_writes(
            batch,
            [(g, functools.partial(self._ledger.commit, g.subscription_id, g.ledger, batch.owner)) for g in chunk],
        )
        for group, error in commits:
            if error is not None:
                logger.warning("sync ledger not committed; the records come back and recompute")
                self._write_failed(group.records, batch, error, sent=True)
                continue
            batch.leased.discard(group.subscription_id)
            for staged in group.records:
                self._finish(staged, "synced", status=result.status)

    @staticmethod
    def _ledger_writes(
        batch: _Batch, writes: list[tuple[_Group, Callable[[], None]]]
    ) -> list[tuple[_Group, BridgeError | None]]:
        """Run one ledger write per subscription in the batch's pool (DynamoDB calls, a few ms each,
        that would otherwise add up across 75 subscriptions); each group with its error, if any."""

        def attempt(write: Callable[[], None]) -> BridgeError | None:
            try:
                write()
            except BridgeError as exc:
                return exc
            return None

        errors = batch.pool.map(attempt, [write for _, write in writes])
        return [(group, error) for (group, _), error in zip(writes, errors, strict=True)]

    def _write_failed(self, chunk: list[_Staged], batch: _Batch, exc: Exception, *, sent: bool = False) -> None:
        """``sent``: Braze took (or may have taken) the call, so each claim remembers its custom event
        was sent and the record comes back to rewrite the state only."""
        sent = sent or isinstance(exc, BrazeOutcomeUnknown)
        transient = isinstance(exc, BridgeError) and exc.outcome == "retryable_failure"
        retryable = sent or getattr(exc, "retryable", transient)
        retry_after = exc.retry_after if isinstance(exc, BrazeRateLimited) else None
        logger.warning("Braze write failed", extra={"error": str(exc), "records": len(chunk), "retryable": retryable})
        for staged in chunk:
            if sent and staged.event is not None:
                self._remember_sent(staged)
            elif not staged.sent_before:  # that claim remembers a custom event: keep it
                self._claims.release(staged.webhook.event_id, exc)
            if retryable:
                fate = self._fates.retry(staged.record, str(exc), retry_after)
            else:
                fate = self._fates.dead_letter(staged.record, str(exc))
            if fate is Fate.DEAD_LETTERED:
                self._finish(staged, "dead_lettered", error=type(exc).__name__)
            else:
                batch.failed.add(staged.record.message_id)
                self._finish(staged, "retryable_failure", error=type(exc).__name__)

    def _remember_sent(self, staged: _Staged) -> None:
        if not self._complete(staged.webhook.event_id, EVENT_SENT):
            logger.error("custom event possibly written, claim not updated", extra={"eventId": staged.webhook.event_id})

    def _complete(self, event_id: str, result: dict[str, Any]) -> bool:
        """Complete a claim whose custom event Braze has (or may have): tried twice, because a claim
        left in progress expires and a redelivery would then send the event again."""
        for _ in range(2):
            try:
                self._claims.complete(event_id, result)
            except BridgeError:
                continue
            return True
        return False

    def _finish(self, staged: _Staged, outcome: str, **extra: Any) -> None:
        if outcome == "synced" and not self._complete(staged.webhook.event_id, {"status": "synced"}):
            logger.error("written to Braze, claim not completed", extra={"eventId": staged.webhook.event_id})
        summary = {
            **_summary(staged.record, staged.webhook),
            "outcome": outcome,
            "latencyMs": round((self._clock() - staged.started) * 1000, 1),
            **extra,
        }
        record_outcome("rokt webhook synced", summary)

    def _log_object_errors(self, result: TrackResult, owners: list[_Staged], with_events: list[_Staged]) -> None:
        """Braze's non-fatal per-object errors, named by webhook, never by e-mail address."""
        for error in result.errors:
            kind, index = error.get("input_array"), error.get("index")
            source = owners if kind == "attributes" else with_events
            webhook = source[index].webhook if isinstance(index, int) and 0 <= index < len(source) else None
            count("BrazeObjectErrors")
            logger.warning(
                "Braze did not apply an object",
                extra={
                    "type": str(error.get("type"))[:200],
                    "inputArray": kind,
                    "eventId": webhook.event_id if webhook else None,
                },
            )

    # --- retries and dead letters ---------------------------------------------------------
    def _unknown_subscription(self, record: SQSRecord, subscription_id: str) -> NoReturn:
        """Rokt answered 404 and the bridge never wrote this subscription: retry (Rokt may not have made
        a new subscription readable yet) until the not-found horizon, then dead-letter it."""
        sent = sent_at(record)
        age = 0.0 if sent is None else max(self._wall_clock() - sent, 0.0)
        if age >= self._not_found_horizon:
            raise DeadLetter(
                f"Rokt does not know subscription {subscription_id} (HTTP 404 for {age / 60:.0f} min, horizon "
                f"{self._not_found_horizon / 60:g} min) and nothing was written for it"
            )
        raise UpstreamFailed(
            f"Rokt does not know subscription {subscription_id} yet (HTTP 404); retried for "
            f"{self._not_found_horizon / 60:g} min",
            upstream_status=404,
        )


@dataclass
class _Fate:
    """What staging decided for one record (see ``SyncConsumer._fate``)."""

    webhook: RoktWebhook | None = None
    claim: Claim | None = None
    outcome: str = "error"
    error: str | None = None
    failed: Exception | None = None


@dataclass
class _Group:
    """One subscription's share of a batch: its attribute objects (state) and its records (events),
    the ledger written ahead of Braze (None when it already covers the new values) and after it."""

    subscription_id: str
    attributes: list[dict[str, Any]]
    records: list[_Staged]
    ledger: LedgerEntry | None
    ahead: LedgerEntry | None = None


def _groups(staged: list[_Staged]) -> list[_Group]:
    by_subscription: dict[str, list[_Staged]] = {}
    for item in staged:
        by_subscription.setdefault(item.subscriber.subscription_id, []).append(item)
    groups = []
    for subscription_id, records in by_subscription.items():
        first = records[0]
        current, previous = first.subscriber, first.previous
        who = current.identity or (previous.identity if previous else None)
        if who is None:
            continue
        add, remove = mapping.changes(previous.values if previous else {}, current)
        objects = []
        if previous is not None and previous.identity != who:
            # the subscriber id changed: take everything off the old profile too
            old = mapping.attribute_object(previous.identity, {}, previous.values)
            objects += [old] if old is not None else []
        new = mapping.attribute_object(who, add, remove)
        objects += [new] if new is not None else []
        ledger = LedgerEntry(who, current.values) if current.active else None
        groups.append(_Group(subscription_id, objects, records, ledger, _ahead(previous, who, current)))
    return groups


def _ahead(previous: LedgerEntry | None, who: dict[str, str], current: mapping.Subscriber) -> LedgerEntry | None:
    """The ledger to write before Braze: what it holds plus the values about to be added (kept under
    the identity it already names, whose values the next write removes from the new profile too)."""
    if not current.active:
        return None  # nothing is added
    known = previous.values if previous else {}
    merged = {name: list(values) for name, values in known.items()}
    for name, values in current.values.items():
        merged.setdefault(name, [])
        merged[name] += [v for v in values if v not in merged[name]]
    if previous is not None and merged == previous.values:
        return None
    return LedgerEntry(previous.identity if previous else who, merged)


def _chunks(groups: list[_Group]) -> list[list[_Group]]:
    """Whole subscriptions per call, at most 75 attribute objects and 75 events (a batch is <= 75
    records, so one subscription always fits one call)."""
    chunks: list[list[_Group]] = []
    current: list[_Group] = []
    attributes = events = 0
    for group in groups:
        group_events = sum(1 for s in group.records if s.event is not None)
        full = attributes + len(group.attributes) > MAX_OBJECTS_PER_KIND or events + group_events > MAX_OBJECTS_PER_KIND
        if current and full:
            chunks.append(current)
            current, attributes, events = [], 0, 0
        current.append(group)
        attributes += len(group.attributes)
        events += group_events
    if current:
        chunks.append(current)
    return chunks


def _summary(record: SQSRecord, webhook: RoktWebhook | None = None) -> dict[str, Any]:
    """The fields every sync log line carries: route, message, and the Rokt webhook once it is read."""
    summary: dict[str, Any] = {"route": "sync_queue", "messageId": record.message_id}
    if webhook is not None:
        summary.update(eventId=webhook.event_id, eventType=webhook.event_type)
    return summary
