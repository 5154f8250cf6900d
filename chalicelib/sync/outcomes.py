"""What became of one sync queue record, as its one log line says it (``Outcome``), and the fate of a
record that was never staged for the flush: the claim or read pass raised for it."""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import BridgeError, InFlight, ValidationFailed
from chalicelib.fates import Fate
from chalicelib.observability import record_outcome
from chalicelib.sync.envelope import problems

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.clock import Deadline
    from chalicelib.fates import RecordFates
    from chalicelib.sync.envelope import RoktWebhook
    from chalicelib.sync.records import Claim, EventClaims


class Outcome(enum.Enum):
    """A record's outcome (the ``outcome`` of its log line and the metric it counts)."""

    STAGED = "staged"  # its writes are planned: the flush decides the rest (no line yet)
    SYNCED = "synced"  # written to Braze, its claim completed
    DUPLICATE = "duplicate"  # written before (its claim is complete)
    SKIPPED = "skipped"  # nothing to write to: no subscriber id or usable e-mail
    NOT_ATTEMPTED = "not_attempted"  # the batch's time ran out first: given back at once
    RETRYABLE_FAILURE = "retryable_failure"  # retried after a backoff
    DEAD_LETTERED = "dead_lettered"  # in the DLQ with its reason
    ERROR = "error"  # a bug: reported failed, the record comes back


class DeadLetter(Exception):
    """This record can never be written as it is: park it in the DLQ with the reason."""


class NotAttempted(Exception):
    """The invocation's time ran out before this record was read or written: it goes back at once, not
    a failure."""


def summary(record: SQSRecord, webhook: RoktWebhook | None = None) -> dict[str, Any]:
    """The fields every sync log line carries: route, message, and the Rokt webhook once it is read."""
    fields: dict[str, Any] = {"route": "sync_queue", "messageId": record.message_id}
    if webhook is not None:
        fields.update(eventId=webhook.event_id, eventType=webhook.event_type)
    return fields


def log_outcome(
    record: SQSRecord, webhook: RoktWebhook | None, outcome: Outcome, latency_seconds: float, **extra: Any
) -> None:
    """The record's one line and metrics: what became of it, and how long it took."""
    fields = {**summary(record, webhook), "outcome": outcome.value, **extra}
    fields["latencyMs"] = round(latency_seconds * 1000, 1)
    record_outcome("rokt webhook synced", fields)


@dataclass
class Staging:
    """What staging decided for one record (see ``Unstaged.around``)."""

    webhook: RoktWebhook | None = None
    claim: Claim | None = None
    outcome: Outcome = Outcome.ERROR
    error: str | None = None
    failed: Exception | None = None


class Unstaged:
    """The fates of one batch's records whose staging raised: dead-lettered with the reason, retried
    later, or (NotAttempted) given back at once — each claim they took released while ``cleanup`` has
    time (else it expires), each logged once."""

    def __init__(self, claims: EventClaims, fates: RecordFates, clock: Callable[[], float], cleanup: Deadline) -> None:
        self._claims = claims
        self._fates = fates
        self._clock = clock
        self._cleanup = cleanup

    @contextlib.contextmanager
    def around(self, record: SQSRecord, started: float) -> Iterator[Staging]:
        """Stage ``record`` in the block; what it raises decides the record's fate (``failed`` set when the
        record must be reported failed); logged once unless it was staged."""
        fate = Staging()
        try:
            yield fate
        except NotAttempted as exc:
            fate.outcome = Outcome.NOT_ATTEMPTED
            self._release(fate)
            if self._fates.give_back(record, str(exc)) is Fate.DEAD_LETTERED:
                fate.outcome, fate.error = Outcome.DEAD_LETTERED, type(exc).__name__
            else:
                fate.failed = exc
        except DeadLetter as exc:
            fate.outcome, fate.error = Outcome.DEAD_LETTERED, type(exc).__name__
            self._dead_letter(record, str(exc), fate, exc)
        except ValidationFailed as exc:  # accepted from Rokt, but without what the sync needs
            fate.outcome, fate.error = Outcome.DEAD_LETTERED, exc.code
            self._dead_letter(record, f"unusable webhook: {problems(exc)}", fate, exc)
        except (ValueError, KeyError, TypeError) as exc:  # the message itself is unreadable
            fate.outcome, fate.error = Outcome.DEAD_LETTERED, type(exc).__name__
            self._dead_letter(record, f"unreadable message: {exc}", fate, exc)
        except BridgeError as exc:
            fate.outcome, fate.error = Outcome.RETRYABLE_FAILURE, exc.code
            if not isinstance(exc, InFlight):
                self._release(fate, exc)
            if self._fates.retry(record, exc.message, exc.retry_after) is Fate.DEAD_LETTERED:
                fate.outcome = Outcome.DEAD_LETTERED
            else:
                fate.failed = exc
        finally:
            if fate.outcome is not Outcome.STAGED:
                extra = {"error": fate.error} if fate.error else {}
                log_outcome(record, fate.webhook, fate.outcome, self._clock() - started, **extra)

    def _dead_letter(self, record: SQSRecord, reason: str, fate: Staging, exc: Exception) -> None:
        """Dead-letter a record that can never be written (its claim released); if the DLQ does not take
        it, it is retried instead."""
        self._release(fate, exc)
        if self._fates.dead_letter(record, reason) is Fate.RETRIED:
            fate.outcome = Outcome.RETRYABLE_FAILURE
            fate.failed = exc

    def _release(self, fate: Staging, reason: Exception | None = None) -> None:
        """Release a claim this record took (a ``sent`` claim stays: it remembers the event); with no time
        left, an in-progress claim expires by itself when the invocation would end."""
        if fate.webhook is not None and fate.claim == "new" and self._cleanup.remaining() >= MIN_ATTEMPT_SECONDS:
            self._claims.release(fate.webhook.event_id, reason or NotAttempted())
