"""A Rokt subscription's current state → the ``rokt:*`` attributes and custom events Braze gets.

Values follow the partner page: every attribute is an array with one element per subscription,
``"<value>/<last 12 hex digits of the subscription id>"`` (``rokt:subscription_id`` bare), so a
user's subscriptions coexist and one can be removed exactly. Attributes carry **state** (what Rokt
reports now); custom events carry **history** (one per Rokt webhook). The suffix rule is ours:
Rokt does not publish what its own suffix means (docs/rokt-to-braze.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chalicelib.sync.envelope import Account
from chalicelib.sync.times import utc_iso

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chalicelib.sync.envelope import RoktWebhook

IdentityFallback = Literal["email", "none"]
MAX_VALUE_CHARS = 255  # Braze's limit for a custom attribute string
CUSTOM_EVENTS = {
    "Subscribe": "subscribe",
    "Unsubscribe": "unsubscribe",
    "SubscriptionEventAdded": "calendar_event_added",
    "SubscriptionEventRemoved": "calendar_event_removed",
}
# Optional fields of GET /v1/subscription and the attribute each feeds ("those that Rokt provides").
_OPTIONAL = {
    "countryCode": "rokt:country_code",
    "geoCountry": "rokt:geo_country",
    "deviceName": "rokt:device_name",
    "source": "rokt:source",
    "emailAddress": "rokt:subscriber_email",
}
_OPT_INS = {"marketingAllowed": "rokt:optIn1", "additionalOptIn": "rokt:optIn2"}

Values = dict[str, list[str]]


def suffix(subscription_id: str) -> str:
    """The last 12 hex digits of the subscription id (a UUID); a stable digest for any other id."""
    digits = "".join(c for c in subscription_id.lower() if c in "0123456789abcdef")
    if len(digits) >= 12 and len(digits) == len(subscription_id.replace("-", "")):
        return digits[-12:]
    return hashlib.sha256(subscription_id.encode("utf-8")).hexdigest()[-12:]


@dataclass(frozen=True)
class Subscriber:
    """Who a subscription belongs to in Braze, and the values it contributes to the profile."""

    subscription_id: str
    active: bool
    identity: dict[str, str] | None
    values: Values = field(default_factory=dict)
    created_at: str | None = None  # ISO 8601 UTC, whatever format Rokt wrote it in
    deactivated_at: str | None = None  # likewise
    calendar_code: str | None = None
    method: str | None = None


def subscriber(
    subscription_id: str, state: Mapping[str, Any], account: Account, fallback: IdentityFallback
) -> Subscriber:
    """Read Rokt's ``GET /v1/subscription`` answer: identity, active or not, and the attribute values."""
    tail = suffix(subscription_id)
    found = state.get("calendar")
    calendar: Mapping[str, Any] = found if isinstance(found, dict) else {}
    title = _text(calendar.get("name"))
    values: Values = {"rokt:subscription_id": [subscription_id]}

    def put(attribute: str, value: Any) -> None:
        text = _text(value)
        if text is not None:
            values.setdefault(attribute, []).append(f"{text}/{tail}"[-MAX_VALUE_CHARS:])

    put("rokt:account_code", account.code)
    put("rokt:account_id", account.id)
    put("rokt:account_name", account.name)
    put("rokt:calendar_code", calendar.get("code"))
    put("rokt:calendar_id", calendar.get("id"))
    put("rokt:calendar_title", title)
    put("rokt:subscription_method", state.get("subscriptionType"))
    for tag in state.get("tags") or []:
        name = _text(tag.get("name")) if isinstance(tag, dict) else None
        if name is not None:
            put("rokt:tags", f"{title or ''}/{name}")
    for key, attribute in _OPTIONAL.items():
        put(attribute, state.get(key))
    for key, attribute in _OPT_INS.items():
        if isinstance(state.get(key), bool):
            put(attribute, "True" if state[key] else "False")
    return Subscriber(
        subscription_id=subscription_id,
        active=state.get("isActive") is not False and not state.get("deactivatedDate"),
        identity=identity(state, fallback),
        values=values,
        created_at=utc_iso(state.get("createdAt")),
        deactivated_at=utc_iso(state.get("deactivatedDate")),
        calendar_code=_text(calendar.get("code")),
        method=_text(state.get("subscriptionType")),
    )


