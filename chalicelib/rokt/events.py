"""Rokt Calendar's events API: the only module that knows its paths and body shapes.

Calls go through :class:`~chalicelib.rokt.transport.RoktTransport`, whose retries are bounded by a
Deadline rather than by urllib3's Retry, because the budget must span the token call, retries and a
401 replay together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from chalicelib.errors import RoktRejected
from chalicelib.rokt.transport import check

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chalicelib.clock import Deadline
    from chalicelib.rokt.transport import RoktTransport
    from chalicelib.settings import UpdateShape


Operation = Literal["create", "update", "delete"]

# Rokt's answer to an update or delete of an event it does not know (yet).
UNKNOWN_EVENT_STATUS = 404


def refused_as_unknown(operation: Operation, exc: BaseException) -> bool:
    """Did Rokt refuse an update or delete because it does not know the event (e.g. its create has
    not reached Rokt yet)?"""
    return operation != "create" and isinstance(exc, RoktRejected) and exc.upstream_status == UNKNOWN_EVENT_STATUS


class EventCall(Protocol):
    """What a caller asks of Rokt's events API (the delivery flow's EventRequest is one)."""

    @property
    def operation(self) -> Operation: ...

    @property
    def account_code(self) -> str: ...

    @property
    def event_id(self) -> str: ...

    @property
    def event(self) -> Mapping[str, Any]: ...

    @property
    def subscription_ids(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class UpstreamRequest:
    """Exactly what will be sent to Rokt (without the Authorization header)."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "body": None if self.body is None else dict(self.body)}


@dataclass(frozen=True)
class UpstreamResult:
    status: int
    attempts: int = 1
    token_refreshed: bool = field(default=False)


def event_path(request: EventCall) -> str:
    """Rokt's path for ``request``, with every caller-supplied segment percent-encoded."""
    account = quote(request.account_code, safe="")
    if request.operation == "create":
        return f"/v1/subscriptionevent/{account}"
    if request.operation == "update":
        return f"/v1/subscriptionevent/{account}/update"
    # Delete's exact path is unconfirmed by Rokt (docs/design.md, "Rokt's event API"); change it here only.
    return f"/v1/subscriptionevent/{account}/{quote(request.event_id, safe='')}"


class RoktCalendarClient:
    """Plans event calls (the one place that knows their paths and body shapes) and sends them."""

    def __init__(self, transport: RoktTransport, *, update_shape: UpdateShape = "wrapped") -> None:
        self._transport = transport
        self._update_shape = update_shape

    def plan(self, request: EventCall) -> UpstreamRequest:
        url = self._transport.base_url + event_path(request)
        if request.operation == "create":
            body: dict[str, Any] | None = {
                "event": dict(request.event),
                "subscriptionIds": list(request.subscription_ids),
            }
            return UpstreamRequest("POST", url, body)
        if request.operation == "update":
            event = dict(request.event)
            return UpstreamRequest("POST", url, event if self._update_shape == "flat" else {"event": event})
        return UpstreamRequest("DELETE", url, None)

    def send(self, plan: UpstreamRequest, deadline: Deadline) -> UpstreamResult:
        """Send ``plan``; 2xx returns, anything else raises the matching BridgeError."""
        exchange = self._transport.call(plan.method, plan.url, plan.body, deadline)
        return UpstreamResult(
            status=check(exchange.response), attempts=exchange.attempts, token_refreshed=exchange.token_refreshed
        )
