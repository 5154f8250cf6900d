"""The sync queue's consumer: a batch of accepted Rokt webhooks → as few /users/track calls as possible.

Two passes over a batch. **Stage** (Powertools BatchProcessor, one record at a time): read the
webhook, claim its ``eventId`` (exactly once), read the subscription's current state from Rokt (once
per subscription per batch) and what the ledger says Braze holds, and stage the objects to write.
**Flush**: one attribute object per subscription (state, so order and redelivery do not matter) and
one custom event per webhook (history), packed 75 + 75 per call. Each record's fate follows its call:
written → claim completed and acknowledged; 429/5xx/timeout → claim released, retried later through
the queue's visibility; refused for good → dead-lettered with the reason, never silently dropped.

Retries end where the consumer decides (``sqs.RetryHorizon``): 24 h after the message was queued, or
on the last receive the queue's redrive policy allows, whichever comes first — then the record goes
to the DLQ with the reason, so SQS's own redrive only ever moves a message whose invocation crashed.
A subscription Rokt answers 404 for, that the bridge never wrote, may be one Rokt has not made
readable yet: it is retried for ``SYNC_NOT_FOUND_HORIZON_SECONDS`` before it is a dead letter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from chalicelib.braze.client import MAX_OBJECTS_PER_KIND, BrazeError, BrazeRateLimited
from chalicelib.clock import Deadline, lambda_remaining_ms
from chalicelib.errors import BridgeError, InFlight, RoktRejected, UpstreamFailed, ValidationFailed
from chalicelib.observability import count, logger, record_outcome
from chalicelib.settings import RETRY_HORIZON_SECONDS
from chalicelib.sqs import RetryHorizon, backoff_seconds, sent_at
from chalicelib.sync import mapping
from chalicelib.sync.envelope import parse, problems
from chalicelib.sync.queue import (
    SYNC_BASE_BACKOFF_SECONDS,
    SYNC_MAX_BACKOFF_SECONDS,
    SYNC_NOT_FOUND_HORIZON_SECONDS,
)
from chalicelib.sync.records import LedgerEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.braze.client import TrackResult
    from chalicelib.sqs import QueueRecords
    from chalicelib.sync.envelope import RoktWebhook
    from chalicelib.sync.records import EventClaims, SyncLedger

CONSUMER_BUDGET_SECONDS = 25.0
LAMBDA_SAFETY_MARGIN_SECONDS = 2.0
IN_FLIGHT_DELAY_SECONDS = 30


class SubscriptionReader(Protocol):
    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None: ...


class BrazeWriter(Protocol):
    def track(
        self, attributes: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], deadline: Deadline
    ) -> TrackResult: ...


class DeadLetter(Exception):
    """This record can never be written as it is: park it in the DLQ with the reason."""


@dataclass
class _Staged:
    record: SQSRecord
    webhook: RoktWebhook
    subscriber: mapping.Subscriber
    previous: LedgerEntry | None
    event: dict[str, Any] | None
    started: float


@dataclass
class _Batch:
    deadline: Deadline
    remaining_ms: int | None
    staged: list[_Staged] = field(default_factory=list)
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    ledgers: dict[str, LedgerEntry | None] = field(default_factory=dict)
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
        clock: Callable[[], float] = time.monotonic,
        horizon_seconds: float = RETRY_HORIZON_SECONDS,
        not_found_seconds: float = SYNC_NOT_FOUND_HORIZON_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._rokt = rokt
        self._braze = braze
        self._claims = claims
        self._ledger = ledger
        self._records = records
        self._fallback = fallback
        self._budget = budget_seconds
        self._clock = clock
        self._horizon = RetryHorizon(horizon_seconds)
        self._not_found_horizon = not_found_seconds
        self._wall_clock = wall_clock

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        batch = self._batch(context)
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        with processor(records=event.get("Records", []), handler=lambda record: self._stage(record, batch)):
            processor.process()
        failed = {str(item["itemIdentifier"]) for item in processor.response()["batchItemFailures"]}
        self._flush(batch)
        failed |= batch.failed
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}

    def _batch(self, context: Any) -> _Batch:
        deadline = Deadline.within(self._budget, context, LAMBDA_SAFETY_MARGIN_SECONDS, self._clock)
        return _Batch(deadline, lambda_remaining_ms(context))

    # --- stage ------------------------------------------------------------------------------
    def _stage(self, record: SQSRecord, batch: _Batch) -> None:
        started = self._clock()
        summary = _summary(record)
        webhook: RoktWebhook | None = None
        try:
            webhook = parse(json.loads(record.body)["webhook"])
            summary = _summary(record, webhook)
            staged = self._prepare(record, webhook, batch, started)
            if isinstance(staged, str):
                summary["outcome"] = staged
                return
            batch.staged.append(staged)
            summary["outcome"] = "staged"
        except DeadLetter as exc:
            summary.update(outcome="dead_lettered", error=type(exc).__name__)
            if webhook is not None:
                self._claims.release(webhook.event_id, exc)
            self._dead_letter(record, str(exc))
        except ValidationFailed as exc:  # accepted from Rokt, but without what the sync needs
            summary.update(outcome="dead_lettered", error=exc.code)
            self._dead_letter(record, f"unusable webhook: {problems(exc)}")
        except (ValueError, KeyError, TypeError) as exc:  # the message itself is unreadable
            summary.update(outcome="dead_lettered", error=type(exc).__name__)
            self._dead_letter(record, f"unreadable message: {exc}")
        except BridgeError as exc:
            summary.update(outcome=exc.outcome, error=exc.code)
            if webhook is not None and not isinstance(exc, InFlight):
                self._claims.release(webhook.event_id, exc)
            if self._retry_or_give_up(record, getattr(exc, "retry_after", None), exc.message):
                summary["outcome"] = "dead_lettered"
                return
            raise
        finally:
            if summary.get("outcome") != "staged":
                summary["latencyMs"] = round((self._clock() - started) * 1000, 1)
                record_outcome("rokt webhook synced", summary)

    def _prepare(self, record: SQSRecord, webhook: RoktWebhook, batch: _Batch, started: float) -> _Staged | str:
        """The record's staged writes, or why there are none: ``duplicate`` (written before) or
        ``skipped`` (no identity to write to)."""
        if not webhook.used or webhook.subscription_id is None or webhook.account is None:
            raise DeadLetter(f"{webhook.event_type} webhooks are not synced")
        claim = self._claims.claim(webhook.event_id, batch.remaining_ms)
        if claim == "done":
            return "duplicate"
        if claim == "busy":
            raise InFlight("another consumer is writing this webhook", retry_after=IN_FLIGHT_DELAY_SECONDS)
        subscription_id = webhook.subscription_id
        if subscription_id not in batch.states:
            try:
                batch.states[subscription_id] = self._rokt.get(subscription_id, batch.deadline)
            except RoktRejected as exc:
                status = exc.upstream_status
                raise DeadLetter(f"Rokt refused to read subscription {subscription_id} (HTTP {status})") from exc
        if subscription_id not in batch.ledgers:
            batch.ledgers[subscription_id] = self._ledger.get(subscription_id)
        state, previous = batch.states[subscription_id], batch.ledgers[subscription_id]
        if state is None and previous is None:
            self._unknown_subscription(record, subscription_id)
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
        event = mapping.custom_event(webhook, who, subscriber if state is not None else None, mapping.utc_now())
        return _Staged(record, webhook, subscriber, previous, event, started)

    # --- flush ------------------------------------------------------------------------------
    def _flush(self, batch: _Batch) -> None:
        for chunk in _chunks(_groups(batch.staged)):
            self._write(chunk, batch)

    def _write(self, chunk: list[_Group], batch: _Batch) -> None:
        attributes = [obj for group in chunk for obj in group.attributes]
        owners = [group.records[0] for group in chunk for _ in group.attributes]
        with_events = [s for group in chunk for s in group.records if s.event is not None]
        events = [s.event for s in with_events if s.event is not None]
        records = [s for group in chunk for s in group.records]
        try:
            result = self._braze.track(attributes, events, batch.deadline)
        except (BrazeError, BridgeError) as exc:
            self._write_failed(records, batch, exc)
            return
        count("BrazeCalls")
        self._log_object_errors(result, owners, with_events)
        for group in chunk:
            try:
                self._ledger.put(group.subscription_id, group.ledger)
            except BridgeError:
                logger.warning("sync ledger not updated; the next webhook recomputes it")
        for staged in records:
            self._finish(staged, "synced", status=result.status)

    def _write_failed(self, chunk: list[_Staged], batch: _Batch, exc: Exception) -> None:
        retryable = getattr(exc, "retryable", isinstance(exc, BridgeError) and exc.outcome == "retryable_failure")
        retry_after = exc.retry_after if isinstance(exc, BrazeRateLimited) else None
        logger.warning("Braze write failed", extra={"error": str(exc), "records": len(chunk), "retryable": retryable})
        for staged in chunk:
            self._claims.release(staged.webhook.event_id, exc)
            if retryable and self._retry_or_give_up(staged.record, retry_after, str(exc)):
                self._finish(staged, "dead_lettered", error=type(exc).__name__)
            elif retryable or not self._dead_letter(staged.record, str(exc)):
                batch.failed.add(staged.record.message_id)
                self._finish(staged, "retryable_failure", error=type(exc).__name__)
            else:
                self._finish(staged, "dead_lettered", error=type(exc).__name__)

    def _finish(self, staged: _Staged, outcome: str, **extra: Any) -> None:
        if outcome == "synced":
            try:
                self._claims.complete(staged.webhook.event_id, {"status": "synced"})
            except BridgeError:
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

    def _retry_or_give_up(self, record: SQSRecord, retry_after: int | None, why: str) -> bool:
        """Push the record's next attempt out by the backoff; or, past the horizon or on the last receive
        the queue allows, dead-letter it with the reason. True if it was dead-lettered."""
        receives = int(record.attributes.approximate_receive_count or 1)
        delay = backoff_seconds(receives, retry_after, SYNC_BASE_BACKOFF_SECONDS, SYNC_MAX_BACKOFF_SECONDS)
        sent = sent_at(record)
        gave_up = self._horizon.give_up(
            age=None if sent is None else self._wall_clock() - sent,
            delay=delay,
            receives=receives,
            max_receives=self._records.max_receives(record),
        )
        if gave_up is not None and self._park(record, f"{gave_up}: {why}"):
            return True
        self._records.delay(record, delay)
        return False

    def _dead_letter(self, record: SQSRecord, reason: str) -> bool:
        if self._park(record, reason):
            return True
        raise RuntimeError("the sync dead-letter queue could not take the message; SQS will retry it")

    def _park(self, record: SQSRecord, reason: str) -> bool:
        """Copy ``record`` to the DLQ with ``reason``; False if the DLQ did not take it."""
        if not self._records.dead_letter(record, reason):
            return False
        count("SyncDeadLettered")
        logger.error("rokt webhook dead-lettered", extra={"messageId": record.message_id, "reason": reason})
        return True


@dataclass
class _Group:
    """One subscription's share of a batch: its attribute objects (state) and its records (events)."""

    subscription_id: str
    attributes: list[dict[str, Any]]
    records: list[_Staged]
    ledger: LedgerEntry | None


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
        groups.append(_Group(subscription_id, objects, records, ledger))
    return groups


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