def known_account(
    subscription_id: str, account: Account, state: Mapping[str, Any] | None, previous: Values | None
) -> Account:
    """The account as far as anything the bridge can see names it: the webhook; else Rokt's subscription
    (should its answer name it — the documented one does not); else what was last written (the ledger).
    A value this webhook does not carry (a backfill without ``--account-id``, a type whose details omit
    it) is unknown, not gone: it must never read as a removal."""
    found = state or {}
    written = previous or {}
    return dataclasses.replace(
        account,
        id=account.id or _text(found.get("accountId")) or _unsuffixed(written.get("rokt:account_id"), subscription_id),
        name=account.name
        or _text(found.get("accountName"))
        or _unsuffixed(written.get("rokt:account_name"), subscription_id),
    )


def written_account(subscription_id: str, values: Values, state: Mapping[str, Any] | None = None) -> Account | None:
    """The account a subscription's ledger values name (a reconciliation has no webhook): the code the
    bridge wrote, else Rokt's subscription's own ``accountCode`` should it name one; then its id and name
    as ``known_account`` finds them. None without a code."""
    code = _unsuffixed(values.get("rokt:account_code"), subscription_id) or _text((state or {}).get("accountCode"))
    if code is None:
        return None
    return known_account(subscription_id, Account(code), state, values)


def _unsuffixed(values: list[str] | None, subscription_id: str) -> str | None:
    """The value behind ``"<value>/<suffix>"`` as written for this subscription."""
    tail = "/" + suffix(subscription_id)
    for value in values or []:
        if value.endswith(tail) and len(value) > len(tail):
            return value[: -len(tail)]
    return None


def identity(state: Mapping[str, Any], fallback: IdentityFallback) -> dict[str, str] | None:
    """``external_id`` = Rokt's subscriber id; else the e-mail address when the fallback allows; else None."""
    subscriber_id = _text(state.get("subscriberId"))
    if subscriber_id is not None:
        return {"external_id": subscriber_id}
    email = _text(state.get("emailAddress"))
    if fallback == "email" and email is not None:
        return {"email": email}
    return None


def attribute_object(who: dict[str, str], add: Values, remove: Values) -> dict[str, Any] | None:
    """One /users/track attribute object adding and removing array elements; None if nothing changes."""
    changes: dict[str, Any] = {}
    for name in sorted(set(add) | set(remove)):
        edit: dict[str, list[str]] = {}
        if add.get(name):
            edit["add"] = list(add[name])
        gone = [v for v in remove.get(name, []) if v not in add.get(name, [])]
        if gone:
            edit["remove"] = gone
        if edit:
            changes[name] = edit
    return {**who, **changes} if changes else None


def changes(previous: Values, current: Subscriber) -> tuple[Values, Values]:
    """(add, remove): a live subscription adds its values and drops what it no longer has; an ended one
    removes everything it ever wrote (``previous``) and everything its state still names."""
    if current.active:
        stale = {k: [v for v in vs if v not in current.values.get(k, [])] for k, vs in previous.items()}
        return current.values, {k: vs for k, vs in stale.items() if vs}
    removed: Values = {}
    for source in (previous, current.values):
        for name, values in source.items():
            removed.setdefault(name, [])
            removed[name] += [v for v in values if v not in removed[name]]
    return {}, removed


def custom_event(
    webhook: RoktWebhook, who: dict[str, str], current: Subscriber | None, now: str
) -> dict[str, Any] | None:
    """The custom event one webhook records (history, written once per Rokt eventId), if any."""
    name = CUSTOM_EVENTS.get(webhook.event_type)
    if name is None or webhook.account is None:
        return None
    properties: dict[str, Any] = {"account_code": webhook.account.code, "subscription_id": webhook.subscription_id}
    if current is not None:
        properties.update(calendar_code=current.calendar_code, subscription_method=current.method)
    time = now
    if webhook.event_type == "Subscribe" and current is not None and current.created_at:
        time = current.created_at
    elif webhook.event_type == "Unsubscribe":
        time = webhook.removed_at or (current.deactivated_at if current else None) or now
    if webhook.calendar_event_id is not None:
        properties.update(event_id=webhook.calendar_event_id, title=webhook.calendar_event_title)
    return {
        **who,
        "name": name,
        "time": time,
        "properties": {k: v for k, v in properties.items() if v is not None},
    }


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()
    return text or None
