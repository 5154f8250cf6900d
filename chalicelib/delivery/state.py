"""One calendar event's delivery state, as one explicit state machine in one DynamoDB item.

The item holds, for one event (accountCode + eventId; its key is a hash, so no e-mail address ends up
in a key):

- ``applied``: the last intent Rokt has — its fingerprint (route + content), when it reached the
  bridge, and Rokt's answer (replayed to duplicates);
- ``flight``: the intent being delivered right now, by whom, until when (a lease: it ends with the
  deliverer's Lambda invocation, plus a margin for clock skew);
- ``w_<intent id>``: each intent waiting in the delivery queue, when it reached the bridge and when
  its message was last seen by a consumer (an entry whose message is not seen for
  ``WAITING_STALE_SECONDS`` stops holding others back: its message is gone);
- ``version``: bumped by every change of ``applied`` or ``flight``; every such change is a write
  conditional on the version it was decided from, so concurrent copies, consumers and routes take
  turns: one delivers, the others see what it did.

:func:`decide` is the whole table of what an intent meets (docs/design.md prints it); the store only
reads and writes. Costs: a new event's first delivery is 2 writes; a duplicate 1 (its failed
conditional write returns the item); a changed intent 3.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.settings import APP_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb.client import DynamoDBClient

# A prefix of its own: no record written by an earlier scheme (".event", ".pending#") is read as one.
KEY_PREFIX = f"{APP_NAME}.event-state#"
WAITING = "w_"
UNKNOWN = "u_"  # + intent id: when Rokt first answered 404 for the intent (its 404 grace starts then)
MAYBE = "maybe:"  # a fingerprint no intent has: what Rokt holds is not known (see Applied.maybe)
EXPIRY_ATTRIBUTE = "expiration"  # the table's TTL attribute (Powertools' default schema)
# A waiting entry's message is seen at least every SQS backoff cap (15 min) while it is retried; one
# not seen for twice that (and 5 minutes) belongs to a message that is gone.
WAITING_STALE_SECONDS = 2 * 900.0 + 300.0
_CONDITION_FAILED = "ConditionalCheckFailedException"


class Step(enum.Enum):
    """What an intent does next, given the event's state (:func:`decide`)."""

    DELIVER = "deliver"  # send it to Rokt
    DUPLICATE = "duplicate"  # Rokt has it: answer as the first time
    LATER_DUPLICATE = "later_duplicate"  # a duplicate that reached the bridge later: move the arrival on
    SUPERSEDED = "superseded"  # a newer intent reached Rokt already: not sent
    IN_FLIGHT = "in_flight"  # another intent for the event is being delivered: retry shortly
    HOLD_BACK = "hold_back"  # (queued) an older intent for the event is still waiting: after it
    QUEUE_BEHIND = "queue_behind"  # (direct, with a queue) intents wait in the queue: go behind them


@dataclass(frozen=True)
class Intent:
    """One webhook's intent for an event: what it asks (``fingerprint``), when it reached the bridge,
    and — for one taken from the queue — its id among the event's waiting intents."""

    account_code: str
    event_id: str
    fingerprint: str
    received_at: float
    intent_id: str = ""
    action: str = ""  # create, update or delete


@dataclass(frozen=True)
class Applied:
    fingerprint: str
    received_at: float
    answer: dict[str, Any]
    action: str = ""

    @classmethod
    def maybe(cls, fingerprint: str, received_at: float, action: str = "") -> Applied:
        """Rokt may or may not have this intent (its answer was lost, or its delivery never finished):
        no copy of anything is a duplicate of it, and intents older than it are superseded."""
        return cls(MAYBE + fingerprint, received_at, {}, action)

    @property
    def is_maybe(self) -> bool:
        return self.fingerprint.startswith(MAYBE)


@dataclass(frozen=True)
class Flight:
    fingerprint: str
    received_at: float
    owner: str
    until: float
    action: str = ""


@dataclass(frozen=True)
class Waiting:
    intent_id: str
    received_at: float
    seen_at: float

    def live(self, now: float) -> bool:
        return now - self.seen_at < WAITING_STALE_SECONDS


@dataclass(frozen=True)
class EventState:
    version: int = 0  # 0: never delivered
    exists: bool = False
    applied: Applied | None = None
    flight: Flight | None = None
    waiting: tuple[Waiting, ...] = ()
    confirmed: bool = False  # Rokt confirmed the event exists (a create or update applied, no delete since)


