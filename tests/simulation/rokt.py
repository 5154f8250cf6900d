"""Rokt as the simulated bridge meets it: its API (the Rokt sandbox's own model,
``localworld.rokt_sandbox.SandboxState``, behind the seed's faults) and its outbound webhooks (every
subscription change, sent to the bridge until a 2xx for 30 minutes, then given up; some sent again).

Two behaviours of the real Rokt the sandbox does not play and the simulator does: a create is
processed in the background, so Rokt answers 404 to an update or delete of an event whose create
it accepted moments ago; and a new subscription is readable only after a while.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localworld.rokt_sandbox import DEFAULT_CLIENTS, SandboxState
from tests.simulation.network import Answer, path_of

if TYPE_CHECKING:
    import requests

    from tests.simulation.world import World

ROKT_HOST = "api.rokt.sim"
RETRY_EVERY_SECONDS = 180.0
RETRY_FOR_SECONDS = 1800.0
HANG_APPLIES = 0.5  # a request that never gets an answer was applied this often


@dataclass(frozen=True)
class Applied:
    """One change Rokt made to a calendar event, and whether its answer may have been lost."""

    at: float
    operation: str
    key: tuple[str, str]
    tag: str | None
    answer_at_risk: bool
    invocation: str = ""


class Outbound:
    """Rokt's webhook dispatcher, as the sandbox's ``Subscriptions`` calls it: deterministic ids."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._ids = itertools.count(1)
        self.sent: list[dict[str, Any]] = []

    def emit(self, event_type: str, details: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        envelope = {
            "eventId": f"00000000-0000-4000-8000-{number:012d}",
            "eventType": event_type,
            "eventDetails": details,
        }
        self.sent.append(envelope)
        self._world.rokt_webhook(envelope)
        return envelope

    def reset(self) -> None:
        self.sent.clear()


@dataclass
class RoktModel:
    world: World
    outbound: Outbound
    state: SandboxState = field(init=False)
    applied: list[Applied] = field(default_factory=list)
    known_at: dict[tuple[str, str], float] = field(default_factory=dict)
    readable_at: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.state = SandboxState(300.0, DEFAULT_CLIENTS, webhooks=self.outbound)  # type: ignore[arg-type]

    # --- the API -----------------------------------------------------------------------------------
    def exchange(self, request: requests.PreparedRequest) -> Answer:
        world = self.world
        _, segments = path_of(str(request.url))
        method = str(request.method)
        target = "token" if segments == ["oauth2", "token"] else "events"
        if segments[:2] == ["v1", "subscription"]:
            target = "subscriptions"
        self.calls[target] += 1
        fault = world.faults.http(f"rokt.{target}")
        latency = world.faults.latency("rokt")
        kind = fault.kind if fault is not None else ""
        if kind == "refused":
            return Answer(refused=True)
        if kind == "syn_lost":
            return Answer(syn_lost=True)
        if fault is not None and kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return Answer(fault.status, {"error": "simulated", "status": fault.status}, headers, latency=latency)
        applies = kind != "hang" or world.faults.rng.random() < HANG_APPLIES
        status, body = self._api(
            method, segments, request, at_risk=kind in ("hang", "drop", "drip", "slow"), applies=applies
        )
        answer = Answer(status, body, latency=latency)
        if fault is not None:
            subject = segments[2] if target == "subscriptions" and len(segments) > 2 else ""
            world.trace.add("rokt", f"{method} {target} meets {kind}", keys=(subject,) if subject else ())
            answer.latency += fault.latency
            answer.hang = kind == "hang"
            answer.drop = kind == "drop"
            answer.drip = 0.6 if kind == "drip" else 0.0
        return answer

    def _api(
        self, method: str, segments: list[str], request: requests.PreparedRequest, *, at_risk: bool, applies: bool
    ) -> tuple[int, Any]:
        state = self.state
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode("utf-8")
        authorization = request.headers.get("Authorization")
        with state.lock:
            if segments == ["oauth2", "token"] and method == "POST":
                return state.issue_token(body, authorization) if applies else (500, None)
            if not state.authorized(authorization):
                return 401, {"error": "invalid_token"}
            if segments[:2] == ["v1", "subscription"] and len(segments) == 3:
                if self.world.scheduler.now < self.readable_at.get(segments[2], 0.0):
                    return 404, {"error": "subscription_not_found", "subscriptionId": segments[2]}
                return state.subscription(segments[2])
            if segments[:2] != ["v1", "subscriptionevent"] or len(segments) < 3 or not applies:
                return 404 if applies else 500, {"error": "not_found"}
            return self._event(method, segments[2], segments[3:], body, at_risk)

    def _event(self, method: str, account: str, rest: list[str], body: bytes, at_risk: bool) -> tuple[int, Any]:
        """Create, update or delete a calendar event; an update or delete of an event whose create is
        still processed is a 404, as Rokt answers it."""
        state, now = self.state, self.world.scheduler.now
        if method == "POST" and not rest:
            status, answer = state.create(account, body)
            key = (account, str(_event(body).get("eventId")))
            if 200 <= status < 300:
                self.known_at.setdefault(key, now + self.world.profile.rokt_processing_seconds())
                self._applied("create", key, _event(body).get("simTag"), at_risk)
            return status, answer
        operation = "update" if method == "POST" and rest == ["update"] else "delete"
        if operation == "delete" and (method != "DELETE" or len(rest) != 1):
            return 404, {"error": "not_found"}
        key = (account, str(_event(body).get("eventId")) if operation == "update" else rest[0])
        if now < self.known_at.get(key, 0.0):
            return 404, {"error": "event_not_found", "eventId": key[1]}
        status, answer = state.update(account, body) if operation == "update" else state.delete(account, rest[0])
        if 200 <= status < 300:
            self._applied(operation, key, _event(body).get("simTag") if operation == "update" else "delete", at_risk)
            if operation == "delete":
                self.known_at.pop(key, None)
        return status, answer

    def _applied(self, operation: str, key: tuple[str, str], tag: Any, at_risk: bool) -> None:
        invocation = self.world.scheduler.current.invocation
        entry = Applied(
            self.world.scheduler.now,
            operation,
            key,
            str(tag) if tag is not None else None,
            at_risk,
            invocation.name if invocation is not None else "",
        )
        self.applied.append(entry)
        self.world.trace.add("rokt", f"applied {operation} {tag}{' (answer at risk)' if at_risk else ''}", keys=key)

    # --- people and their subscriptions ------------------------------------------------------------
    def subscribe(self, subscription_id: str, readable_after: float, **fields: Any) -> None:
        self.readable_at[subscription_id] = self.world.scheduler.now + readable_after
        with self.state.lock:
            self.state.subscriptions.subscribe({"subscriptionId": subscription_id, **fields})

    def change(self, subscription_id: str, **fields: Any) -> None:
        """Tags, method or opt-ins change (``SubscriptionDetailsUpdated``); a new ``subscriberId`` moves
        the subscription to another person."""
        with self.state.lock:
            subscription = self.state.subscriptions.get(subscription_id)
            if subscription is None or not subscription.is_active:
                return
            if "subscriberId" in fields:
                subscription.subscriber_id = fields.pop("subscriberId")
            self.state.subscriptions.update({"subscriptionId": subscription_id, **fields})

    def unsubscribe(self, subscription_id: str) -> None:
        with self.state.lock:
            subscription = self.state.subscriptions.get(subscription_id)
            if subscription is not None and subscription.is_active:
                self.state.subscriptions.unsubscribe({"subscriptionId": subscription_id})

    def final_event(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """Rokt's state of one calendar event: its fields, or None when it does not exist (deleted)."""
        stored = self.state.events.get(key)
        return None if stored is None or stored.deleted else dict(stored.event)


def _event(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        return {}
    if isinstance(payload, dict) and isinstance(payload.get("event"), dict):
        event: dict[str, Any] = payload["event"]
        return event
    return payload if isinstance(payload, dict) else {}
