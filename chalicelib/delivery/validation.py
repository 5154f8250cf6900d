"""Parse a Braze webhook body into a typed, normalized event request, reporting every problem at once."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from chalicelib.bodies import MAX_NESTING, nesting_depth
from chalicelib.delivery import timezones
from chalicelib.delivery.models import Action, EventRequest
from chalicelib.errors import FieldError, InvalidJson, PayloadTooLarge, TemplateDefect, ValidationFailed

MAX_BODY_BYTES = 256 * 1024
MAX_ID_LENGTH = 256
MAX_NOTIFY_MINUTES = 2**31 - 1
ACCOUNT_CODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})")
_LOCAL_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

KNOWN_EVENT_FIELDS = frozenset(
    {
        "eventId",
        "title",
        "description",
        "location",
        "start",
        "end",
        "timezone",
        "timezoneIanaId",
        "notifyBefore",
        "allDayEvent",
        "actionType",
        "visibleFromDateTimeUtc",
    }
)
_TEXT_FIELDS = ("description", "location", "actionType")


def claimed_event_id(document: Any) -> str | None:
    """The body's ``event.eventId`` if it is a string, before (or despite) validation, for the log."""
    event = document.get("event") if isinstance(document, dict) else None
    value = event.get("eventId") if isinstance(event, dict) else None
    return value[:MAX_ID_LENGTH] if isinstance(value, str) else None


def decode_body(raw: bytes | None) -> Any:
    """Turn the raw request body into JSON, explaining where and why it is not."""
    if raw is None or raw == b"":
        raise InvalidJson("the request body is empty; the Braze template must send a JSON object")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the request body is not UTF-8 (invalid byte at offset {exc.start})") from exc
    try:
        document = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=Unreadable)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "A Liquid value containing an unescaped double quote, backslash or line break is the usual "
            "cause: apply the json_escape filter to such values in the Braze template."
        ) from exc
    except RecursionError as exc:
        raise InvalidJson("the request body is nested too deeply to be a webhook") from exc
    depth = nesting_depth(document)
    if depth > MAX_NESTING:
        raise InvalidJson(
            f"the request body is nested {depth} levels deep; a webhook body needs a few and at most "
            f"{MAX_NESTING} are accepted (whatever is forwarded to Rokt must be serialisable)"
        )
    return document


class Unreadable(str):
    """A JSON value Rokt could never receive: NaN, ±Infinity, or a number too long to convert.

    Kept as its text so validation can name the field (a 400), instead of failing later (a 500)."""


# Python refuses to convert integers longer than this (sys.get_int_max_str_digits()).
MAX_INT_DIGITS = 4300


def _parse_int(text: str) -> int | Unreadable:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else Unreadable(text)


def _parse_float(text: str) -> float | Unreadable:
    if len(text) > MAX_INT_DIGITS:
        return Unreadable(text)
    value = float(text)
    return value if math.isfinite(value) else Unreadable(text)


def unreadable_fields(body: Any) -> list[FieldError]:
    """Every value in ``body`` that JSON allowed but Rokt never could, by its path (``event.extra``)."""
    found: list[FieldError] = []
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Unreadable):
            shown = value if len(value) <= 20 else f"{value[:10]}…({len(value)} characters)"
            found.append(
                FieldError(path or "body", f"{shown} is not a number Rokt can take (NaN, Infinity, or too long)")
            )
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return sorted(found, key=lambda error: error.field)


