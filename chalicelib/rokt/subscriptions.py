"""Rokt Calendar's subscriptions API: ``GET /v1/subscription/{subscriptionId}``, a subscription's
current state (subscriber id, e-mail, calendar, tags, opt-ins, ``isActive``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chalicelib.errors import UpstreamFailed
from chalicelib.rokt.transport import check

if TYPE_CHECKING:
    from chalicelib.clock import Deadline
    from chalicelib.rokt.transport import RoktTransport


def subscription_path(subscription_id: str) -> str:
    return f"/v1/subscription/{quote(subscription_id, safe='')}"


class RoktSubscriptionsClient:
    """Reads subscriptions with the same transport (and token cache) as the events client."""

    def __init__(self, transport: RoktTransport) -> None:
        self._transport = transport

    def get(self, subscription_id: str, deadline: Deadline) -> dict[str, Any] | None:
        """The subscription as Rokt reports it now; None when Rokt does not know it (404)."""
        url = self._transport.base_url + subscription_path(subscription_id)
        exchange = self._transport.call("GET", url, None, deadline)
        if exchange.response.status_code == 404:
            return None
        check(exchange.response)
        try:
            found = exchange.response.json()
        except ValueError as exc:
            raise UpstreamFailed("Rokt answered the subscription read without JSON") from exc
        if not isinstance(found, dict):
            raise UpstreamFailed("Rokt answered the subscription read with something other than an object")
        return found
