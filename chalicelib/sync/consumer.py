"""The sync queue's consumer: a batch of accepted Rokt webhooks → as few /users/track calls as possible.

Three passes over a batch. **Claim** (Powertools BatchProcessor, one record at a time): read the
webhook, claim its ``eventId`` (exactly once) and start reading its subscription. **Read**
(``reads``: a bounded thread pool, one task per subscription, sharing the container's token): take
the subscription's lease, which returns what the ledger says Braze may hold, then read its current
state from Rokt; reading stops while the time left still covers the flush, and records not read by
then go back at once (visibility 0), not counted as failures. **Flush** (``plan``, then ``writer``):
one attribute object per subscription (state, so order and redelivery do not matter) and one custom
event per webhook (history), packed 75 + 75 per call, with the ledger written ahead of Braze and
committed after it, under the lease (see ``records``); ``bookkeeping`` settles each record as it goes.

A record's fate when it is not written is one of ``chalicelib.fates``: retried after a backoff,
dead-lettered with the reason, or given back at once. Retries end 24 h after the message was queued,
or on the last receive the queue's redrive policy allows, whichever comes first — then the record
goes to the DLQ with the reason, so SQS's own redrive only ever moves a message whose invocation
crashed. A subscription Rokt answers 404 for, that the bridge never wrote, may be one Rokt has not
made readable yet: it is retried for ``SYNC_NOT_FOUND_HORIZON_SECONDS`` before it is a dead letter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from chalicelib.clock import Deadline, lambda_remaining_ms
from chalicelib.errors import InFlight, UpstreamFailed
from chalicelib.fates import RecordFates
from chalicelib.observability import count, logger
from chalicelib.runtime import SYSTEM
from chalicelib.settings import RETRY_HORIZON_SECONDS
from chalicelib.sqs import sent_at
from chalicelib.sync import mapping, plan
from chalicelib.sync.bookkeeping import RecordBook
from chalicelib.sync.envelope import parse
from chalicelib.sync.outcomes import DeadLetter, NotAttempted, Outcome, Unstaged
from chalicelib.sync.queue import SYNC_BASE_BACKOFF_SECONDS, SYNC_MAX_BACKOFF_SECONDS, SYNC_NOT_FOUND_HORIZON_SECONDS
from chalicelib.sync.reads import FLUSH_RESERVE_SECONDS, MAX_PARALLEL_READS, Leases, Reads
from chalicelib.sync.writer import Writer

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.runtime import Runtime
    from chalicelib.sqs import QueueRecords
    from chalicelib.sync.reads import SubscriptionReader
    from chalicelib.sync.records import EventClaims, SyncLedger
    from chalicelib.sync.writer import BrazeWriter

CONSUMER_BUDGET_SECONDS = 25.0
LAMBDA_SAFETY_MARGIN_SECONDS = 2.0
# After the deadline, the writes that only tidy up (ledger commits, claim completions and releases,
# lease releases) may still start for this long: half of Lambda's margin, so each has time to end.
CLEANUP_SECONDS = LAMBDA_SAFETY_MARGIN_SECONDS / 2
IN_FLIGHT_DELAY_SECONDS = 30


@dataclass
class _Batch:
    remaining_ms: int | None
    cleanup: Deadline
    leases: Leases
    reads: Reads
    writer: Writer
    book: RecordBook
    unstaged: Unstaged
    claimed: list[plan.Claimed] = field(default_factory=list)
    staged: list[plan.Staged] = field(default_factory=list)
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
                with processor(records=event.get("Records", []), handler=lambda record: self._claim(record, batch)):
                    processor.process()
                failed = {str(item["itemIdentifier"]) for item in processor.response()["batchItemFailures"]}
                for claimed in batch.claimed:
                    self._settle_or_fail(claimed, batch)
                batch.writer.write(plan.chunks(plan.groups(batch.staged)))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # every read is bounded by the reads' deadline
                batch.leases.release(batch.cleanup)
        failed |= batch.failed | batch.book.unacknowledged
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}

    def _batch(self, context: Any, pool: Executor) -> _Batch:
        clock, sleep = self._clock, self._runtime.sleep
        deadline = Deadline.within(self._budget, context, LAMBDA_SAFETY_MARGIN_SECONDS, clock, sleep)
        reading = Deadline(deadline.remaining() - self._flush_reserve, clock=clock, sleep=sleep)
        cleanup = Deadline(deadline.remaining() + CLEANUP_SECONDS, clock=clock, sleep=sleep)
        leases = Leases(self._ledger, self._runtime.new_id())
        reads = Reads(self._rokt, leases, pool, deadline=deadline, reading=reading, clock=clock)
        book = RecordBook(self._claims, self._fates, pool=pool, deadline=deadline, cleanup=cleanup, clock=clock)
        writer = Writer(self._braze, self._ledger, book, leases=leases, pool=pool, deadline=deadline, cleanup=cleanup)
        unstaged = Unstaged(self._claims, self._fates, clock, cleanup)
        return _Batch(lambda_remaining_ms(context), cleanup, leases, reads, writer, book, unstaged)

    def _claim(self, record: SQSRecord, batch: _Batch) -> None:
        """The claim pass: read the webhook, claim its eventId, start reading its subscription."""
        started = self._clock()
        with batch.unstaged.around(record, started) as fate:
            fate.webhook = webhook = parse(json.loads(record.body)["webhook"])
            if not webhook.used or webhook.subscription_id is None or webhook.account is None:
                raise DeadLetter(f"{webhook.event_type} webhooks are not synced")
            if batch.reads.closed():
                raise NotAttempted("no time left to read the subscription")
            claim = self._claims.claim(webhook.event_id, batch.remaining_ms)
            if claim == "done":
                fate.outcome = Outcome.DUPLICATE
                return
            if claim == "busy":
                raise InFlight("another consumer is writing this webhook", retry_after=IN_FLIGHT_DELAY_SECONDS)
            fate.claim = claim
            batch.reads.start(webhook.subscription_id)
            batch.claimed.append(
                plan.Claimed(record, webhook, webhook.account, webhook.subscription_id, claim, started)
            )
            fate.outcome = Outcome.STAGED
        if fate.failed:
            batch.failed.add(record.message_id)

    def _settle(self, claimed: plan.Claimed, batch: _Batch) -> None:
        """The read pass: wait for the record's subscription read, then stage its writes."""
        record, webhook = claimed.record, claimed.webhook
        with batch.unstaged.around(record, claimed.started) as fate:
            fate.webhook, fate.claim = webhook, claimed.claim
            read = batch.reads.result(claimed.subscription_id)
            if read.state is None and read.previous is None:
                self._unknown_subscription(record, claimed.subscription_id)
            staged = plan.stage(claimed, read.state, read.previous, self._fallback, self._wall_clock())
            if staged is None:
                count("SyncSkippedNoIdentity")
                logger.info("subscription has no subscriber id or usable e-mail", extra={"eventId": webhook.event_id})
                self._claims.complete(webhook.event_id, {"skipped": "no_identity"})
                fate.outcome = Outcome.SKIPPED
                return
            if staged.sent_before and webhook.event_type in mapping.CUSTOM_EVENTS:
                count("SyncCustomEventsAtMostOnce")
                logger.warning(
                    "custom event not sent again: Braze may already have it (at most once)",
                    extra={"eventId": webhook.event_id, "eventType": webhook.event_type},
                )
            batch.staged.append(staged)
            fate.outcome = Outcome.STAGED
        if fate.failed:
            batch.failed.add(record.message_id)

    def _settle_or_fail(self, claimed: plan.Claimed, batch: _Batch) -> None:
        """As BatchProcessor does in the claim pass: a bug in one record fails that record only."""
        try:
            self._settle(claimed, batch)
        except Exception as exc:  # reported; the record comes back
            logger.exception("sync record failed unexpectedly", extra={"messageId": claimed.record.message_id})
            if claimed.claim == "new":
                self._claims.release(claimed.webhook.event_id, exc)
            batch.failed.add(claimed.record.message_id)

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
