"""Use cases: deliver one validated event request to Rokt, or show what would be sent.

Depends only on the models, the errors and a CalendarApi port, so it runs unchanged against the real
Rokt client, the sandbox, or an in-memory fake.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from chalicelib.clock import Deadline
    from chalicelib.delivery.models import EventRequest
    from chalicelib.rokt.events import EventCall, UpstreamRequest, UpstreamResult

Status = Literal["delivered", "queued", "superseded"]


class CalendarApi(Protocol):
    def plan(self, request: EventCall) -> UpstreamRequest: ...

    def send(self, plan: UpstreamRequest, deadline: Deadline) -> UpstreamResult: ...


class Deliverer(Protocol):
    """What takes a validated webhook from the route or the queue: delivery now (exactly once), the
    delivery queue (queued intake), or delivery with the queue behind it (spill)."""

    def deliver(
        self,
        request: EventRequest,
        deadline: Deadline,
        lambda_context: Any = None,
        received_at: float | None = None,
    ) -> DeliveryOutcome: ...


@dataclass(frozen=True)
class DeliveryOutcome:
    """The final word on one webhook; stored in its event's state and replayed for duplicates."""

    status: Status
    action: str
    account_code: str
    event_id: str
    upstream_status: int
    attempts: int = 1
    upstream_body: Any = None
    upstream_ms: float = 0.0
    duplicate: bool = False
    reason: str | None = None  # why a direct-mode webhook was queued instead (see spill)
    received_at: float | None = None  # when the intent this outcome answered reached the bridge

    @property
    def reached_rokt(self) -> bool:
        """False for an intake that only queued the request, or an intent older than Rokt's state."""
        return self.status == "delivered"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "action": self.action,
            "accountCode": self.account_code,
            "eventId": self.event_id,
            "upstreamStatus": self.upstream_status,
            "attempts": self.attempts,
            "upstreamBody": self.upstream_body,
            "upstreamMs": self.upstream_ms,
            "duplicate": self.duplicate,
            "receivedAt": self.received_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryOutcome:
        return cls(
            status=data["status"],
            action=data["action"],
            account_code=data["accountCode"],
            event_id=data["eventId"],
            upstream_status=int(data["upstreamStatus"]),
            attempts=int(data.get("attempts", 1)),
            upstream_body=data.get("upstreamBody"),
            upstream_ms=float(data.get("upstreamMs", 0.0)),
            duplicate=bool(data.get("duplicate", False)),
            received_at=data.get("receivedAt"),
        )


class DeliveryService:
    """Turns an EventRequest into one Rokt call and a DeliveryOutcome."""

    def __init__(self, api: CalendarApi, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock

    def preview(self, request: EventRequest) -> UpstreamRequest:
        return self._api.plan(request)

    def deliver(self, request: EventRequest, deadline: Deadline) -> DeliveryOutcome:
        """Deliver ``request``; every failure raises, a refusal by Rokt (RoktRejected) included, so
        nothing is remembered: Braze's retry, or a corrected re-send, can succeed."""
        plan = self._api.plan(request)
        started = self._clock()
        result = self._api.send(plan, deadline)
        return DeliveryOutcome(
            status="delivered",
            action=request.action.value,
            account_code=request.account_code,
            event_id=request.event_id,
            upstream_status=result.status,
            attempts=result.attempts,
            upstream_ms=self._elapsed_ms(started),
        )

    def _elapsed_ms(self, started: float) -> float:
        return round((self._clock() - started) * 1000, 1)
