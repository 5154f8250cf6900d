"""A flush: for each chunk of the plan, the ledger written ahead of Braze (one parallel round, with
the bookkeeping's own pre-call step), one /users/track call, then the ledger committed (giving the
lease back, another round) — and which subscriptions were written, refused or failed, told to the
flush's ``Bookkeeping`` (the sync consumer's records: ``chalicelib.sync.bookkeeping``; the
reconciler's healed subscriptions: ``chalicelib.sync.reconcile``).

A 400 for a whole call is bisected (by subscription) until the subscription that makes it is alone;
an object Braze refuses inside an accepted call (``errors``) is that subscription's or that record's
refusal, never a success: a subscription whose attributes Braze refused is not committed (the ledger
keeps listing what Braze may hold). The pre-call round stops ``BRAZE_CALL_RESERVE_SECONDS`` before
the deadline, so the call has time; the commits after it run until the ``cleanup`` deadline, a little
inside Lambda's own end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import BrazeOutcomeUnknown, BrazeRejected, BridgeError
from chalicelib.observability import count, logger, redact_emails
from chalicelib.sync.outcomes import NotAttempted

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor

    from chalicelib.braze.client import TrackResult
    from chalicelib.clock import Deadline
    from chalicelib.sync import plan
    from chalicelib.sync.reads import Leases
    from chalicelib.sync.records import SyncLedger

# The pre-call round (write-ahead, "sent" marks) stops this long before the deadline: what a
# /users/track call at Braze's usual pace needs, so the marks it made are worth the call.
BRAZE_CALL_RESERVE_SECONDS = 2.0
HTTP_BAD_REQUEST = 400
MAX_REASON_CHARS = 500


class BrazeWriter(Protocol):
    def track(
        self, attributes: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], deadline: Deadline
    ) -> TrackResult: ...


@dataclass
class Refused:
    """What Braze refused in one call: by subscription (its attribute objects) and by record (its custom
    event, keyed by ``id(staged)``), each with the reason in Braze's words."""

    groups: dict[str, str] = field(default_factory=dict)
    events: dict[int, str] = field(default_factory=dict)


class Bookkeeping(Protocol):
    """What the flush tells whoever owns the writes (records on a queue, or a reconciliation)."""

    def before_call(self, group: plan.Group) -> None:
        """After the write-ahead, before Braze is called; raising keeps Braze from being told."""

    def after_commit(self, group: plan.Group, refused: Refused) -> None:
        """The ledger is committed: Braze holds the group's values."""

    def written(self, group: plan.Group, status: int, refused: Refused) -> None:
        """The group is written (its lease given back); ``refused`` may name records' custom events."""

    def refused(self, group: plan.Group, why: str, refused: Refused) -> None:
        """Braze refused the group's attribute objects (``why``): not committed."""

    def failed(self, groups: list[plan.Group], error: BridgeError | NotAttempted, *, sent: bool) -> None:
        """Not written; ``sent``: Braze took, or may have taken, the call."""


class Writer:
    """One flush's writes, under the leases the reads took."""

    def __init__(
        self,
        braze: BrazeWriter,
        ledger: SyncLedger,
        book: Bookkeeping,
        *,
        leases: Leases,
        pool: Executor,
        deadline: Deadline,
        cleanup: Deadline,
    ) -> None:
        self._braze = braze
        self._ledger = ledger
        self._book = book
        self._leases = leases
        self._pool = pool
        self._deadline = deadline
        self._cleanup = cleanup

    def write(self, chunks: list[list[plan.Group]]) -> None:
        for chunk in chunks:
            self._write(chunk)

    def _write(self, chunk: list[plan.Group]) -> None:
        """The pre-call round, then the /users/track call(s) and the post-call round."""
        prepared = self._round(chunk, self._before_call)
        for group, error in prepared:
            if error is not None:  # Braze is not told what the ledger could not record first
                self._book.failed([group], error, sent=False)
        ready = [group for group, error in prepared if error is None]
        if ready:
            self._send(ready)

    def _send(self, chunk: list[plan.Group]) -> None:
        """One /users/track call for ``chunk``. A 400 for the whole call is bisected (by subscription) until
        the subscription that makes it is alone: only it fails, the rest are written."""
        if self._deadline.remaining() < MIN_ATTEMPT_SECONDS:
            self._book.failed(chunk, NotAttempted("no time left to write to Braze"), sent=False)
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
                self._book.failed(chunk, exc, sent=False)
                return
            count("BrazeCallsSplit")
            logger.warning("Braze refused a call with HTTP 400; split", extra={"subscriptions": len(chunk)})
            self._send(chunk[: len(chunk) // 2])
            self._send(chunk[len(chunk) // 2 :])
            return
        except BridgeError as exc:
            sent = isinstance(exc, BrazeOutcomeUnknown)
            if sent:  # Braze may still apply it: keep the lease until it expires
                self._leases.keep({group.subscription_id for group in chunk})
            self._book.failed(chunk, exc, sent=sent)
            return
        count("BrazeCalls")
        self._settle(chunk, result, _refusals(result, owners, with_events))

    def _settle(self, chunk: list[plan.Group], result: TrackResult, refused: Refused) -> None:
        """After Braze's 2xx: a subscription whose attributes it refused is not committed (the ledger keeps
        its superset); the rest are committed."""
        written = [group for group in chunk if group.subscription_id not in refused.groups]
        for group in chunk:
            why = refused.groups.get(group.subscription_id)
            if why is not None:
                self._book.refused(group, why, refused)
        for group, error in self._round(written, functools.partial(self._after_call, refused)):
            if error is not None:
                logger.warning("sync ledger not committed; the writes come back and recompute")
                self._book.failed([group], error, sent=True)
                continue
            self._leases.given_back(group.subscription_id)
            self._book.written(group, result.status, refused)

    def _before_call(self, group: plan.Group) -> None:
        """The ledger lists the values before Braze is told them; then the bookkeeping's own step."""
        if group.ahead is not None:
            in_time(self._deadline, BRAZE_CALL_RESERVE_SECONDS)
            self._ledger.put(group.subscription_id, group.ahead, self._leases.owner)
        self._book.before_call(group)

    def _after_call(self, refused: Refused, group: plan.Group) -> None:
        """The ledger says what Braze now holds (giving the lease back); then the bookkeeping's step."""
        in_time(self._cleanup, MIN_ATTEMPT_SECONDS)
        self._ledger.commit(group.subscription_id, group.ledger, self._leases.owner)
        self._book.after_commit(group, refused)

    def _round(
        self, groups: list[plan.Group], step: Callable[[plan.Group], None]
    ) -> list[tuple[plan.Group, BridgeError | NotAttempted | None]]:
        """Run ``step`` for each subscription in the pool (DynamoDB calls that would otherwise add up
        across 75 subscriptions); each group with its error, if any."""

        def attempt(group: plan.Group) -> BridgeError | NotAttempted | None:
            try:
                step(group)
            except (BridgeError, NotAttempted) as exc:
                return exc
            return None

        return list(zip(groups, self._pool.map(attempt, groups), strict=True))


def in_time(deadline: Deadline, reserve: float) -> None:
    """NotAttempted unless ``deadline`` leaves ``reserve`` seconds."""
    if deadline.remaining() < reserve:
        raise NotAttempted("no time left to write to Braze")


def _refusals(result: TrackResult, owners: list[plan.Group], with_events: list[plan.Staged]) -> Refused:
    """Braze's per-object ``errors`` as reasons (Braze's words, e-mail addresses masked), each named by
    subscription or webhook, never by e-mail address."""
    refused = Refused()
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