def decide(state: EventState, intent: Intent, now: float, *, queued: bool, queue_behind: bool) -> Step:
    """The transition table. In order: one intent at a time per event (a live flight makes the others
    wait); through the queue, an intent goes after every older one still waiting (``queued``), and a
    direct webhook goes behind any (``queue_behind``); Rokt is not told twice what it has (a copy of
    the applied intent is a duplicate), nor an intent older than the one it has — or may have: a
    delivery whose outcome is unknown counts as applied for the order, never for duplicates."""
    if state.flight is not None and state.flight.until > now:
        return Step.IN_FLIGHT
    others = [w for w in state.waiting if w.intent_id != intent.intent_id and w.live(now)]
    if queued and any((w.received_at, w.intent_id) < (intent.received_at, intent.intent_id) for w in others):
        return Step.HOLD_BACK
    if queue_behind and others:
        return Step.QUEUE_BEHIND
    applied = state.applied
    if state.flight is not None:  # a flight that ended without finishing: its intent may be at Rokt
        flown = Applied.maybe(state.flight.fingerprint, state.flight.received_at, state.flight.action)
        if applied is None or flown.received_at >= applied.received_at:
            applied = flown
    return Step.DELIVER if applied is None else _against(applied, intent, confirmed=state.confirmed)


def _against(applied: Applied, intent: Intent, *, confirmed: bool) -> Step:
    """What an intent does given what Rokt has (or may have)."""
    if applied.fingerprint == intent.fingerprint:
        return Step.LATER_DUPLICATE if intent.received_at > applied.received_at else Step.DUPLICATE
    if applied.fingerprint == MAYBE + intent.fingerprint:
        return Step.DELIVER  # a copy of the intent whose outcome is unknown: sent again, whatever its age
    if intent.received_at >= applied.received_at:
        return Step.DELIVER
    if applied.is_maybe and applied.action == "update" and intent.action == "create" and not confirmed:
        # an update changes only an event Rokt has: while Rokt never confirmed one, the create before it
        # may never have got there, and superseding it would lose the event; delivered, the update's
        # own re-send follows it
        return Step.DELIVER
    return Step.SUPERSEDED


class StateChanged(Exception):
    """Another writer changed the event's state since it was read: here it is now."""

    def __init__(self, state: EventState) -> None:
        super().__init__("the event's state changed")
        self.state = state


