"""A local Rokt Calendar API for `make run` and the tests (the stripe-mock idea).

Behaves as Rokt documents it: client-credentials tokens that expire (300 s by default), Bearer checks
(401), JSON validation errors (400), 202 Accepted for events. It keeps what it received so a person
can look: ``GET /_sandbox/events`` (JSON) and ``GET /_sandbox/calendar/<subscriptionId>.ics``.

Subscriptions stand in for people pressing the calendar button (``POST /_sandbox/subscribe``); Rokt's
``GET /v1/subscription/{id}`` reads them back, and every subscribe, unsubscribe, details update and
calendar event added/removed is sent to the registered outbound webhooks (``localworld.rokt_outbound``).

Misbehaviour only on request, through the control API under ``/_sandbox/`` (see ``httpkit.Fault``).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tzlocal import windows_tz

from chalicelib.settings import APP_NAME
from localworld.httpkit import BackgroundServer, Fault, JsonHandler, LoopbackServer, take_fault, try_json
from localworld.rokt_outbound import WebhookDispatcher
from localworld.rokt_subscriptions import TIME_FORMATS, Subscriptions

DEFAULT_CLIENTS = {"local-client-id": "local-client-secret"}
REQUIRED_EVENT_FIELDS = ("eventId", "title", "start", "timezone")
FAULT_TARGETS = ("events", "token", "subscriptions")


@dataclass
class StoredEvent:
    account: str
    event: dict[str, Any]
    subscription_ids: list[str] = field(default_factory=list)
    deliveries: int = 0
    updates: int = 0
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "accountCode": self.account,
            "event": self.event,
            "subscriptionIds": self.subscription_ids,
            "deliveries": self.deliveries,
            "updates": self.updates,
            "deleted": self.deleted,
        }


class SandboxState:
    """Everything the sandbox knows, and Rokt's API as ``(status, body)`` answers: the HTTP handler
    below and the deterministic simulator (tests/simulation) drive the same model. One lock, because
    the server is threaded; the API methods expect the caller to hold it."""

    def __init__(self, token_ttl: float, clients: dict[str, str], webhooks: WebhookDispatcher | None = None) -> None:
        self.lock = threading.Lock()
        self.token_ttl = token_ttl
        self.clients = dict(clients)
        self.webhooks = webhooks or WebhookDispatcher()
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}
        self.events: dict[tuple[str, str], StoredEvent] = {}
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.subscriptions = Subscriptions(self.webhooks)
        self.webhooks.reset()

    def take_fault(self, target: str) -> Fault | None:
        with self.lock:
            return take_fault(self.faults, target)

    # --- Rokt's API (the caller holds the lock) ------------------------------------------------
    def issue_token(self, form: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """``POST /oauth2/token``: the client-credentials grant, Basic auth."""
        if parse_qs(form.decode("utf-8", "replace")).get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        credentials = _basic_credentials(authorization)
        if credentials is None or self.clients.get(credentials[0]) != credentials[1]:
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_ttl
        self.counts["tokens_issued"] += 1
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl)}

    def authorized(self, authorization: str | None) -> bool:
        """Is ``Authorization: Bearer <token>`` a token this sandbox issued and that has not expired?"""
        scheme, _, token = (authorization or "").partition(" ")
        expires_at = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires_at is not None and expires_at >= time.time()

    def subscription(self, subscription_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /v1/subscription/{id}``."""
        found = self.subscriptions.get(subscription_id)
        if found is None:
            return 404, {"error": "subscription_not_found", "subscriptionId": subscription_id}
        return 200, found.to_api()

    def create(self, account: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /v1/subscriptionevent/{accountCode}``: 202, processed (here: at once)."""
        payload = try_json(body)
        if not isinstance(payload, dict):
            payload = {}
        problems = _event_problems(payload.get("event"))
        ids = payload.get("subscriptionIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            problems.append("subscriptionIds must be a non-empty list of ids")
        if problems:
            return 400, {"error": "validation_error", "errors": problems}
        event = payload["event"]
        stored = self.events.setdefault((account, event["eventId"]), StoredEvent(account, event))
        ids = list(ids or ())
        earlier = set() if stored.deleted or not stored.deliveries else set(stored.subscription_ids)
        added = set(ids) - earlier
        stored.event, stored.deleted = event, False
        stored.subscription_ids = sorted(set(stored.subscription_ids) | set(ids))
        stored.deliveries += 1
        self.counts["events_created"] += 1
        self.subscriptions.events_added(account, event, sorted(added))
        return 202, {"status": "accepted"}

    def update(self, account: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /v1/subscriptionevent/{accountCode}/update``: the event wrapped or flat; 404 if unknown."""
        payload = try_json(body)
        event: Any = payload.get("event") if isinstance(payload, dict) and "event" in payload else payload
        problems = _event_problems(event)
        if problems:
            return 400, {"error": "validation_error", "errors": problems}
        stored = self.events.get((account, event["eventId"]))
        if stored is None or stored.deleted:
            return 404, {"error": "event_not_found", "eventId": event["eventId"]}
        stored.event = event
        stored.updates += 1
        self.counts["events_updated"] += 1
        return 202, {"status": "accepted"}

    def delete(self, account: str, event_id: str) -> tuple[int, dict[str, Any]]:
        """``DELETE /v1/subscriptionevent/{accountCode}/{eventId}``; 404 if unknown."""
        stored = self.events.get((account, event_id))
        if stored is None or stored.deleted:
            return 404, {"error": "event_not_found", "eventId": event_id}
        stored.deleted = True
        self.counts["events_deleted"] += 1
        return 202, {"status": "accepted"}

    def unsubscribe_event(self, account: str, subscription_id: str, event_id: str) -> tuple[int, dict[str, Any]]:
        """``DELETE /v2/subscription/{accountCode}/{subscriptionId}/subscriptionevent/{eventId}``."""
        stored = self.events.get((account, event_id))
        if stored is None or subscription_id not in stored.subscription_ids:
            return 404, {"error": "event_not_found"}
        stored.subscription_ids.remove(subscription_id)
        self.subscriptions.event_removed(account, subscription_id, event_id)
        return 202, {"status": "accepted"}


class _Handler(JsonHandler):
    server: LoopbackServer[SandboxState]

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw_segments = [s for s in parts.path.split("/") if s]
        segments = [unquote(s) for s in raw_segments]
        body = self.read_body()
        if segments and segments[0] == "_sandbox":
            self._control(method, segments[1:], body)
            return
        target = _target(segments)
        with self.state.lock:
            self.state.counts[f"{target}_requests"] += 1
            self.state.requests.append(
                {"method": method, "path": parts.path, "rawSegments": raw_segments, "body": try_json(body)}
            )
        fault = self.state.take_fault(target)
        if fault is not None:
            if fault.revoke:
                with self.state.lock:
                    self.state.tokens.clear()
            if self.apply_fault(fault):
                return
        authorization = self.headers.get("Authorization")
        with self.state.lock:
            status, answer = self._api(method, segments, body, authorization, parts.path)
        self.send_json(status, answer)

    def _api(
        self, method: str, segments: list[str], body: bytes, authorization: str | None, path: str
    ) -> tuple[int, Any]:
        state = self.state
        if segments == ["oauth2", "token"] and method == "POST":
            return state.issue_token(body, authorization)
        known = (
            (len(segments) >= 2 and segments[:2] == ["v1", "subscriptionevent"])
            or (len(segments) == 3 and segments[:2] == ["v1", "subscription"] and method == "GET")
            or (len(segments) == 6 and segments[:2] == ["v2", "subscription"] and method == "DELETE")
        )
        if not known:
            return 404, {"error": "not_found", "message": f"no route {method} {path}"}
        if not state.authorized(authorization):
            return 401, {"error": "invalid_token", "message": "the access token is missing, unknown or expired"}
        if segments[:2] == ["v1", "subscription"]:
            return state.subscription(segments[2])
        if segments[0] == "v2":
            return state.unsubscribe_event(segments[2], segments[3], segments[5])
        rest = segments[2:]
        if method == "POST" and len(rest) == 1:
            return state.create(rest[0], body)
        if method == "POST" and len(rest) == 2 and rest[1] == "update":
            return state.update(rest[0], body)
        if method == "DELETE" and len(rest) == 2:
            return state.delete(rest[0], rest[1])
        return 404, {"error": "not_found"}

    def _control(self, method: str, rest: list[str], body: bytes) -> None:
        """``/_sandbox/…``: inspect what was received and arm faults (never part of Rokt's API)."""
        if method == "GET" and len(rest) == 2 and rest[0] == "calendar" and rest[1].endswith(".ics"):
            self._calendar(rest[1][: -len(".ics")])
            return
        if method == "GET" and rest[:1] == ["events"] and len(rest) <= 2:
            with self.state.lock:
                events = [e.to_json() for e in self.state.events.values() if len(rest) == 1 or e.account == rest[1]]
            self.send_json(200, events)
            return
        self.run_control(_CONTROL_ACTIONS, method, rest, try_json(body) or {})

    def _calendar(self, subscription_id: str) -> None:
        with self.state.lock:
            events = [e for e in self.state.events.values() if subscription_id in e.subscription_ids and not e.deleted]
            text = to_icalendar(subscription_id, events)
        self.send_bytes(200, text.encode("utf-8"), "text/calendar; charset=utf-8")


def _target(segments: list[str]) -> str:
    if segments == ["oauth2", "token"]:
        return "token"
    return "subscriptions" if segments[:2] == ["v1", "subscription"] else "events"


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except ValueError:
        return None
    return user, password


def _event_problems(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["event must be an object"]
    problems = [f"{name} is required" for name in REQUIRED_EVENT_FIELDS if not event.get(name)]
    zone = event.get("timezone")
    if zone and zone not in windows_tz.win_tz:
        problems.append(f"timezone {zone!r} is not a supported Windows time zone id")
    notify = event.get("notifyBefore")
    if notify is not None and (not isinstance(notify, int) or isinstance(notify, bool) or notify < 0):
        problems.append("notifyBefore must be a non-negative number of minutes")
    return problems


def _ics_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _ics_time(local: str) -> str:
    return local.replace("-", "").replace(":", "")[:15]


def _fold(line: str) -> str:
    out, current = [], line
    while len(current.encode("utf-8")) > 75:
        cut = 75
        while len(current[:cut].encode("utf-8")) > 75:
            cut -= 1
        out.append(current[:cut])
        current = " " + current[cut:]
    out.append(current)
    return "\r\n".join(out)


def to_icalendar(subscription_id: str, events: list[StoredEvent]) -> str:
    """An RFC 5545 calendar of ``events`` as a subscriber's calendar app would fetch it."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:-//{APP_NAME}//sandbox//EN",
        f"X-WR-CALNAME:Rokt sandbox {subscription_id}",
    ]
    for stored in events:
        event = stored.event
        zone = event.get("timezoneIanaId") or windows_tz.win_tz.get(event.get("timezone", ""), "UTC")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{_ics_text(event['eventId'])}@{stored.account}.sandbox",
            f"DTSTAMP:{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
            f"DTSTART;TZID={zone}:{_ics_time(event['start'])}",
        ]
        if event.get("end"):
            lines.append(f"DTEND;TZID={zone}:{_ics_time(event['end'])}")
        lines.append(f"SUMMARY:{_ics_text(event['title'])}")
        for name, key in (("DESCRIPTION", "description"), ("LOCATION", "location")):
            if event.get(key):
                lines.append(f"{name}:{_ics_text(str(event[key]))}")
        if isinstance(event.get("notifyBefore"), int):
            lines += [
                "BEGIN:VALARM",
                "ACTION:DISPLAY",
                f"DESCRIPTION:{_ics_text(event['title'])}",
                f"TRIGGER:-PT{event['notifyBefore']}M",
                "END:VALARM",
            ]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


ControlAction = Callable[[SandboxState, dict[str, Any]], tuple[int, Any]]


def _stats(state: SandboxState, _: dict[str, Any]) -> tuple[int, Any]:
    return 200, {**state.counts, "faults_pending": len(state.faults)}


def _arm_fault(state: SandboxState, data: dict[str, Any]) -> tuple[int, Any]:
    state.faults.append(Fault.from_json(data, FAULT_TARGETS))
    return 201, {"status": "armed"}


def _clear_faults(state: SandboxState, _: dict[str, Any]) -> tuple[int, Any]:
    state.faults.clear()
    return 200, {"status": "cleared"}


def _revoke_tokens(state: SandboxState, _: dict[str, Any]) -> tuple[int, Any]:
    state.tokens.clear()
    return 200, {"status": "revoked"}


def _reset(state: SandboxState, _: dict[str, Any]) -> tuple[int, Any]:
    state.reset()
    return 200, {"status": "reset"}


def _configure(state: SandboxState, data: dict[str, Any]) -> tuple[int, Any]:
    if "tokenTtl" in data:
        state.token_ttl = float(data["tokenTtl"])
    if "clients" in data:
        state.clients = {str(k): str(v) for k, v in dict(data["clients"]).items()}
    if "detailsUpdatedType" in data:
        state.subscriptions.details_updated_type = str(data["detailsUpdatedType"])
    if "timeFormat" in data:
        if data["timeFormat"] not in TIME_FORMATS:
            return 400, {"error": f"timeFormat must be one of {', '.join(TIME_FORMATS)}"}
        state.subscriptions.time_format = str(data["timeFormat"])
    return 200, {"status": "configured"}


def _register_webhook(state: SandboxState, data: dict[str, Any]) -> tuple[int, Any]:
    endpoint = state.webhooks.register(str(data["url"]), list(data.get("eventTypes") or []))
    return 201, endpoint.to_json()


def _hold_webhooks(state: SandboxState, _: dict[str, Any]) -> tuple[int, Any]:
    state.webhooks.hold = True
    return 200, {"status": "holding"}


def _configure_webhooks(state: SandboxState, data: dict[str, Any]) -> tuple[int, Any]:
    state.webhooks.configure(data)
    return 200, {"status": "configured"}


_CONTROL_ACTIONS: dict[tuple[str, str], ControlAction] = {
    ("GET", "health"): lambda state, _: (200, {"status": "ok"}),
    ("GET", "stats"): _stats,
    ("GET", "requests"): lambda state, _: (200, list(state.requests)),
    ("POST", "faults"): _arm_fault,
    ("DELETE", "faults"): _clear_faults,
    ("POST", "revoke-tokens"): _revoke_tokens,
    ("POST", "reset"): _reset,
    ("POST", "config"): _configure,
    # people pressing the calendar button, changing preferences, unsubscribing
    ("POST", "subscribe"): lambda state, data: (201, state.subscriptions.subscribe(data).to_api()),
    ("POST", "unsubscribe"): lambda state, data: (200, state.subscriptions.unsubscribe(data).to_api()),
    ("POST", "subscriptions/update"): lambda state, data: (200, state.subscriptions.update(data).to_api()),
    ("POST", "subscriptions/forget"): lambda state, data: (200, state.subscriptions.forget(data).to_api()),
    ("GET", "subscriptions"): lambda state, _: (200, [s.to_api() for s in state.subscriptions.all()]),
    # Rokt's outbound webhooks (v2)
    ("POST", "webhooks"): _register_webhook,
    ("GET", "webhooks"): lambda state, _: (200, [e.to_json() for e in state.webhooks.endpoints.values()]),
    ("GET", "webhooks/sent"): lambda state, _: (200, list(state.webhooks.sent.values())),
    ("GET", "webhooks/idle"): lambda state, _: (200, {"idle": state.webhooks.idle()}),
    ("POST", "webhooks/test"): lambda state, _: (200, state.webhooks.emit("Test", state.subscriptions.test_details())),
    ("POST", "webhooks/redeliver"): lambda state, data: (
        200,
        {"endpoints": state.webhooks.redeliver(str(data["eventId"]))},
    ),
    ("POST", "webhooks/hold"): _hold_webhooks,
    ("POST", "webhooks/release"): lambda state, data: (
        200,
        {"released": state.webhooks.release(str(data.get("order", "reverse")))},
    ),
    ("POST", "webhooks/config"): _configure_webhooks,
}


class RoktSandbox(BackgroundServer[SandboxState]):
    """Run the sandbox in a background thread: ``with RoktSandbox() as sandbox: sandbox.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = 300.0,
        clients: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        state = SandboxState(token_ttl, clients or DEFAULT_CLIENTS)
        super().__init__(LoopbackServer((host, port), _Handler, state, verbose), "rokt-sandbox")

    def stop(self) -> None:
        self.state.webhooks.stop()
        super().stop()