def parse_request(action: Action, account_code: str, body: Any) -> EventRequest:
    """Validate ``body`` for ``action``; raise ValidationFailed (400) or TemplateDefect (422)."""
    unreadable = unreadable_fields(body)
    if unreadable:
        raise ValidationFailed(f"{len(unreadable)} value(s) Rokt could never take; see details", unreadable)
    if account_code == "":
        raise TemplateDefect(
            "the Braze template rendered an empty account code; see details",
            [
                FieldError(
                    "accountCode",
                    "the URL has no account code: the Braze user has no rokt:account_code (the template's "
                    "custom_attribute.${rokt:account_code}[0] rendered empty). Target only users with "
                    "rokt:account_code, i.e. calendar subscribers.",
                )
            ],
        )
    errors: list[FieldError] = []
    _check_account_code(account_code, errors)
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the request body must be a JSON object",
            [FieldError("body", f"expected a JSON object, got {_json_type(body)}")],
        )
    raw_event = _event_of(action, body, errors)
    parser = _EventParser(raw_event, errors)
    event = parser.parse_delete() if action is Action.DELETE else parser.parse_full()
    subscription_ids: tuple[str, ...] = ()
    defects: list[FieldError] = []
    if action is Action.CREATE:
        subscription_ids = _subscription_ids(body.get("subscriptionIds"), errors, defects)
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); see details", errors)
    event_id = str(event["eventId"])
    if event_id.endswith("_"):
        defects.append(
            FieldError(
                "event.eventId",
                f"eventId {event_id!r} ends with '_': the Braze user had no user_id, so every anonymous "
                "user would share this event. Target only users with an external user id.",
            )
        )
    if defects:
        raise TemplateDefect("the Braze template rendered empty attributes; see details", defects)
    return EventRequest(
        action=action,
        account_code=account_code,
        event_id=event_id,
        event=event,
        subscription_ids=subscription_ids,
        unknown_fields=parser.unknown_fields,
    )


