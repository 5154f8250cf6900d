"""Rokt Calendar's outbound webhooks (v2), as the sandbox sends them.

Like Rokt (docs/design.md, "The Rokt sandbox"): every registered endpoint whose event
types match gets ``POST {"eventId": <uuid>, "eventType", "eventDetails"}``; any 2xx is success and
anything else (3xx included), a timeout or a refused connection is retried on a schedule — every
``retry_every`` minutes for ``retry_for`` minutes, compressed by ``time_scale`` for local use — with
the same ``eventId``; a per-endpoint history shows every attempt. Knobs Rokt does not document but
may do: ``redeliver`` an event again, and ``hold`` deliveries then ``release`` them in reverse order.

Targets must be loopback URLs: the sandbox never sends anywhere else.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from localworld.httpkit import is_loopback_url

if TYPE_CHECKING:
    from collections.abc import Callable

EVENT_TYPES = (
    "Subscribe",
    "Unsubscribe",
    "SubscriptionDetailsUpdated",
    "SubscriptionEventAdded",
    "SubscriptionEventUpdated",
    "SubscriptionEventRemoved",
    "SubscriptionEventDeleted",
    "Test",
)
DEFAULT_RETRY_EVERY_MINUTES = 3.0
DEFAULT_RETRY_FOR_MINUTES = 30.0
DEFAULT_TIME_SCALE = 1 / 60  # a Rokt minute is a local second
ATTEMPT_TIMEOUT_SECONDS = 10.0


@dataclass
class Endpoint:
    id: str
    url: str
    event_types: frozenset[str]
    history: list[dict[str, Any]] = field(default_factory=list)

    def wants(self, event_type: str) -> bool:
        return event_type == "Test" or not self.event_types or event_type in self.event_types

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "eventTypes": sorted(self.event_types), "history": self.history}


@dataclass
class _Job:
    endpoint: Endpoint
    envelope: dict[str, Any]
    entry: dict[str, Any]


class WebhookDispatcher:
    """Queues envelopes per endpoint and delivers them from one background thread, in due order."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self._clock = clock
        self._session = session or requests.Session()
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._held: list[_Job] = []
        self._in_flight = 0
        self._stopped = False
        self.endpoints: dict[str, Endpoint] = {}
        self.sent: dict[str, dict[str, Any]] = {}
        self.hold = False
        self.retry_every = DEFAULT_RETRY_EVERY_MINUTES
        self.retry_for = DEFAULT_RETRY_FOR_MINUTES
        self.time_scale = DEFAULT_TIME_SCALE
        self.attempt_timeout = ATTEMPT_TIMEOUT_SECONDS
        self._thread = threading.Thread(target=self._run, name="rokt-webhooks", daemon=True)
        self._thread.start()

    # --- registration ---------------------------------------------------------------------
    def register(self, url: str, event_types: list[str] | None = None) -> Endpoint:
        if not is_loopback_url(url):
            raise ValueError("webhook URLs must be loopback (127.0.0.0/8, ::1, localhost) in the sandbox")
        unknown = set(event_types or ()) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; known: {', '.join(EVENT_TYPES)}")
        with self._lock:
            endpoint = Endpoint(uuid.uuid4().hex[:12], url, frozenset(event_types or ()))
            self.endpoints[endpoint.id] = endpoint
        return endpoint

    def unregister(self, endpoint_id: str) -> bool:
        with self._lock:
            return self.endpoints.pop(endpoint_id, None) is not None

    def configure(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.retry_every = float(data.get("retryEveryMinutes", self.retry_every))
            self.retry_for = float(data.get("retryForMinutes", self.retry_for))
            self.time_scale = float(data.get("timeScale", self.time_scale))
            self.attempt_timeout = float(data.get("attemptTimeout", self.attempt_timeout))

    def reset(self) -> None:
        with self._lock:
            self.endpoints.clear()
            self.sent.clear()
            self._heap.clear()
            self._held.clear()
            self.hold = False

    # --- sending --------------------------------------------------------------------------
    def emit(self, event_type: str, details: dict[str, Any]) -> dict[str, Any]:
        """Build the envelope for one happening and queue it for every interested endpoint."""
        envelope: dict[str, Any] = {"eventId": str(uuid.uuid4()), "eventType": event_type, "eventDetails": details}
        with self._lock:
            self.sent[envelope["eventId"]] = envelope
            for endpoint in self.endpoints.values():
                if endpoint.wants(event_type if event_type in EVENT_TYPES else "SubscriptionDetailsUpdated"):
                    self._queue(endpoint, envelope)
        return envelope

    def redeliver(self, event_id: str) -> int:
        """Send an event already sent once again, same ``eventId`` (Rokt's dashboard re-send)."""
        with self._lock:
            envelope = self.sent.get(event_id)
            if envelope is None:
                raise KeyError(f"no webhook event {event_id!r} was sent")
            targets = [e for e in self.endpoints.values() if e.wants(str(envelope["eventType"]))]
            for endpoint in targets:
                self._queue(endpoint, envelope)
        return len(targets)

    def release(self, order: str = "reverse") -> int:
        """Stop holding; what was held goes out now, newest first when ``order`` is reverse."""
        with self._lock:
            held, self._held, self.hold = self._held, [], False
            for job in reversed(held) if order == "reverse" else held:
                self._push(self._clock(), job)
            return len(held)

    def idle(self) -> bool:
        """Nothing due and nothing being sent (held deliveries wait for `release`)."""
        with self._lock:
            return not self._heap and not self._in_flight

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _queue(self, endpoint: Endpoint, envelope: dict[str, Any]) -> None:
        entry = {"eventId": envelope["eventId"], "eventType": envelope["eventType"], "attempts": [], "state": "pending"}
        endpoint.history.append(entry)
        job = _Job(endpoint, envelope, entry)
        if self.hold:
            entry["state"] = "held"
            self._held.append(job)
        else:
            self._push(self._clock(), job)

    def _push(self, due: float, job: _Job) -> None:
        job.entry["state"] = "pending"
        heapq.heappush(self._heap, (due, next(self._seq), job))
        self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._lock.wait(timeout=wait)
                if self._stopped:
                    return
                _, _, job = heapq.heappop(self._heap)
                self._in_flight += 1
            try:
                self._attempt(job)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _attempt(self, job: _Job) -> None:
        status, error = 0, None
        try:
            response = self._session.post(
                job.endpoint.url, json=job.envelope, timeout=self.attempt_timeout, allow_redirects=False
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
        with self._lock:
            job.entry["attempts"].append({"status": status, **({"error": error} if error else {})})
            if 200 <= status < 300:
                job.entry["state"] = "delivered"
                return
            if len(job.entry["attempts"]) > self.retry_for // self.retry_every:
                job.entry["state"] = "failed"  # Rokt gives up; a person may re-send from the dashboard
                return
            self._push(self._clock() + self.retry_every * self.time_scale, job)
