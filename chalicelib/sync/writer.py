"""A batch's flush: for each chunk of the plan, the ledger written ahead of Braze, one /users/track
call, the ledger committed (giving the lease back), each record's claim completed — and what becomes
of each record when a step fails.

Each record's fate follows its call: written → claim completed and acknowledged; 429/5xx → claim
released, retried later through the queue's visibility; sent but unanswered (or the ledger not
committed) → the claim remembers the custom event was sent and the record comes back to rewrite the
state only; refused for good → dead-lettered with the reason, never silently dropped.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.braze.client import BrazeError, BrazeOutcomeUnknown, BrazeRateLimited
from chalicelib.errors import BridgeError
from chalicelib.fates import Fate
from chalicelib.observability import count, logger
from chalicelib.sync import plan
from chalicelib.sync.outcomes import Outcome, log_outcome
from chalicelib.sync.records import EVENT_SENT

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor

    from chalicelib.braze.client import TrackResult
    from chalicelib.clock import Deadline
    from chalicelib.fates import RecordFates
    from chalicelib.sync.reads import Leases
    from chalicelib.sync.records import EventClaims, SyncLedger


class BrazeWriter(Protocol):
    def track(
        self, attributes: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], deadline: Deadline
    ) -> TrackResult: ...


class Writer:
    """One batch's writes, under the leases its reads took; ``failed`` lists the records to retry."""

    def __init__(
        self,
        braze: BrazeWriter,
        claims: EventClaims,
        ledger: SyncLedger,
        fates: RecordFates,
        *,
        leases: Leases,
        pool: Executor,
        deadline: Deadline,
        clock: Callable[[], float],
    ) -> None:
        self._braze = braze
        self._claims = claims
        self._ledger = ledger
        self._fates = fates
        self._leases = leases
        self._pool = pool
        self._deadline = deadline
        self._clock = clock
        self.failed: set[str] = set()

    def flush(self, staged: list[plan.Staged]) -> None:
        for chunk in plan.chunks(plan.groups(staged)):
            self._write(chunk)

    def _write(self, chunk: list[plan.Group]) -> None:
        """Ledger written ahead (per subscription, in parallel), one /users/track call, ledger committed."""
        owner = self._leases.owner
        ahead = self._ledger_writes(
            [
                (g, functools.partial(self._ledger.put, g.subscription_id, g.ahead, owner))
                for g in chunk
                if g.ahead is not None
            ],
        )
        for group, error in ahead:
            if error is not None:  # Braze is not told what the ledger could not record first
                self._write_failed(group.records, error)
        chunk = [group for group in chunk if all(error is None for g, error in ahead if g is group)]
        if not chunk:
            return
        attributes = [obj for group in chunk for obj in group.attributes]
        owners = [group.records[0] for group in chunk for _ in group.attributes]
        with_events = [s for group in chunk for s in group.records if s.event is not None]
        events = [s.event for s in with_events if s.event is not None]
        records = [s for group in chunk for s in group.records]
        try:
            result = self._braze.track(attributes, events, self._deadline)
        except (BrazeError, BridgeError) as exc:
            if isinstance(exc, BrazeOutcomeUnknown):  # Braze may still apply it: keep the lease until it expires
                self._leases.keep({group.subscription_id for group in chunk})
            self._write_failed(records, exc)
            return
        count("BrazeCalls")
        self._log_object_errors(result, owners, with_events)
        commits = self._ledger_writes(
            [(g, functools.partial(self._ledger.commit, g.subscription_id, g.ledger, owner)) for g in chunk],
        )
        for group, error in commits:
            if error is not None:
                logger.warning("sync ledger not committed; the records come back and recompute")
                self._write_failed(group.records, error, sent=True)
                continue
            self._leases.given_back(group.subscription_id)
            for staged in group.records:
                self._finish(staged, Outcome.SYNCED, status=result.status)

    def _ledger_writes(
        self, writes: list[tuple[plan.Group, Callable[[], None]]]
    ) -> list[tuple[plan.Group, BridgeError | None]]:
        """Run one ledger write per subscription in the batch's pool (DynamoDB calls, a few ms each,
        that would otherwise add up across 75 subscriptions); each group with its error, if any."""

        def attempt(write: Callable[[], None]) -> BridgeError | None:
            try:
                write()
            except BridgeError as exc:
                return exc
            return None

        errors = self._pool.map(attempt, [write for _, write in writes])
        return [(group, error) for (group, _), error in zip(writes, errors, strict=True)]

    def _write_failed(self, chunk: list[plan.Staged], exc: Exception, *, sent: bool = False) -> None:
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
                self._finish(staged, Outcome.DEAD_LETTERED, error=type(exc).__name__)
            else:
                self.failed.add(staged.record.message_id)
                self._finish(staged, Outcome.RETRYABLE_FAILURE, error=type(exc).__name__)

    def _remember_sent(self, staged: plan.Staged) -> None:
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

    def _finish(self, staged: plan.Staged, outcome: Outcome, **extra: Any) -> None:
        if outcome is Outcome.SYNCED and not self._complete(staged.webhook.event_id, {"status": "synced"}):
            logger.error("written to Braze, claim not completed", extra={"eventId": staged.webhook.event_id})
        log_outcome(staged.record, staged.webhook, outcome, self._clock() - staged.started, **extra)

    def _log_object_errors(
        self, result: TrackResult, owners: list[plan.Staged], with_events: list[plan.Staged]
    ) -> None:
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
