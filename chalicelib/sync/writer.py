"""A batch's flush: for each chunk of the plan, the ledger written ahead of Braze and the claims of
records with a custom event marked "sent" (one parallel round), one /users/track call, then the
ledger committed (giving the lease back) and the claims completed (another round) — and what becomes
of each record when a step fails.

Each record's fate follows its call: written → claim completed and acknowledged; 429/5xx → claim
released, retried later through the queue's visibility; sent but unanswered (or the ledger not
committed) → the claim still says its custom event was sent and the record comes back to rewrite the
state only; refused for good → dead-lettered with the reason, never silently dropped.

Lambda may end the invocation at any moment after the claims were marked: nothing it sent is sent
again, because a claim says "sent" before Braze can have the event. A custom event whose claim says
"sent" but which Braze never applied (its answer lost, or the invocation ended before the call) is
lost: the redelivered record says so in one log line ("at most once"). The pre-call round stops
``BRAZE_CALL_RESERVE_SECONDS`` before the deadline, so the call has time; the commits, completions
and releases after it run until the batch's ``cleanup`` deadline, a little inside Lambda's own end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import BrazeKeyRefused, BrazeObjectRefused, BrazeOutcomeUnknown, BrazeRejected, BridgeError
from chalicelib.fates import Fate
from chalicelib.observability import count, logger, redact_emails
from chalicelib.sync import plan
from chalicelib.sync.outcomes import NotAttempted, Outcome, log_outcome
from chalicelib.sync.records import EVENT_SENT

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor

    from chalicelib.braze.client import TrackResult
    from chalicelib.clock import Deadline
    from chalicelib.fates import RecordFates
    from chalicelib.sync.reads import Leases
    from chalicelib.sync.records import EventClaims, SyncLedger

# The pre-call round (write-ahead, "sent" marks) stops this long before the deadline: what a
# /users/track call at Braze's usual pace needs, so the marks it made are worth the call.
BRAZE_CALL_RESERVE_SECONDS = 2.0
HTTP_BAD_REQUEST = 400
MAX_REASON_CHARS = 500


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
        cleanup: Deadline,
        clock: Callable[[], float],
    ) -> None:
        self._braze = braze
        self._claims = claims
        self._ledger = ledger
        self._fates = fates
        self._leases = leases
        self._pool = pool
        self._deadline = deadline
        self._cleanup = cleanup
        self._clock = clock
        self.failed: set[str] = set()

    def flush(self, staged: list[plan.Staged]) -> None:
        for chunk in plan.chunks(plan.groups(staged)):
            self._write(chunk)

    def _write(self, chunk: list[plan.Group]) -> None:
        """The pre-call round, then the /users/track call(s) and the post-call round."""
        prepared = self._round(chunk, self._before_call)
        for group, error in prepared:
            if error is not None:  # Braze is not told what the ledger could not record first
                self._write_failed(group.records, error)
        ready = [group for group, error in prepared if error is None]
        if ready:
            self._send(ready)

    def _send(self, chunk: list[plan.Group]) -> None:
        """One /users/track call for ``chunk``. A 400 for the whole call is bisected (by subscription) until
        the subscription that makes it is alone: only its records are dead-lettered, the rest are written."""
        records = [s for group in chunk for s in group.records]
        if self._deadline.remaining() < MIN_ATTEMPT_SECONDS:
            self._write_failed(records, NotAttempted("no time left to write to Braze"))
            return
        owners = [group for group in chunk for _ in group.attributes]
        with_events = [s for group in chunk for s in group.records if s.event is not None]
        try:
            result = self._braze.track(
                [obj for group in chunk for obj in group.attributes],
                [s.event for s in with_events if s.event is not None],
                self._deadline,
            )
        except BrazeRejected as exc:
            if exc.status != HTTP_BAD_REQUEST or len(chunk) == 1:
                self._write_failed(records, exc)
                return
            count("BrazeCallsSplit")
            logger.warning("Braze refused a call with HTTP 400; split", extra={"subscriptions": len(chunk)})
            self._send(chunk[: len(chunk) // 2])
            self._send(chunk[len(chunk) // 2 :])
            return
        except BridgeError as exc:
            if isinstance(exc, BrazeOutcomeUnknown):  # Braze may still apply it: keep the lease until it expires
                self._leases.keep({group.subscription_id for group in chunk})
            self._write_failed(records, exc)
            return
        count("BrazeCalls")
        self._settle(chunk, result, _refusals(result, owners, with_events))

    def _settle(self, chunk: list[plan.Group], result: TrackResult, refused: _Refused) -> None:
        """After Braze's 2xx: a subscription whose attributes it refused is not committed (the ledger keeps
        its superset) and its records are dead-lettered; the rest are committed, each record synced — or
        dead-lettered, if Braze refused its custom event."""
        written = [group for group in chunk if group.subscription_id not in refused.groups]
        for group in chunk:
            why = refused.groups.get(group.subscription_id)
            if why is not None:
                self._refused([(s, why, s.event is not None and id(s) not in refused.events) for s in group.records])
        for group, error in self._round(written, functools.partial(self._after_call, refused.events)):
            if error is not None:
                logger.warning("sync ledger not committed; the records come back and recompute")
                self._write_failed(group.records, error, sent=True)
                continue
            self._leases.given_back(group.subscription_id)
            for staged in group.records:
                if id(staged) in refused.events:
                    self._refused([(staged, refused.events[id(staged)], False)])
                else:
                    self._finish(staged, Outcome.SYNCED, status=result.status)

    def _before_call(self, group: plan.Group) -> None:
        """The ledger lists the values before Braze is told them, and each claim says its custom event
        may be in Braze before it can be (a Lambda that ends the invocation later sends nothing twice)."""
        if group.ahead is not None:
            self._in_time(self._deadline, BRAZE_CALL_RESERVE_SECONDS)
            self._ledger.put(group.subscription_id, group.ahead, self._leases.owner)
        for staged in group.records:
            if staged.event is not None:
                self._in_time(self._deadline, BRAZE_CALL_RESERVE_SECONDS)
                self._claims.complete(staged.webhook.event_id, EVENT_SENT)

    def _after_call(self, refused: dict[int, str], group: plan.Group) -> None:
        """The ledger says what Braze now holds (giving the lease back), then each claim is completed — but
        a claim whose custom event Braze refused, which ``_refused`` releases instead."""
        self._in_time(self._cleanup, MIN_ATTEMPT_SECONDS)
        self._ledger.commit(group.subscription_id, group.ledger, self._leases.owner)
        for staged in group.records:
            if id(staged) not in refused and not self._complete(staged.webhook.event_id, {"status": "synced"}):
                logger.error("written to Braze, claim not completed", extra={"eventId": staged.webhook.event_id})

    @staticmethod
    def _in_time(deadline: Deadline, reserve: float) -> None:
        if deadline.remaining() < reserve:
            raise NotAttempted("no time left to write to Braze")

    def _round(
        self, groups: list[plan.Group], step: Callable[[plan.Group], None]
    ) -> list[tuple[plan.Group, BridgeError | NotAttempted | None]]:
        """Run ``step`` for each subscription in the batch's pool (DynamoDB calls that would otherwise add
        up across 75 subscriptions); each group with its error, if any."""

        def attempt(group: plan.Group) -> BridgeError | NotAttempted | None:
            try:
                step(group)
            except (BridgeError, NotAttempted) as exc:
                return exc
            return None

        return list(zip(groups, self._pool.map(attempt, groups), strict=True))

    def _write_failed(self, chunk: list[plan.Staged], exc: BridgeError | NotAttempted, *, sent: bool = False) -> None:
        """``sent``: Braze took (or may have taken) the call, so each claim that says its custom event was
        sent stays so, and the record comes back to rewrite the state only."""
        sent = sent or isinstance(exc, BrazeOutcomeUnknown)
        retryable = sent or (isinstance(exc, BridgeError) and exc.retryable)
        retry_after = exc.retry_after if isinstance(exc, BridgeError) else None
        if isinstance(exc, BrazeKeyRefused):
            count("BrazeKeyRefused")  # an operator must fix the key: alarm on it
            logger.error(str(exc), extra={"records": len(chunk)})
        elif isinstance(exc, NotAttempted):
            logger.info("no time left to write to Braze; the records go back", extra={"records": len(chunk)})
        else:
            extra = {"error": str(exc), "records": len(chunk), "retryable": retryable}
            logger.warning("Braze write failed", extra=extra)
        released = [s for s in chunk if not (sent and s.event is not None) and not s.sent_before]
        self._release(released, exc)
        for staged in chunk:
            if isinstance(exc, NotAttempted):
                fate = self._fates.give_back(staged.record, str(exc))
            elif retryable:
                fate = self._fates.retry(staged.record, str(exc), retry_after)
            else:
                fate = self._fates.dead_letter(staged.record, str(exc))
            if fate is Fate.DEAD_LETTERED:
                self._finish(staged, Outcome.DEAD_LETTERED, error=type(exc).__name__)
            else:
                self.failed.add(staged.record.message_id)
                outcome = Outcome.NOT_ATTEMPTED if fate is Fate.GIVEN_BACK else Outcome.RETRYABLE_FAILURE
                self._finish(staged, outcome, error=type(exc).__name__)

    def _release(self, chunk: list[plan.Staged], reason: BridgeError | NotAttempted) -> None:
        """Release these records' claims (in the pool, while the cleanup deadline allows: an in-progress
        claim also expires by itself; a "sent" mark left behind makes its event at most once)."""

        def release(staged: plan.Staged) -> None:
            if self._cleanup.remaining() >= MIN_ATTEMPT_SECONDS:
                self._claims.release(staged.webhook.event_id, reason)

        list(self._pool.map(release, chunk))

    def _complete(self, event_id: str, result: dict[str, Any]) -> bool:
        """Complete a claim whose custom event Braze has: tried twice, because a claim left in progress
        expires and a redelivery would then write the state again (its "sent" mark keeps the event once)."""
        for _ in range(2):
            if self._cleanup.remaining() < MIN_ATTEMPT_SECONDS:
                return False
            try:
                self._claims.complete(event_id, result)
            except BridgeError:
                continue
            return True
        return False

    def _finish(self, staged: plan.Staged, outcome: Outcome, **extra: Any) -> None:
        log_outcome(staged.record, staged.webhook, outcome, self._clock() - staged.started, **extra)

    def _refused(self, refusals: list[tuple[plan.Staged, str, bool]]) -> None:
        """Records Braze refused an object of, each dead-lettered with Braze's words; ``in_braze``: its custom
        event was applied, so its claim stays "sent" (a replay writes the state only), else it is released
        (a replay writes the event too). If the DLQ does not take one, it is retried."""
        for staged, why, in_braze in refusals:
            count("BrazeObjectsRefused")
            if not in_braze and not staged.sent_before and self._cleanup.remaining() >= MIN_ATTEMPT_SECONDS:
                self._claims.release(staged.webhook.event_id, BrazeObjectRefused(why))
            if self._fates.dead_letter(staged.record, why) is Fate.DEAD_LETTERED:
                self._finish(staged, Outcome.DEAD_LETTERED, error=BrazeObjectRefused.code)
            else:
                self.failed.add(staged.record.message_id)
                self._finish(staged, Outcome.RETRYABLE_FAILURE, error=BrazeObjectRefused.code)


@dataclass
class _Refused:
    """What Braze refused in one call: by subscription (its attribute objects) and by record (its event)."""

    groups: dict[str, str] = field(default_factory=dict)
    events: dict[int, str] = field(default_factory=dict)  # id(staged) → why


def _refusals(result: TrackResult, owners: list[plan.Group], with_events: list[plan.Staged]) -> _Refused:
    """Braze's per-object ``errors`` as reasons (Braze's words, e-mail addresses masked), each named by
    subscription or webhook in the log, never by e-mail address."""
    refused = _Refused()
    for error in result.errors:
        kind, index = error.get("input_array"), error.get("index")
        words = str(redact_emails(str(error.get("type"))))[:MAX_REASON_CHARS]
        count("BrazeObjectErrors")
        if kind == "attributes" and isinstance(index, int) and 0 <= index < len(owners):
            group = owners[index]
            why = f"Braze refused the attributes of subscription {group.subscription_id}: {words}"
            refused.groups.setdefault(group.subscription_id, why)
        elif kind == "events" and isinstance(index, int) and 0 <= index < len(with_events):
            staged = with_events[index]
            why = f"Braze refused the custom event of webhook {staged.webhook.event_id}: {words}"
            refused.events.setdefault(id(staged), why)
        logger.warning("Braze did not apply an object", extra={"type": words, "inputArray": kind, "index": index})
    return refused
