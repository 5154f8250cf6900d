"""Braze on both sides of the bridge: ``/users/track`` (the Braze sandbox's own model,
``localworld.braze_sandbox.BrazeState``, behind the seed's faults) and Braze's webhook sender (each
copy of an intent sent, then retried as Braze documents: 408, 429 and 5xx up to 5 times, waiting
60 s doubling, or the answer's ``Retry-After`` when longer)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localworld.braze_sandbox import BrazeState
from tests.simulation.network import Answer

if TYPE_CHECKING:
    import requests

    from tests.simulation.world import World

BRAZE_HOST = "rest.braze.sim"
BRAZE_KEY = "sim-braze-rest-key-0123456789"
RETRIED = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRIES = 5
FIRST_BACKOFF_SECONDS = 60.0
# Objects Braze refuses for good, whatever the moment: an identity it cannot take.
REFUSED_MARK = "refused-by-braze"
SIMULATED_REFUSAL = "simulated refusal of this object"


class BrazeModel:
    def __init__(self, world: World) -> None:
        self.world = world
        self.state = BrazeState((BRAZE_KEY,), clock=world.epoch)
        self.calls = 0

    def exchange(self, request: requests.PreparedRequest) -> Answer:
        world = self.world
        self.calls += 1
        fault = world.faults.http("braze")
        kind = fault.kind if fault is not None else ""
        latency = world.faults.latency("braze")
        if kind == "refused":
            return Answer(refused=True)
        if kind == "syn_lost":
            return Answer(syn_lost=True)
        if fault is not None and kind == "status":
            headers = {}
            if fault.status == 429:
                headers["X-RateLimit-Reset"] = str(int(world.epoch() + float(fault.retry_after or 30)))
            return Answer(fault.status, {"message": "simulated"}, headers, latency=latency)
        scheme, _, key = str(request.headers.get("Authorization") or "").partition(" ")
        with self.state.lock:
            authorized = scheme.lower() == "bearer" and key.strip() in self.state.api_keys
        if not authorized:
            return Answer(401, {"message": "Invalid API key"}, latency=latency)
        applies = kind != "hang" or world.faults.rng.random() < 0.5
        answer: Any
        status, answer = 0, {}  # a hang that was never applied answers nothing
        if applies:
            status, answer = self._track(request, refuse_some=kind == "object_errors")
        reply = Answer(status, answer, latency=latency)
        if fault is not None:
            try:
                keys = _identities(json.loads(request.body or b""))
            except (ValueError, TypeError):
                keys = ()
            world.trace.add("braze", f"/users/track meets {fault.describe().split(' 0')[0]}", keys=keys)
            reply.latency += fault.latency
            reply.hang = kind == "hang"
            reply.drop = kind == "drop"
            reply.drip = 0.6 if kind == "drip" else 0.0
        return reply

    def _track(self, request: requests.PreparedRequest, *, refuse_some: bool) -> tuple[int, Any]:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode("utf-8")
        try:
            payload = json.loads(body.decode("utf-8"))
        except ValueError:
            return 400, {"message": "Invalid JSON"}
        refused: list[dict[str, Any]] = []
        if isinstance(payload, dict):
            for kind in ("attributes", "events"):
                objects = payload.get(kind)
                if not isinstance(objects, list):
                    continue
                kept = []
                for index, item in enumerate(objects):
                    if _refused(item) or (refuse_some and self.world.faults.rng.random() < 0.3):
                        refused.append({"type": SIMULATED_REFUSAL, "input_array": kind, "index": index})
                    else:
                        kept.append(item)
                payload[kind] = kept
        with self.state.lock:
            status, answer = self.state.track(payload)
        if refused and 200 <= status < 300:
            answer = {**answer, "errors": [*answer.get("errors", []), *refused]}
        self.world.trace.add("braze", f"/users/track {status}: {_summary(payload)}", keys=_identities(payload))
        return status, answer

    def profile_values(self) -> dict[str, dict[str, list[str]]]:
        """Each profile's rokt:* values, by its identity (``external_id:...`` or ``email:...``)."""
        found: dict[str, dict[str, list[str]]] = {}
        for profile in self.state.profiles.values():
            who = f"external_id:{profile.external_id}" if profile.external_id else f"email:{profile.email}"
            found[who] = {
                k: list(v) for k, v in profile.attributes.items() if k.startswith("rokt:") and isinstance(v, list) and v
            }
        return found

    def custom_events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (f"external_id:{p.external_id}" if p.external_id else f"email:{p.email}", e)
            for p in self.state.profiles.values()
            for e in p.events
        ]


def _refused(item: Any) -> bool:
    return isinstance(item, dict) and any(REFUSED_MARK in str(item.get(k, "")) for k in ("external_id", "email"))


def _identities(payload: Any) -> tuple[str, ...]:
    found: list[str] = []
    if isinstance(payload, dict):
        for kind in ("attributes", "events"):
            for item in payload.get(kind) or []:
                if isinstance(item, dict):
                    for name in ("external_id", "email"):
                        if item.get(name):
                            found.append(f"{name}:{item[name]}")
                    for value in (
                        item.get("rokt:subscription_id", {}).get("add", [])
                        if isinstance(item.get("rokt:subscription_id"), dict)
                        else []
                    ):
                        found.append(str(value))
                    properties = item.get("properties")
                    if isinstance(properties, dict) and properties.get("subscription_id"):
                        found.append(str(properties["subscription_id"]))
    return tuple(dict.fromkeys(found))


def _summary(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "?"
    events = [e.get("name") for e in payload.get("events") or [] if isinstance(e, dict)]
    return f"{len(payload.get('attributes') or [])} attribute objects, events {events}"


@dataclass
class Attempt:
    at: float
    status: int
    seconds: float
    answer: Any = None
    perceived: float = 0.0  # when it arrived by the clock of the container that received it
    invocation: str = ""  # the API invocation that answered it


@dataclass
class Copy:
    """One copy of an intent as Braze sends it (the first send, or a duplicate), with its retries."""

    intent: Intent
    number: int
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> int:
        return self.attempts[-1].status if self.attempts else 0

    @property
    def accepted(self) -> Attempt | None:
        """The attempt the bridge took responsibility for (2xx), if any."""
        return next((a for a in self.attempts if 200 <= a.status < 300), None)


@dataclass
class Intent:
    """What a marketer's campaign asks for one event at one moment: ``op`` with a body; ``tag`` names
    its content (two intents with the same content share it), ``hostile`` says why the body is bad."""

    key: tuple[str, str]
    op: str
    path: str
    body: Any
    at: float
    tag: str | None = None
    copies: int = 1
    hostile: str | None = None
    sent: list[Copy] = field(default_factory=list)


def braze_wait(retry: int, retry_after: str | None) -> float:
    """Braze's wait before retry ``retry`` (0-based): 60 s doubling, or a longer Retry-After."""
    wait = FIRST_BACKOFF_SECONDS * 2.0**retry
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, float(retry_after))
    return wait
