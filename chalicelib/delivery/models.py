"""What the delivery flow carries: the three Rokt operations a webhook asks for, and one validated
webhook as an :class:`EventRequest` (what :mod:`chalicelib.delivery.validation` makes of a body)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib import routes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chalicelib.rokt.events import Operation


class Action(enum.Enum):
    """The three Rokt operations the bridge exposes, named as the route suffix."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


def route_path(action: Action, account_code: str) -> str:
    """The bridge route a webhook for ``action`` is posted to, below the API stage."""
    route = {Action.CREATE: routes.CREATE, Action.UPDATE: routes.UPDATE, Action.DELETE: routes.DELETE}[action]
    return routes.path(route, account_code=account_code)


@dataclass(frozen=True)
class EventRequest:
    """One validated webhook: what to do, for which account, with the event as Rokt must receive it."""

    action: Action
    account_code: str
    event_id: str
    event: Mapping[str, Any]
    subscription_ids: tuple[str, ...] = ()
    unknown_fields: tuple[str, ...] = field(default=(), compare=False)

    @property
    def operation(self) -> Operation:
        """The Rokt events operation this request asks for."""
        return self.action.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "accountCode": self.account_code,
            "event": dict(self.event),
            "subscriptionIds": list(self.subscription_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRequest:
        """Inverse of ``to_dict`` for records we wrote ourselves (queue messages); no re-validation."""
        event = dict(data["event"])
        return cls(
            action=Action(data["action"]),
            account_code=str(data["accountCode"]),
            event_id=str(event["eventId"]),
            event=event,
            subscription_ids=tuple(data.get("subscriptionIds", ())),
        )
