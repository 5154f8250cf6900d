"""What a batch writes, decided without IO: each claimed record's writes from its subscription's
read (``staged``); one group per subscription (its attribute objects — state — and its records'
custom events — history), the ledger written ahead of Braze and after it; the groups packed into
/users/track calls (``chunks``).

Pure: claimed records and their reads in, the plan out. The writer (``chalicelib.sync.writer``)
carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.braze.client import MAX_OBJECTS_PER_KIND
from chalicelib.sync import mapping
from chalicelib.sync.records import LedgerEntry
from chalicelib.sync.times import utc_time

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.sync.envelope import Account, RoktWebhook
    from chalicelib.sync.records import Claim


@dataclass
class Claimed:
    """A record whose ``eventId`` this batch claimed; its subscription is being read."""

    record: SQSRecord
    webhook: RoktWebhook
    account: Account
    subscription_id: str
    claim: Claim
    started: float


@dataclass
class Staged:
    """One record ready to write: its subscription's state, what the ledger says Braze may hold, and
    its custom event (None when it has none, or may already have sent it)."""

    record: SQSRecord
    webhook: RoktWebhook
    subscriber: mapping.Subscriber
    previous: LedgerEntry | None
    event: dict[str, Any] | None
    started: float
    sent_before: bool = False  # the claim says its custom event may already be in Braze


@dataclass
class Group:
    """One subscription's share of a batch: its attribute objects (state) and its records (events),
    the ledger written ahead of Braze (None when it already covers the new values) and after it."""

    subscription_id: str
    attributes: list[dict[str, Any]]
    records: list[Staged]
    ledger: LedgerEntry | None
    ahead: LedgerEntry | None = None


def stage(
    claimed: Claimed,
    state: dict[str, Any] | None,
    previous: LedgerEntry | None,
    fallback: mapping.IdentityFallback,
    now: float,
) -> Staged | None:
    """The record's writes from Rokt's state (None: Rokt no longer knows the subscription) and what the
    ledger says Braze may hold; None when there is nobody to write to (no identity, none written)."""
    webhook, subscription_id = claimed.webhook, claimed.subscription_id
    account = mapping.known_account(subscription_id, claimed.account, state, previous.values if previous else None)
    subscriber = (
        mapping.subscriber(subscription_id, state, account, fallback)
        if state is not None
        else mapping.Subscriber(subscription_id, active=False, identity=previous.identity if previous else None)
    )
    who = subscriber.identity or (previous.identity if previous else None)
    if who is None:
        return None
    event = None
    if claimed.claim == "new":  # "sent": the custom event may be in Braze already; never twice
        event = mapping.custom_event(webhook, who, subscriber if state is not None else None, utc_time(now))
    sent_before = claimed.claim == "sent"
    return Staged(claimed.record, webhook, subscriber, previous, event, claimed.started, sent_before=sent_before)


def groups(staged: list[Staged]) -> list[Group]:
    by_subscription: dict[str, list[Staged]] = {}
    for item in staged:
        by_subscription.setdefault(item.subscriber.subscription_id, []).append(item)
    found = []
    for subscription_id, records in by_subscription.items():
        first = records[0]
        planned = group(subscription_id, first.subscriber, first.previous, records)
        if planned is not None:
            found.append(planned)
    return found


def group(
    subscription_id: str, current: mapping.Subscriber, previous: LedgerEntry | None, records: list[Staged]
) -> Group | None:
    """One subscription's writes from its state and what the ledger says Braze may hold (``records``: the
    webhooks behind them, none for a reconciliation); None when there is nobody to write to."""
    who = current.identity or (previous.identity if previous else None)
    if who is None:
        return None
    add, remove = mapping.changes(previous.values if previous else {}, current)
    objects = []
    for old in previous.holders() if previous is not None else ():
        if old != who:  # the subscriber id changed: take everything off every profile it was on
            removal = mapping.attribute_object(old, {}, previous.values if previous else {})
            objects += [removal] if removal is not None else []
    new = mapping.attribute_object(who, add, remove)
    objects += [new] if new is not None else []
    ledger = LedgerEntry(who, current.values) if current.active else None
    return Group(subscription_id, objects, records, ledger, ahead(previous, who, current))


def ahead(previous: LedgerEntry | None, who: dict[str, str], current: mapping.Subscriber) -> LedgerEntry | None:
    """The ledger to write before Braze: what it holds plus the values about to be added, on the
    identity about to get them, with every other identity that may hold them as a former one (the
    next write removes the values from each, should this one not land or not be known to)."""
    if not current.active:
        return None  # nothing is added: the ledger as it is names every identity to remove from
    known = previous.values if previous else {}
    merged = {name: list(values) for name, values in known.items()}
    for name, values in current.values.items():
        merged.setdefault(name, [])
        merged[name] += [v for v in values if v not in merged[name]]
    former = tuple(old for old in previous.holders() if old != who) if previous else ()
    entry = LedgerEntry(who, merged, former)
    return None if entry == previous else entry


def chunks(groups: list[Group]) -> list[list[Group]]:
    """Whole subscriptions per call, at most 75 attribute objects and 75 events (a batch is <= 75
    records, so one subscription always fits one call)."""
    packed: list[list[Group]] = []
    current: list[Group] = []
    attributes = events = 0
    for group in groups:
        group_events = sum(1 for s in group.records if s.event is not None)
        full = attributes + len(group.attributes) > MAX_OBJECTS_PER_KIND or events + group_events > MAX_OBJECTS_PER_KIND
        if current and full:
            packed.append(current)
            current, attributes, events = [], 0, 0
        current.append(group)
        attributes += len(group.attributes)
        events += group_events
    if current:
        packed.append(current)
    return packed
