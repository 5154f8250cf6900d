"""A local Rokt Calendar API for `make run` and the tests (the stripe-mock idea).

Behaves as Rokt documents it: client-credentials tokens that expire (300 s by default), Bearer checks
(401), JSON validation errors (400), 202 Accepted for events. It keeps what it received so a person
can look: ``GET /_sandbox/events`` (JSON) and ``GET /_sandbox/calendar/<subscriptionId>.ics``.

Misbehaviour only on request, through the control API under ``/_sandbox/`` (see ``Fault``).
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tzlocal import windows_tz

DEFAULT_CLIENTS = {"local-client-id": "local-client-secret"}
MAX_FAULT_DELAY_SECONDS = 60.0
REQUIRED_EVENT_FIELDS = ("eventId", "title", "start", "timezone")


@dataclass
class Fault:
    """One injected misbehaviour: applies to the next ``count`` matching requests.

    target: "token", "events" or "any"; status (with optional retry_after and body), delay
    (seconds before answering) and drop (close the connection without answering) combine;
    revoke invalidates every issued token first (the request then meets Rokt's own 401);
    after lets that many matching requests through before the fault starts.
    """

    target: str = "events"
    status: int | None = None
    retry_after: str | None = None
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    revoke: bool = False
    after: int = 0
    count: int = 1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        fault = cls(
            target=str(data.get("target", "events")),
            status=int(data["status"]) if data.get("status") is not None else None,
            retry_after=str(data["retryAfter"]) if data.get("retryAfter") is not None else None,
            body=data.get("body"),
            delay=min(float(data.get("delay", 0.0)), MAX_FAULT_DELAY_SECONDS),
            drop=bool(data.get("drop", False)),
            revoke=bool(data.get("revoke", False)),
            after=int(data.get("after", 0)),
            count=int(data.get("count", 1)),
        )
        if fault.target not in ("token", "events", "any"):
            raise ValueError("target must be token, events or any")
        return fault


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
    """Everything the sandbox knows; guarded by one lock because the server is threaded."""

    def __init__(self, token_ttl: float, clients: dict[str, str]) -> None:
        self.lock = threading.Lock()
        self.token_ttl = token_ttl
        self.clients = dict(clients)
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, float] = {}
        self.events: dict[tuple[str, str], StoredEvent] = {}
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []

    def take_fault(self, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.target in (target, "any") and fault.count > 0:
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _SandboxServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; without this, Nagle + delayed ACK adds ~40 ms a call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw_segments = [s for s in parts.path.split("/") if s]
        segments = [unquote(s) for s in raw_segments]
        body = self._read_body()
        if segments and segments[0] == "_sandbox":
            self._control(method, segments[1:], body)
            return
        target = "token" if segments == ["oauth2", "token"] else "events"
        with self.state.lock:
            self.state.counts[f"{target}_requests"] += 1
            self.state.requests.append(
                {"method": method, "path": parts.path, "rawSegments": raw_segments, "body": _try_json(body)}
            )
        fault = self.state.take_fault(target)
        if fault is not None:
            if fault.revoke:
                with self.state.lock:
                    self.state.tokens.clear()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self.close_connection = True
                self.connection.close()
                return
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._json(fault.status, fault.body or {"error": "injected_fault", "status": fault.status}, headers)
                return
        if target == "token" and method == "POST":
            self._token(body)
        elif len(segments) >= 2 and segments[0] == "v1" and segments[1] == "subscriptionevent":
            self._events(method, segments[2:], body)
        elif len(segments) == 6 and segments[0] == "v2" and segments[1] == "subscription" and method == "DELETE":
            self._unsubscribe_event(segments[2], segments[3], segments[5])
        else:
            self._json(404, {"error": "not_found", "message": f"no route {method} {parts.path}"})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _token(self, body: bytes) -> None:
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            self._json(400, {"error": "unsupported_grant_type"})
            return
        credentials = _basic_credentials(self.headers.get("Authorization"))
        with self.state.lock:
            known = credentials is not None and self.state.clients.get(credentials[0]) == credentials[1]
            if not known:
                self._json(401, {"error": "invalid_client"})
                return
            token = secrets.token_urlsafe(24)
            self.state.tokens[token] = time.time() + self.state.token_ttl
            self.state.counts["tokens_issued"] += 1
        self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": int(self.state.token_ttl)})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        with self.state.lock:
            expires_at = self.state.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires_at is None or expires_at < time.time():
            self._json(401, {"error": "invalid_token", "message": "the access token is missing, unknown or expired"})
            return False
        return True

    def _events(self, method: str, rest: list[str], body: bytes) -> None:
        if not self._authorized():
            return
        if method == "POST" and len(rest) == 1:
            self._create(rest[0], body)
        elif method == "POST" and len(rest) == 2 and rest[1] == "update":
            self._update(rest[0], body)
        elif method == "DELETE" and len(rest) == 2:
            self._delete(rest[0], rest[1])
        else:
            self._json(404, {"error": "not_found"})

    def _create(self, account: str, body: bytes) -> None:
        payload = _try_json(body)
        if not isinstance(payload, dict):
            payload = {}
        problems = _event_problems(payload.get("event"))
        ids = payload.get("subscriptionIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            problems.append("subscriptionIds must be a non-empty list of ids")
        if problems:
            self._json(400, {"error": "validation_error", "errors": problems})
            return
        event = payload["event"]
        with self.state.lock:
            stored = self.state.events.setdefault((account, event["eventId"]), StoredEvent(account, event))
            stored.event, stored.deleted = event, False
            stored.subscription_ids = sorted(set(stored.subscription_ids) | set(ids or ()))
            stored.deliveries += 1
            self.state.counts["events_created"] += 1
        self._json(202, {"status": "accepted"})

    def _update(self, account: str, body: bytes) -> None:
        payload = _try_json(body)
        event: Any = payload.get("event") if isinstance(payload, dict) and "event" in payload else payload
        problems = _event_problems(event)
        if problems:
            self._json(400, {"error": "validation_error", "errors": problems})
            return
        with self.state.lock:
            stored = self.state.events.get((account, event["eventId"]))
            if stored is None or stored.deleted:
                self._json(404, {"error": "event_not_found", "eventId": event["eventId"]})
                return
            stored.event = event
            stored.updates += 1
            self.state.counts["events_updated"] += 1
        self._json(202, {"status": "accepted"})

    def _delete(self, account: str, event_id: str) -> None:
        with self.state.lock:
            stored = self.state.events.get((account, event_id))
            if stored is None or stored.deleted:
                self._json(404, {"error": "event_not_found", "eventId": event_id})
                return
            stored.deleted = True
            self.state.counts["events_deleted"] += 1
        self._json(202, {"status": "accepted"})

    def _unsubscribe_event(self, account: str, subscription_id: str, event_id: str) -> None:
        if not self._authorized():
            return
        with self.state.lock:
            stored = self.state.events.get((account, event_id))
            if stored is None or subscription_id not in stored.subscription_ids:
                self._json(404, {"error": "event_not_found"})
                return
            stored.subscription_ids.remove(subscription_id)
        self._json(202, {"status": "accepted"})

    def _control(self, method: str, rest: list[str], body: bytes) -> None:
        """``/_sandbox/…``: inspect what was received and arm faults (never part of Rokt's API)."""
        if method == "GET" and len(rest) == 2 and rest[0] == "calendar" and rest[1].endswith(".ics"):
            self._calendar(rest[1][: -len(".ics")])
            return
        if method == "GET" and rest[:1] == ["events"] and len(rest) <= 2:
            with self.state.lock:
                events = [e.to_json() for e in self.state.events.values() if len(rest) == 1 or e.account == rest[1]]
            self._json(200, events)
            return
        action = _CONTROL_ACTIONS.get((method, "/".join(rest)))
        if action is None:
            self._json(404, {"error": "not_found"})
            return
        try:
            with self.state.lock:
                status, payload = action(self.state, _try_json(body) or {})
        except (KeyError, TypeError, ValueError) as exc:
            status, payload = 400, {"error": "bad_request", "message": str(exc)}
        self._json(status, payload)

    def _calendar(self, subscription_id: str) -> None:
        with self.state.lock:
            events = [e for e in self.state.events.values() if subscription_id in e.subscription_ids and not e.deleted]
            text = to_icalendar(subscription_id, events)
        data = text.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _try_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


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
        "PRODID:-//rokt-calendar-bridge//sandbox//EN",
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
    state.faults.append(Fault.from_json(data))
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
}


class _SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.verbose = verbose

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, dropped connection) is expected here, not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class RoktSandbox:
    """Run the sandbox in a background thread: ``with RoktSandbox() as sandbox: sandbox.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = 300.0,
        clients: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.state = SandboxState(token_ttl, clients or DEFAULT_CLIENTS)
        self._host = host
        self._server = _SandboxServer((host, port), self.state, verbose)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rokt-sandbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> RoktSandbox:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> RoktSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
