"""Every validation rule of the webhook body, with the message a marketer reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.delivery.models import Action, EventRequest
from chalicelib.delivery.validation import MAX_BODY_BYTES, decode_body, parse_request
from chalicelib.errors import InvalidJson, PayloadTooLarge, TemplateDefect, ValidationFailed
from tests.conftest import SUBSCRIPTION, seed_body


def fields_of(exc: ValidationFailed | TemplateDefect) -> dict[str, str]:
    return {d.field: d.message for d in exc.details}


def invalid(body: Any, action: Action = Action.CREATE, account: str = "brazetest") -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_request(action, account, body)
    return fields_of(caught.value)


def test_parse_request_normalizes_the_seed_body():
    request = parse_request(Action.CREATE, "brazetest", seed_body())

    assert request.event_id == "Event_0001_user42"
    assert request.event["notifyBefore"] == 15
    assert request.event["timezone"] == "Eastern Standard Time"
    assert "timezoneIanaId" not in request.event
    assert request.subscription_ids == (SUBSCRIPTION,)
    assert EventRequest.from_dict(request.to_dict()) == request


def test_parse_request_reports_all_missing_required_fields_at_once():
    problems = invalid({"event": {}, "subscriptionIds": [SUBSCRIPTION]})

    assert problems == {
        "event.eventId": "is required",
        "event.title": "is required",
        "event.start": "is required",
        "event.timezone": "is required",
    }


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("start", "2019-02-21 15:00", "not an ISO 8601 local date-time"),
        ("start", "2019-02-21T15:00:00Z", "no offset"),
        ("start", "2019-02-30T15:00:00", "not an ISO 8601"),
        ("end", "tomorrow", "not an ISO 8601"),
        ("timezone", "Eastern Time", "not a known time zone"),
        ("timezone", 5, "must be a string"),
        ("notifyBefore", "-5", "whole minutes >= 0"),
        ("notifyBefore", "1.5", "whole minutes >= 0"),
        ("notifyBefore", True, "whole minutes >= 0"),
        ("allDayEvent", "yes", "true or false"),
        ("title", ["x"], "must be a string"),
        ("eventId", "a\nb", "no control characters"),
        ("eventId", "x" * 300, "at most 256"),
        ("visibleFromDateTimeUtc", "noon", "not an ISO 8601"),
        ("timezoneIanaId", "Mars/Olympus", "not a known IANA"),
        ("description", "bell\x07", "control characters"),
    ],
)
def test_parse_request_rejects_bad_field(field: str, value: Any, needle: str):
    problems = invalid(seed_body(**{field: value}))

    assert needle in problems[f"event.{field}"]


def test_parse_request_rejects_end_before_start():
    problems = invalid(seed_body(start="2019-02-21T15:00:00", end="2019-02-21T14:59:00"))

    assert problems == {"event.end": "must not be before event.start"}


@pytest.mark.parametrize(("raw", "minutes"), [("15", 15), (15, 15), (0, 0), ("0", 0), (30.0, 30)])
def test_parse_request_accepts_notify_before_as_number_or_digits(raw: Any, minutes: int):
    request = parse_request(Action.CREATE, "brazetest", seed_body(notifyBefore=raw))

    assert request.event["notifyBefore"] == minutes


@pytest.mark.parametrize(("raw", "expected"), [(True, True), ("false", False), ("TRUE", True)])
def test_parse_request_accepts_all_day_event_booleans(raw: Any, expected: bool):
    request = parse_request(Action.CREATE, "brazetest", seed_body(allDayEvent=raw))

    assert request.event["allDayEvent"] is expected


def test_parse_request_translates_iana_zone_and_keeps_it():
    request = parse_request(Action.CREATE, "brazetest", seed_body(timezone="Europe/London"))

    assert request.event["timezone"] == "GMT Standard Time"
    assert request.event["timezoneIanaId"] == "Europe/London"


def test_parse_request_forwards_unknown_fields_and_names_them():
    request = parse_request(Action.CREATE, "brazetest", seed_body(promo="X1", color="red"))

    assert request.event["promo"] == "X1"
    assert request.unknown_fields == ("color", "promo")


def test_parse_request_drops_blank_and_duplicate_subscription_ids():
    other = "11111111-2222-3333-4444-555555555555"
    body = {**seed_body(), "subscriptionIds": ["", SUBSCRIPTION, " ", SUBSCRIPTION.upper(), other]}

    request = parse_request(Action.CREATE, "brazetest", body)

    assert request.subscription_ids == (SUBSCRIPTION, other)


def test_parse_request_flags_empty_subscription_ids_as_template_defect():
    body = {**seed_body(), "subscriptionIds": [""]}

    with pytest.raises(TemplateDefect) as caught:
        parse_request(Action.CREATE, "brazetest", body)

    assert "rokt:subscription_id" in fields_of(caught.value)["subscriptionIds"]
    assert caught.value.status_code == 422


def test_parse_request_flags_event_id_with_empty_user_id():
    with pytest.raises(TemplateDefect) as caught:
        parse_request(Action.CREATE, "brazetest", seed_body("Event_0001_"))

    assert "no user_id" in fields_of(caught.value)["event.eventId"]


def test_parse_request_reports_both_template_defects_together():
    body = {**seed_body("Event_0001_"), "subscriptionIds": [""]}

    with pytest.raises(TemplateDefect) as caught:
        parse_request(Action.CREATE, "brazetest", body)

    assert set(fields_of(caught.value)) == {"event.eventId", "subscriptionIds"}


@pytest.mark.parametrize("ids", [None, "abc", [5], ["not-a-uuid"]])
def test_parse_request_rejects_malformed_subscription_ids(ids: Any):
    body = {**seed_body()}
    if ids is None:
        del body["subscriptionIds"]
    else:
        body["subscriptionIds"] = ids

    problems = invalid(body)

    assert any(name.startswith("subscriptionIds") for name in problems)


@pytest.mark.parametrize("account", ["..%2F", "a/b", "a?b", "x" * 64, "-lead", "sp ace", "é"])
def test_parse_request_rejects_unsafe_account_codes(account: str):
    problems = invalid(seed_body(), account=account)

    assert "accountCode" in problems


def test_an_empty_account_code_is_a_template_defect_not_a_validation_error():
    with pytest.raises(TemplateDefect) as caught:
        parse_request(Action.CREATE, "", seed_body())

    assert [d.field for d in caught.value.details] == ["accountCode"]
    assert "rokt:account_code" in caught.value.details[0].message


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_parse_request_requires_a_json_object(body: Any):
    assert invalid(body) == {"body": invalid(body)["body"]}


def test_parse_request_update_needs_no_subscription_ids():
    request = parse_request(Action.UPDATE, "brazetest", {"event": seed_body()["event"]})

    assert request.subscription_ids == ()


def test_parse_request_delete_needs_only_the_event_id():
    request = parse_request(Action.DELETE, "brazetest", {"event": {"eventId": "Event_0001_user42"}})

    assert dict(request.event) == {"eventId": "Event_0001_user42"}


def test_parse_request_delete_without_event_id_fails():
    assert invalid({"event": {}}, action=Action.DELETE) == {"event.eventId": "is required"}


def test_decode_body_explains_liquid_quote_errors_with_position():
    raw = b'{"event": {"title": "Say "hi""}}'

    with pytest.raises(InvalidJson) as caught:
        decode_body(raw)

    assert "line 1 column 27" in caught.value.message
    assert "json_escape" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"", "empty"), (b"\xff\xfe{}", "not UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")],
)
def test_decode_body_rejects(raw: bytes, needle: str):
    with pytest.raises((InvalidJson, PayloadTooLarge)) as caught:
        decode_body(raw)

    assert needle in str(caught.value)


def test_decode_body_refuses_bodies_over_256_kib():
    raw = json.dumps({"pad": "x" * MAX_BODY_BYTES}).encode()

    with pytest.raises(PayloadTooLarge):
        decode_body(raw)
