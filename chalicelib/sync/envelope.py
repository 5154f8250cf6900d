"""Rokt's webhook envelope (v2), read defensively against the inconsistencies of Rokt's own docs
(docs/rokt-to-braze.md, "What Rokt's documentation leaves open"): both spellings of ``SubscriptionDetailsUpdated``, the
"Deleted" example that says ``SubscriptionEventRemoved``, ``calendarSubscriptionId`` at either level
(each documented place is read; the first usable value wins), and ``removedDateTimeUtc`` without a
``T`` or a zone.

Two levels of "unusable": an envelope without ``eventId``/``eventType`` can never be processed
(``header`` refuses it); a used type whose details lack what the sync needs is still Rokt's word about
a subscription, so the route keeps it and the consumer dead-letters it with the reason (``parse``'s
ValidationFailed, described by ``problems``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.bodies import MAX_NESTING, nesting_depth
from chalicelib.errors import FieldError, InvalidJson, PayloadTooLarge, ValidationFailed
from chalicelib.sync.times import utc_iso

MAX_BODY_BYTES = 256 * 1024
MAX_ID_LENGTH = 256
_NOT_STORABLE = (
    "must be text: it holds a lone surrogate (an unpaired \\ud800-\\udfff escape) or a character Unicode "
    "reserves (U+FFFE, U+FFFF), which cannot be encoded or queued"
)
SUBSCRIPTION_TYPES = frozenset({"Subscribe", "Unsubscribe", "SubscriptionDetailsUpdated"})
CALENDAR_EVENT_TYPES = frozenset({"SubscriptionEventAdded", "SubscriptionEventRemoved"})
USED_TYPES = SUBSCRIPTION_TYPES | CALENDAR_EVENT_TYPES
_ALIASES = {"SubscriptionDetailsUpdate": "SubscriptionDetailsUpdated"}
# listed at eventDetails level, shown inside ``subscription`` in every example (docs/rokt-to-braze.md)
SUBSCRIPTION_ID_PLACES = (("subscription", "calendarSubscriptionId"), ("calendarSubscriptionId",))


@dataclass(frozen=True)
class Account:
    code: str
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class RoktWebhook:
    """One Rokt webhook, normalized; ``used`` says whether the bridge writes anything for it."""

    event_id: str
    event_type: str
    account: Account | None = None
    subscription_id: str | None = None
    calendar_event_id: str | None = None
    calendar_event_title: str | None = None
    removed_at: str | None = None  # ISO 8601 UTC

    @property
    def used(self) -> bool:
        return self.event_type in USED_TYPES


def decode(raw: bytes | None) -> Any:
    """The body as JSON, or a 4xx error saying why it never will be."""
    if not raw:
        raise InvalidJson("the request body is empty; Rokt sends a JSON object")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidJson("the request body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a number too long to convert, or nesting too deep
        raise InvalidJson(f"the request body cannot be read as a webhook ({type(exc).__name__})") from exc
    depth = nesting_depth(body)
    if depth > MAX_NESTING:
        raise InvalidJson(f"the request body is nested {depth} levels deep; at most {MAX_NESTING} are accepted")
    return body


def header(body: Any) -> tuple[str, str]:
    """The envelope's ``eventId`` and (normalized) ``eventType``: without them nothing can ever be done."""
    if not isinstance(body, dict):
        raise ValidationFailed("the webhook must be a JSON object", [FieldError("", "expected an object")])
    errors: list[FieldError] = []
    event_id = _identifier(body.get("eventId"), "eventId", errors)
    raw_type = body.get("eventType")
    if not isinstance(raw_type, str) or not raw_type.strip():
        errors.append(FieldError("eventType", "required, a string"))
    elif not _storable(raw_type):
        errors.append(FieldError("eventType", _NOT_STORABLE))
    if errors or event_id is None:
        raise ValidationFailed("the webhook envelope is incomplete", errors)
    event_type = _ALIASES.get(str(raw_type).strip(), str(raw_type).strip())
    details = body.get("eventDetails")
    if event_type == "SubscriptionEventRemoved" and not isinstance(_get(details, "subscription"), dict):
        event_type = "SubscriptionEventDeleted"  # the docs' "Deleted" example carries the Removed type
    return event_id, event_type