def _encodable(value: str) -> bool:
    """False for strings UTF-8 cannot encode: lone surrogates, which JSON's \\uXXXX escapes let through."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_account_code(account_code: str, errors: list[FieldError]) -> None:
    if not ACCOUNT_CODE.fullmatch(account_code):
        errors.append(
            FieldError(
                "accountCode",
                "the account code in the URL must be 1-63 letters, digits, '-' or '_' (the Rokt dashboard "
                "subdomain, e.g. the part of rokt:account_code before '/')",
            )
        )


def _event_of(action: Action, body: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    event = body.get("event")
    if event is None and action is Action.UPDATE and "eventId" in body:
        return body  # Rokt's 2021 reference sends update fields flat; accept it from Braze too.
    if not isinstance(event, dict):
        problem = "is required" if event is None else f"must be a JSON object, got {_json_type(event)}"
        errors.append(FieldError("event", problem))
        return {}
    return event


class _EventParser:
    """Field-by-field checks of one event object, appending FieldErrors instead of stopping."""

    def __init__(self, raw: dict[str, Any], errors: list[FieldError]) -> None:
        self._raw = raw
        self._errors = errors
        self._out: dict[str, Any] = {}
        self.unknown_fields: tuple[str, ...] = ()

    def parse_delete(self) -> dict[str, Any]:
        self._identifier("eventId")
        return self._out

    def parse_full(self) -> dict[str, Any]:
        self._identifier("eventId")
        self._text("title", required=True)
        for name in _TEXT_FIELDS:
            self._text(name)
        start = self._local_datetime("start", required=True)
        end = self._local_datetime("end")
        if start and end and end < start:
            self._fail("event.end", "must not be before event.start")
        self._timezone()
        self._notify_before()
        self._all_day()
        self._utc_datetime("visibleFromDateTimeUtc")
        unknown = sorted(set(self._raw) - KNOWN_EVENT_FIELDS)
        self.unknown_fields = tuple(unknown)
        for name in unknown:
            self._out[name] = self._raw[name]
        return self._out

    def _fail(self, field_name: str, message: str) -> None:
        self._errors.append(FieldError(field_name, message))

    def _string(self, name: str, required: bool) -> str | None:
        value = self._raw.get(name)
        if value is None or (isinstance(value, str) and value.strip() == "" and required):
            if required:
                self._fail(f"event.{name}", "is required")
            return None
        if not isinstance(value, str):
            self._fail(f"event.{name}", f"must be a string, got {_json_type(value)}")
            return None
        return value

    def _identifier(self, name: str) -> None:
        value = self._string(name, required=True)
        if value is None:
            return
        if len(value) > MAX_ID_LENGTH or _CONTROL.search(value) or value != value.strip():
            self._fail(
                f"event.{name}",
                f"must be at most {MAX_ID_LENGTH} characters with no control characters or edge spaces",
            )
            return
        if value in (".", ".."):
            self._fail(f"event.{name}", f"must not be {value!r}: a URL path drops it, so Rokt would get another URL")
            return
        if not _encodable(value):
            self._fail(f"event.{name}", "is not text: it holds a lone surrogate (e.g. \\ud800), which no URL can carry")
            return
        self._out[name] = value

    def _text(self, name: str, required: bool = False) -> None:
        value = self._string(name, required)
        if value is None:
            return
        if _TEXT_CONTROL.search(value):
            self._fail(f"event.{name}", "contains control characters")
            return
        self._out[name] = value

    def _local_datetime(self, name: str, required: bool = False) -> datetime | None:
        value = self._string(name, required)
        if value is None:
            return None
        parsed = _parse_local(value)
        if parsed is None:
            self._fail(
                f"event.{name}",
                f"{value!r} is not an ISO 8601 local date-time like 2019-02-21T15:00:00 "
                "(no offset or 'Z': the time is read in event.timezone)",
            )
            return None
        self._out[name] = value
        return parsed

    def _utc_datetime(self, name: str) -> None:
        value = self._string(name, required=False)
        if value is None:
            return
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self._fail(f"event.{name}", f"{value!r} is not an ISO 8601 date-time")
            return
        self._out[name] = value

    def _timezone(self) -> None:
        value = self._string("timezone", required=True)
        if value is None:
            return
        try:
            choice = timezones.resolve(value.strip())
        except timezones.UnknownTimeZone:
            self._fail(
                "event.timezone",
                f"{value!r} is not a known time zone: use a Windows id such as 'Eastern Standard Time' "
                "or an IANA name such as 'America/New_York'",
            )
            return
        self._out["timezone"] = choice.windows_id
        explicit_iana = self._string("timezoneIanaId", required=False)
        if explicit_iana is not None and not timezones.is_iana_name(explicit_iana):
            self._fail("event.timezoneIanaId", f"{explicit_iana!r} is not a known IANA time zone name")
            return
        iana = explicit_iana or choice.iana_name
        if iana is not None:
            self._out["timezoneIanaId"] = iana

    def _notify_before(self) -> None:
        value = self._raw.get("notifyBefore")
        if value is None or value == "":
            return
        minutes: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            minutes = value
        elif isinstance(value, float) and value.is_integer():
            minutes = int(value)
        elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) <= 12:
            minutes = int(value.strip())
        if minutes is None or not 0 <= minutes <= MAX_NOTIFY_MINUTES:
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}… ({len(repr(value))} characters)"
            self._fail("event.notifyBefore", f'must be whole minutes >= 0 (e.g. 15 or "15"), got {shown}')
            return
        self._out["notifyBefore"] = minutes

    def _all_day(self) -> None:
        value = self._raw.get("allDayEvent")
        if value is None or value == "":
            return
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if not isinstance(value, bool):
            self._fail("event.allDayEvent", f"must be true or false, got {value!r}")
            return
        self._out["allDayEvent"] = value


def _parse_local(value: str) -> datetime | None:
    if not _LOCAL_DATETIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _subscription_ids(raw: Any, errors: list[FieldError], defects: list[FieldError]) -> tuple[str, ...]:
    if raw is None:
        errors.append(FieldError("subscriptionIds", "is required"))
        return ()
    if not isinstance(raw, list):
        errors.append(FieldError("subscriptionIds", f"must be a list of strings, got {_json_type(raw)}"))
        return ()
    kept: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            errors.append(FieldError(f"subscriptionIds[{index}]", f"must be a string, got {_json_type(item)}"))
            continue
        candidate = item.strip()
        if not candidate:
            continue
        if not _UUID.fullmatch(candidate):
            errors.append(FieldError(f"subscriptionIds[{index}]", f"{candidate[:64]!r} is not a subscription UUID"))
            continue
        if candidate.lower() not in seen:
            seen.add(candidate.lower())
            kept.append(candidate)
    if not kept and not any(e.field.startswith("subscriptionIds") for e in errors):
        defects.append(
            FieldError(
                "subscriptionIds",
                "no subscription id left after dropping blanks: the Braze user has no rokt:subscription_id. "
                "Target only users with that attribute (e.g. a segment filter 'rokt:subscription_id is not blank').",
            )
        )
    return tuple(kept)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