class EventStates:
    """The per-event items in the idempotency table; every change of ``applied`` or ``flight`` is
    conditional on the version it was decided from (StateChanged, with the current state, if not)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, ttl_seconds: int, clock: Callable[[], float]) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl = ttl_seconds
        self._clock = clock

    def read(self, account_code: str, event_id: str) -> EventState:
        try:
            item = self._dynamodb.get_item(
                TableName=self._table, Key=_key(account_code, event_id), ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable() from exc
        return _state(item)

    def start(self, state: EventState, intent: Intent, owner: str, until: float) -> EventState:
        """Take the flight for ``intent``: no other intent for the event is delivered until it ends."""
        flight = Flight(intent.fingerprint, intent.received_at, owner, until, intent.action)
        return self._change(state, intent, flight=flight)

    def finish(self, state: EventState, intent: Intent, applied: Applied | None, *, leave_queue: bool) -> EventState:
        """End the flight, recording what Rokt now has (``applied``; None: nothing changed at Rokt), and
        take the intent off the waiting list when its message is done with (``leave_queue``)."""
        return self._change(state, intent, applied=applied, end_flight=True, leave_queue=leave_queue)

    def arrived_later(self, state: EventState, intent: Intent, *, leave_queue: bool) -> EventState:
        """A duplicate of the applied intent reached the bridge later than the copy it answers for: it
        is the last intent received, so an intent that arrived between the two is older than it."""
        if state.applied is None:
            raise ValueError("only a duplicate of the applied intent arrives later")
        applied = replace(state.applied, received_at=intent.received_at)
        return self._change(state, intent, applied=applied, leave_queue=leave_queue)

    # --- the queue's waiting list (not versioned: producers and consumers add and take off entries) --
    def wait(self, intent: Intent) -> None:
        """Put ``intent`` on the event's waiting list (before its message is sent)."""
        now = self._clock()
        self._update(
            intent,
            "SET #entry = :entry, #expiry = :expiry",
            {":entry": {"S": _entry(intent.received_at, now)}, ":expiry": self._expiry()},
        )

    def seen(self, intent: Intent) -> None:
        """The intent's message is still on the queue (retried, held back): its entry stays live."""
        self._update(
            intent,
            "SET #entry = :entry",
            {":entry": {"S": _entry(intent.received_at, self._clock())}},
            condition="attribute_exists(#entry)",
        )

    def unknown_since(self, intent: Intent) -> float:
        """Rokt answered 404 for ``intent`` (its event unknown there, maybe not yet): take it off the waiting
        list while it waits for its retry, and return when Rokt first said so for it (now, the first time)."""
        unknown = UNKNOWN + intent.intent_id
        names = {"#entry": WAITING + intent.intent_id, "#unknown": unknown, "#expiry": EXPIRY_ATTRIBUTE}
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(intent.account_code, intent.event_id),
                UpdateExpression="SET #unknown = if_not_exists(#unknown, :now), #expiry = :expiry REMOVE #entry",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":now": {"N": f"{self._clock():.3f}"}, ":expiry": self._expiry()},
                ReturnValues="ALL_NEW",
            )
            return float(answer["Attributes"][unknown]["N"])
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable() from exc
        except (KeyError, ValueError) as exc:  # an answer without the attribute it set: cannot tell
            raise _unavailable() from exc

    def leave(self, intent: Intent) -> None:
        """The intent's message is done with (or was never sent): intents behind it may go, and its first
        404 is forgotten (a replay of its message starts a 404 window of its own)."""
        self._update(
            intent, "REMOVE #entry, #unknown", {}, condition="attribute_exists(#entry) OR attribute_exists(#unknown)"
        )

    # --- plumbing -----------------------------------------------------------------------------------
    def _change(
        self,
        state: EventState,
        intent: Intent,
        *,
        applied: Applied | None = None,
        flight: Flight | None = None,
        end_flight: bool = False,
        leave_queue: bool = False,
    ) -> EventState:
        """One transition: a write conditional on the version ``state`` was read at."""
        sets: dict[str, dict[str, Any]] = {"version": {"N": str(state.version + 1)}, EXPIRY_ATTRIBUTE: self._expiry()}
        if applied is not None:
            sets["applied"] = {"S": _json(applied)}
            if not applied.is_maybe:  # Rokt confirmed it: the event exists there, unless it was deleted
                sets["confirmed"] = {"BOOL": applied.action != "delete"}
        if flight is not None:
            sets["flight"] = {"S": _json(flight)}
        removes = ["flight"] if end_flight else []
        if leave_queue and intent.intent_id:
            removes += [WAITING + intent.intent_id, UNKNOWN + intent.intent_id]
        expression, names, values = _update_expression(sets, removes)
        if state.version:
            condition = "#s0 = :version"  # #s0 is the version (sets' first name)
            values[":version"] = {"N": str(state.version)}
        elif state.exists:
            condition = "attribute_not_exists(#s0)"
        else:
            condition = "attribute_not_exists(id)"
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(intent.account_code, intent.event_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                answer: dict[str, Any] = dict(exc.response)
                raise StateChanged(_state(answer.get("Item"))) from exc
            raise _unavailable() from exc
        except BotoCoreError as exc:
            raise _unavailable() from exc
        kept = tuple(w for w in state.waiting if not (leave_queue and w.intent_id == intent.intent_id))
        return EventState(
            version=state.version + 1,
            exists=True,
            applied=applied or state.applied,
            flight=None if end_flight else flight or state.flight,
            waiting=kept,
            confirmed=state.confirmed if applied is None or applied.is_maybe else applied.action != "delete",
        )

    def _update(self, intent: Intent, expression: str, values: dict[str, Any], condition: str | None = None) -> None:
        names = {"#entry": WAITING + intent.intent_id}
        if "#unknown" in expression:
            names["#unknown"] = UNKNOWN + intent.intent_id
        if "#expiry" in expression:
            names["#expiry"] = EXPIRY_ATTRIBUTE
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(intent.account_code, intent.event_id),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if condition:
            params["ConditionExpression"] = condition
        try:
            self._dynamodb.update_item(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return  # the entry is gone already: nothing to keep or take off
            raise _unavailable() from exc
        except BotoCoreError as exc:
            raise _unavailable() from exc

    def _expiry(self) -> dict[str, str]:
        return {"N": str(int(self._clock()) + self._ttl)}


def _update_expression(
    sets: dict[str, dict[str, Any]], removes: list[str]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``SET`` each of ``sets`` and ``REMOVE`` each of ``removes``, every name and value a placeholder."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = []
    for index, (name, value) in enumerate(sets.items()):
        names[f"#s{index}"], values[f":s{index}"] = name, value
        parts.append(f"#s{index} = :s{index}")
    expression = "SET " + ", ".join(parts)
    for index, name in enumerate(removes):
        names[f"#r{index}"] = name
    if removes:
        expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(removes)))
    return expression, names, values


def _key(account_code: str, event_id: str) -> dict[str, dict[str, str]]:
    digest = hashlib.sha256(f"{account_code}\n{event_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return {"id": {"S": KEY_PREFIX + digest}}


def _entry(received_at: float, seen_at: float) -> str:
    return f"{received_at!r} {seen_at!r}"


def _json(value: Applied | Flight) -> str:
    return json.dumps(value.__dict__, sort_keys=True, separators=(",", ":"))


def _state(item: dict[str, Any] | None) -> EventState:
    if not item:
        return EventState()
    applied = flight = None
    if "applied" in item:
        applied = Applied(**json.loads(item["applied"]["S"]))
    if "flight" in item:
        flight = Flight(**json.loads(item["flight"]["S"]))
    waiting = []
    for name, value in item.items():
        if name.startswith(WAITING):
            received, _, seen = str(value.get("S", "")).partition(" ")
            try:
                waiting.append(Waiting(name[len(WAITING) :], float(received), float(seen or received)))
            except ValueError:
                continue
    return EventState(
        version=int(item.get("version", {}).get("N", "0")),
        exists=True,
        applied=applied,
        flight=flight,
        waiting=tuple(sorted(waiting, key=lambda w: (w.received_at, w.intent_id))),
        confirmed=bool(item.get("confirmed", {}).get("BOOL", False)),
    )


def _unavailable() -> DependencyUnavailable:
    return DependencyUnavailable("the idempotency store (DynamoDB) is unavailable")