def parse(body: Any) -> RoktWebhook:
    """Validate the envelope; for event types the bridge uses, everything it needs must be there."""
    event_id, event_type = header(body)
    if event_type not in USED_TYPES:
        return RoktWebhook(event_id=event_id, event_type=event_type)
    details = body.get("eventDetails")
    if not isinstance(details, dict):
        raise ValidationFailed("eventDetails is missing", [FieldError("eventDetails", "required, an object")])
    return _used(event_id, event_type, details)


def problems(exc: ValidationFailed) -> str:
    """A ValidationFailed as one line for a log or a dead letter's reason: the message and every field."""
    fields = "; ".join(f"{d.field or 'body'}: {d.message}" for d in exc.details)
    return f"{exc.message} ({fields})" if fields else exc.message


def _used(event_id: str, event_type: str, details: dict[str, Any]) -> RoktWebhook:
    errors: list[FieldError] = []
    subscription = _object(details, "subscription")
    subscription_id = _first_identifier(details, SUBSCRIPTION_ID_PLACES, errors)
    code = _identifier(details.get("accountCode"), "eventDetails.accountCode", errors)
    calendar_event = _object(details, "subscriptionEvent") if event_type in CALENDAR_EVENT_TYPES else {}
    calendar_event_id = None
    if event_type in CALENDAR_EVENT_TYPES:
        raw_id = calendar_event.get("eventId")
        textual = str(raw_id) if isinstance(raw_id, (int, str)) and not isinstance(raw_id, bool) else None
        calendar_event_id = _identifier(textual, "eventDetails.subscriptionEvent.eventId", errors)
    if errors:
        raise ValidationFailed(f"a {event_type} webhook must name its subscription and account", errors)
    return RoktWebhook(
        event_id=event_id,
        event_type=event_type,
        account=Account(str(code), _text(details.get("accountId")), _text(details.get("accountName"))),
        subscription_id=str(subscription_id),
        calendar_event_id=calendar_event_id,
        calendar_event_title=_text(calendar_event.get("title")),
        removed_at=utc_iso(subscription.get("removedDateTimeUtc")),
    )


def _identifier(value: Any, field: str, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(field, "required, a non-empty string"))
        return None
    if len(value) > MAX_ID_LENGTH or any(ord(c) < 32 for c in value):
        errors.append(FieldError(field, f"at most {MAX_ID_LENGTH} printable characters"))
        return None
    if not _storable(value):
        errors.append(FieldError(field, _NOT_STORABLE))
        return None
    return value.strip()


def _storable(text: str) -> bool:
    """Text SQS takes as a String message attribute (and UTF-8 can encode): no surrogates, no U+FFFE/FFFF
    (the control characters below U+0020 are refused with the length)."""
    return not any(0xD800 <= ord(c) <= 0xDFFF or ord(c) in (0xFFFE, 0xFFFF) for c in text)


def _first_identifier(
    details: dict[str, Any], places: tuple[tuple[str, ...], ...], errors: list[FieldError]
) -> str | None:
    """The first usable identifier among ``places`` (key paths under eventDetails); one error naming them all."""
    for place in places:
        found = _identifier(_path(details, place), "", [])
        if found is not None:
            return found
    names = " or ".join("eventDetails." + ".".join(place) for place in places)
    errors.append(FieldError(names, f"required in one of these places, a non-empty string of at most {MAX_ID_LENGTH}"))
    return None


def _path(container: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        container = _get(container, key)
    return container


def _text(value: Any) -> str | None:
    return value.strip()[:255] if isinstance(value, str) and value.strip() else None


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, dict) else None


def _object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    return value if isinstance(value, dict) else {}
