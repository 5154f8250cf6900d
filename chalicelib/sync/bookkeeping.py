"""What becomes of the sync consumer's records as their flush goes (the ``Bookkeeping`` of
``chalicelib.sync.writer``): each claim marked "sent" before Braze can have its custom event, completed
after the commit, released when the write failed; each record acknowledged, retried, given back or
dead-lettered with the reason, and its one log line.

Each record's fate follows its call: written → claim completed and acknowledged; 429/5xx → claim
released, retried later through the queue's visibility; sent but unanswered (or the ledger not
committed) → the claim still says its custom event was sent and the record comes back to rewrite the
state only; refused for good → dead-lettered with the reason, never silently dropped. An object Braze
refused is dead-lettered with Braze's words: a record whose custom event Braze applied keeps its
"sent" mark (a replay writes the state only), one whose event Braze refused has its claim released
(a replay sends it, once).

Lambda may end the invocation at any moment after the claims were marked: nothing it sent is sent
again, because a claim says "sent" before Braze can have the event. A custom event whose claim says
"sent" but which Braze never applied (its answer lost, or the invocation ended before the call) is
lost: the redelivered record says so in one log line ("at most once").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import BrazeKeyRefused, BrazeObjectRefused, BrazeOutcomeUnknown, BridgeError
from chalicelib.fates import Fate
from chalicelib.observability import count, logger
from chalicelib.sync.outcomes import NotAttempted, Outcome, log_outcome
from chalicelib.sync.records import EVENT_SENT
from chalicelib.sync.writer import BRAZE_CALL_RESERVE_SECONDS, in_time

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from chalicelib.clock import Deadline
    from chalicelib.fates import RecordFates
    from chalicelib.sync import plan
    from chalicelib.sync.records import EventClaims
    from chalicelib.sync.writer import Refused


class RecordBook:
    """The records of one batch's flush; ``unacknowledged`` lists the message ids to report failed."""

    def __init__(
        self,
        claims: EventClaims,
        fates: RecordFates,
        *,
        pool: Executor,
        deadline: Deadline,
        cleanup: Deadline,
        clock: Callable[[], float],
    ) -> None:
        self._claims = claims
        self._fates = fates
        self._pool = pool
        self._deadline = deadline
        self._cleanup = cleanup
        self._clock = clock
        self.unacknowledged: set[str] = set()

    def before_call(self, group: plan.Group) -> None:
        """Each claim says its custom event may be in Braze before it can be (a Lambda that ends the
        invocation later sends nothing twice)."""
        for staged in group.records:
            if staged.event is not None:
                in_time(self._deadline, BRAZE_CALL_RESERVE_SECONDS)
                self._claims.complete(staged.webhook.event_id, EVENT_SENT)

    def after_commit(self, group: plan.Group, refused: Refused) -> None:
        """Each claim completed — but one whose custom event Braze refused, released in ``written``."""
        for staged in group.records:
            if id(staged) not in refused.events and not self._complete(staged.webhook.event_id, {"status": "synced"}):
                logger.error("written to Braze, claim not completed", extra={"eventId": staged.webhook.event_id})

    def written(self, group: plan.Group, status: int, refused: Refused) -> None:
        for staged in group.records:
            why = refused.events.get(id(staged))
            if why is not None:
                self._refused(staged, why, in_braze=False)
            else:
                self._finish(staged, Outcome.SYNCED, status=status)

    def refused(self, group: plan.Group, why: str, refused: Refused) -> None:
        for staged in group.records:
            self._refused(staged, why, in_braze=staged.event is not None and id(staged) not in refused.events)

    def failed(self, groups: list[plan.Group], error: BridgeError | NotAttempted, *, sent: bool) -> None:
        """``sent``: Braze took (or may have taken) the call, so each claim that says its custom event was
        sent stays so, and the record comes back to rewrite the state only."""
        chunk = [s for group in groups for s in group.records]
        sent = sent or isinstance(error, BrazeOutcomeUnknown)
        retryable = sent or (isinstance(error, BridgeError) and error.retryable)
        retry_after = error.retry_after if isinstance(error, BridgeError) else None
        if isinstance(error, BrazeKeyRefused):
            count("BrazeKeyRefused")  # an operator must fix the key: alarm on it
            logger.error(str(error), extra={"records": len(chunk)})
        elif isinstance(error, NotAttempted):
            logger.info("no time left to write to Braze; the records go back", extra={"records": len(chunk)})
        else:
            extra = {"error": str(error), "records": len(chunk), "retryable": retryable}
            logger.warning("Braze write failed", extra=extra)
        released = [s for s in chunk if not (sent and s.event is not None) and not s.sent_before]
        self._release(released, error)
        for staged in chunk:
            if isinstance(error, NotAttempted):
                fate = self._fates.give_back(staged.record, str(error))
            elif retryable:
                fate = self._fates.retry(staged.record, str(error), retry_after)
            else:
                fate = self._fates.dead_letter(staged.record, str(error))
            if fate is Fate.DEAD_LETTERED:
                self._finish(staged, Outcome.DEAD_LETTERED, error=type(error).__name__)
            else:
                self.unacknowledged.add(staged.record.message_id)
                outcome = Outcome.NOT_ATTEMPTED if fate is Fate.GIVEN_BACK else Outcome.RETRYABLE_FAILURE
                self._finish(staged, outcome, error=type(error).__name__)

    def _refused(self, staged: plan.Staged, why: str, *, in_braze: bool) -> None:
        """Dead-letter a record Braze refused an object of, with Braze's words; ``in_braze``: its custom event
        was applied, so its claim stays "sent" (a replay writes the state only), else it is released (a
        replay writes the event too). If the DLQ does not take it, it is retried."""
        count("BrazeObjectsRefused")
        if not in_braze and not staged.sent_before and self._cleanup.remaining() >= MIN_ATTEMPT_SECONDS:
            self._claims.release(staged.webhook.event_id, BrazeObjectRefused(why))
        if self._fates.dead_letter(staged.record, why) is Fate.DEAD_LETTERED:
            self._finish(staged, Outcome.DEAD_LETTERED, error=BrazeObjectRefused.code)
        else:
            self.unacknowledged.add(staged.record.message_id)
            self._finish(staged, Outcome.RETRYABLE_FAILURE, error=BrazeObjectRefused.code)

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
