"""Calendar subscriptions in the Rokt sandbox, and the webhook payloads each change sends.

``to_api`` is ``GET /v1/subscription/{id}`` (the fields of Rokt's API reference; ``countryCode``, ``geoCountry``,
``deviceName`` and ``source`` are extras it does not list, present when known). The payloads are Rokt's
v2 webhooks (docs/design.md, "The Rokt sandbox"), including the documented oddities a receiver must survive:
``calendarSubscriptionId`` at ``eventDetails`` level on Unsubscribe, ``removedDateTimeUtc`` as
"YYYY-MM-DD HH:MM:SS.ffffff", ``Webcal`` in webhooks but ``WebCal`` in the API, and (by config) the
``SubscriptionDetailsUpdate`` spelling of the docs' example, and (by config) each time Rokt sends
in another of its formats: ISO 8601 with ``Z`` (the default), with an offset, without a zone, or
"YYYY-MM-DD HH:MM:SS.ffffff" (no zone: UTC).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localworld.rokt_outbound import WebhookDispatcher

METHODS = {"webcal": "Webcal", "google": "Google", "microsoft": "Microsoft"}
_NAMESPACE = uuid.UUID("8a3e5c1e-6f4b-4d8a-9a55-2f8f3d1b7c10")


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


TIME_FORMATS = ("iso", "offset", "naive", "space")
_OFFSET = dt.timezone(dt.timedelta(hours=10))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rokt_time(moment: dt.datetime, time_format: str) -> str:
    """``moment`` as Rokt may write it: ``iso`` (…Z), ``offset`` (…+10:00), ``naive`` (ISO, no zone,
    UTC) or ``space`` ("YYYY-MM-DD HH:MM:SS.ffffff", UTC)."""
    utc = moment.astimezone(dt.UTC)
    if time_format == "offset":
        return utc.astimezone(_OFFSET).isoformat(timespec="seconds")
    if time_format == "naive":
        return utc.replace(tzinfo=None).isoformat(timespec="seconds")
    if time_format == "space":
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Subscription:
    id: str
    account_code: str
    calendar_code: str
    calendar_title: str
    method: str
    subscriber_id: str | None = None
    email: str | None = None
    tags: list[str] = field(default_factory=list)
    marketing_allowed: bool = False
    additional_opt_in: bool = False
    country_code: str | None = None
    geo_country: str | None = None
    device_name: str | None = None
    source: str | None = None
    timezone_id: str = "Eastern Standard Time"
    created: dt.datetime = field(default_factory=_now)
    is_active: bool = True
    deactivated: dt.datetime | None = None
    events: list[str] = field(default_factory=list)
    time_format: str = "iso"

    @property
    def created_at(self) -> str:
        return rokt_time(self.created, self.time_format)

    @property
    def deactivated_date(self) -> str | None:
        return None if self.deactivated is None else rokt_time(self.deactivated, self.time_format)

    @property
    def account_id(self) -> str:
        return _stable_id("account", self.account_code)

    @property
    def account_name(self) -> str:
        return self.account_code.replace("-", " ").title()

    @property
    def calendar_id(self) -> str:
        return _stable_id("calendar", self.account_code, self.calendar_code)

    def tag_objects(self) -> list[dict[str, str]]:
        return [{"id": _stable_id("tag", self.calendar_id, name), "name": name} for name in self.tags]

    def to_api(self) -> dict[str, Any]:
        """``GET /v1/subscription/{subscriptionId}``."""
        answer: dict[str, Any] = {
            "subscriptionId": self.id,
            "calendar": {
                "id": self.calendar_id,
                "code": self.calendar_code,
                "name": self.calendar_title,
                "image": None,
            },
            "tags": self.tag_objects(),
            "timezoneId": self.timezone_id,
            "subscriptionType": "WebCal" if self.method == "Webcal" else self.method,
            "marketingAllowed": self.marketing_allowed,
            "additionalOptIn": self.additional_opt_in,
            "allowPromotionalContent": self.marketing_allowed,
            "createdAt": self.created_at,
            "isActive": self.is_active,
            "deactivatedDate": self.deactivated_date,
            "events": list(self.events),
            "eventsVisibleToSubscription": len(self.events),
            "providerName": None,
            "accountCode": self.account_code,
        }
        optional = {
            "subscriberId": self.subscriber_id,
            "emailAddress": self.email,
            "countryCode": self.country_code,
            "geoCountry": self.geo_country,
            "deviceName": self.device_name,
            "source": self.source,
        }
        answer.update({k: v for k, v in optional.items() if v is not None})
        return answer

    def basic(self) -> dict[str, Any]:
        """The "Subscription Basic" object of webhook payloads."""
        return {
            "calendarSubscriptionId": self.id,
            "calendarId": self.calendar_id,
            "calendarTitle": self.calendar_title,
            "calendarCode": self.calendar_code,
            "subscriptionMethod": self.method,
        }

    def details(self) -> dict[str, Any]:
        """The "Subscription Details" object: Basic plus tags."""
        return {**self.basic(), "calendarTags": [{"tagId": t["id"], "name": t["name"]} for t in self.tag_objects()]}

    def envelope_details(self, action_type: str, **members: Any) -> dict[str, Any]:
        return {
            "actionType": action_type,
            "accountId": self.account_id,
            "accountName": self.account_name,
            "accountCode": self.account_code,
            **members,
        }


class Subscriptions:
    """The sandbox's subscriptions; every change is announced to the outbound webhooks."""

    def __init__(self, webhooks: WebhookDispatcher) -> None:
        self._webhooks = webhooks
        self._by_id: dict[str, Subscription] = {}
        self.details_updated_type = "SubscriptionDetailsUpdated"
        self.time_format = "iso"

    def get(self, subscription_id: str) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def all(self) -> list[Subscription]:
        return list(self._by_id.values())

    def subscribe(self, data: dict[str, Any]) -> Subscription:
        """A person pressed the calendar button (``POST /_sandbox/subscribe``)."""
        account, calendar = str(data["accountCode"]), str(data.get("calendarCode") or "sandbox-calendar")
        method = METHODS.get(str(data.get("method", "google")).lower())
        if method is None:
            raise ValueError(f"method must be one of {', '.join(METHODS.values())}")
        subscription = Subscription(
            id=str(data.get("subscriptionId") or uuid.uuid4()),
            account_code=account,
            calendar_code=calendar,
            calendar_title=str(data.get("calendarTitle") or calendar.replace("-", " ").title()),
            method=method,
            subscriber_id=_optional(data, "subscriberId"),
            email=_optional(data, "email"),
            tags=[str(t) for t in data.get("tags") or []],
            marketing_allowed=bool(data.get("optIn1", False)),
            additional_opt_in=bool(data.get("optIn2", False)),
            country_code=_optional(data, "countryCode"),
            geo_country=_optional(data, "geoCountry"),
            device_name=_optional(data, "deviceName"),
            source=_optional(data, "source"),
            time_format=self.time_format,
        )
        self._by_id[subscription.id] = subscription
        self._webhooks.emit(
            "Subscribe",
            subscription.envelope_details("SubscriptionViaCalendarPage", subscription=subscription.details()),
        )
        return subscription

    def unsubscribe(self, data: dict[str, Any]) -> Subscription:
        subscription = self._require(data)
        now = _now()
        subscription.is_active = False
        subscription.deactivated = now
        removed = {
            "removedDateTimeUtc": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "unsubscribeReasonText": str(data.get("reason") or "The event has come to an end"),
            "remoteIpAddress": "127.0.0.1",
            "countryCode": subscription.country_code,
            "geoCountry": subscription.geo_country,
            "userAgent": "Mozilla/5.0 (sandbox)",
        }
        self._webhooks.emit(
            "Unsubscribe",
            subscription.envelope_details(
                "SubscriptionViaCalendarPage", calendarSubscriptionId=subscription.id, subscription=removed
            ),
        )
        return subscription

    def update(self, data: dict[str, Any]) -> Subscription:
        subscription = self._require(data)
        if "tags" in data:
            subscription.tags = [str(t) for t in data["tags"] or []]
        if "method" in data:
            subscription.method = METHODS[str(data["method"]).lower()]
        if "subscriberId" in data:  # the subscription moves to another subscriber
            subscription.subscriber_id = _optional(data, "subscriberId")
        for key, attribute in (("optIn1", "marketing_allowed"), ("optIn2", "additional_opt_in")):
            if key in data:
                setattr(subscription, attribute, bool(data[key]))
        self._webhooks.emit(
            self.details_updated_type,
            subscription.envelope_details("SubscriptionViaCalendarPage", subscription=subscription.details()),
        )
        return subscription

    def forget(self, data: dict[str, Any]) -> Subscription:
        """Rokt no longer knows the subscription (``GET`` answers 404), and says nothing: no webhook."""
        subscription = self._require(data)
        del self._by_id[subscription.id]
        return subscription

    def events_added(self, account: str, event: dict[str, Any], subscription_ids: list[str]) -> None:
        """A calendar event reached these subscriptions (Rokt's "SubscriptionEventAdded")."""
        event_details = {k: event.get(k) for k in ("eventId", "title", "description", "location", "start", "end")}
        for subscription in self._known(account, subscription_ids):
            subscription.events.append(str(event["eventId"]))
            self._webhooks.emit(
                "SubscriptionEventAdded",
                subscription.envelope_details(
                    "SubscriptionViaWebApi", subscription=subscription.basic(), subscriptionEvent=event_details
                ),
            )

    def event_removed(self, account: str, subscription_id: str, event_id: str) -> None:
        for subscription in self._known(account, [subscription_id]):
            self._webhooks.emit(
                "SubscriptionEventRemoved",
                subscription.envelope_details(
                    "SubscriptionViaWebApi", subscription=subscription.basic(), subscriptionEvent={"eventId": event_id}
                ),
            )

    def test_details(self) -> dict[str, Any]:
        """Rokt does not document the Test payload; this one maps to no real object, as Rokt says."""
        return {"actionType": "Test", "accountId": _stable_id("account", "test"), "accountCode": "test-account"}

    def _known(self, account: str, subscription_ids: list[str]) -> list[Subscription]:
        found = (self._by_id.get(i) for i in subscription_ids)
        return [s for s in found if s is not None and s.account_code == account]

    def _require(self, data: dict[str, Any]) -> Subscription:
        subscription = self._by_id.get(str(data["subscriptionId"]))
        if subscription is None:
            raise KeyError(f"no subscription {data['subscriptionId']!r}")
        return subscription


def _optional(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if value not in (None, "") else None
