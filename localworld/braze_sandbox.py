"""A local Braze REST API (``POST /users/track``) for `make run` and the tests.

Behaves as Braze documents it (docs/design.md, "The Braze sandbox"): Bearer REST key (401), up to 75 attribute,
event and purchase objects per call (400 "Max Input Length Exceeded" beyond), one identifier per
object (``external_id``, ``user_alias``, ``braze_id`` or ``email``), non-fatal per-object problems in
``errors`` of a 201 answer, array attributes as sets (a list replaces; ``{"add"}``/``{"remove"}``
edit, both at once allowed; re-adding moves an element to the end; at most 25 elements, the oldest
dropped), ``null`` removes an attribute, custom events appended and never deduplicated, and
``X-RateLimit-Limit/-Remaining/-Reset`` on every answer with 429 past the budget. Braze's refusals
on request (``/_sandbox/refusals``): the objects naming a user refused one by one in ``errors`` (its
per-object model), or the whole request refused with a 400 when it holds one (a fatal problem).

Profiles live in memory. Look at them, seed them and arm faults under ``/_sandbox/`` (never Braze's).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from localworld.httpkit import BackgroundServer, Fault, JsonHandler, LoopbackServer, take_fault, try_json

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_API_KEYS = ("local-braze-rest-key",)
MAX_OBJECTS = 75
DEFAULT_ARRAY_MAX = 25
DEFAULT_RATE_LIMIT = 50_000
DEFAULT_RATE_WINDOW_SECONDS = 60.0
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email")
# Keys of an attribute object that are not attributes.
_CONTROL_KEYS = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only", "push_token_import"})
# Braze's standard profile fields as Liquid names them (``${first_name}``…); everything else is custom.
STANDARD_ATTRIBUTES = frozenset(
    {"first_name", "last_name", "email", "time_zone", "country", "language", "phone", "gender", "dob", "home_city"}
)
FAULT_TARGETS = ("track",)


@dataclass(frozen=True)
class Refusal:
    """Braze refuses the objects naming ``user`` (an external_id or e-mail address), of ``input_array``
    (``attributes``/``events``) or of any kind: each in ``errors`` of a 201, or (``fatal``) the whole
    request with a 400."""

    user: str
    message: str
    fatal: bool = False
    input_array: str | None = None

    def refuses(self, kind: str, item: Any) -> bool:
        if self.input_array not in (None, kind) or not isinstance(item, dict):
            return False
        return self.user in (item.get("external_id"), str(item.get("email") or "").lower() or None)


@dataclass
class Profile:
    braze_id: str
    external_id: str | None = None
    aliases: list[dict[str, str]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def email(self) -> str | None:
        value = self.attributes.get("email")
        return str(value).lower() if value else None

    def to_json(self) -> dict[str, Any]:
        return {
            "braze_id": self.braze_id,
            "external_id": self.external_id,
            "user_aliases": self.aliases,
            "attributes": self.attributes,
            "custom_events": self.events,
            "purchases": self.purchases,
        }


class BrazeState:
    """Everything the sandbox knows; guarded by one lock because the server is threaded."""

    def __init__(
        self,
        api_keys: tuple[str, ...] = DEFAULT_API_KEYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.api_keys = set(api_keys)
        self.reset()

    def reset(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.faults: list[Fault] = []
        self.refusals: list[Refusal] = []
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.array_max = DEFAULT_ARRAY_MAX
        self.rate_limit = DEFAULT_RATE_LIMIT
        self.rate_window = DEFAULT_RATE_WINDOW_SECONDS
        self.window_started = self.clock()
        self.window_used = 0
        self._ids = itertools.count(1)

    # --- rate limit -------------------------------------------------------------------------
    def spend(self) -> tuple[bool, dict[str, str]]:
        """Count one request against the budget; (allowed, the X-RateLimit-* headers)."""
        now = self.clock()
        if now - self.window_started >= self.rate_window:
            self.window_started, self.window_used = now, 0
        allowed = self.window_used < self.rate_limit
        if allowed:
            self.window_used += 1
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - self.window_used, 0)),
            "X-RateLimit-Reset": str(int(self.window_started + self.rate_window + 0.999)),
        }
        return allowed, headers

    # --- profiles ---------------------------------------------------------------------------
    def by_external_id(self, external_id: str) -> Profile | None:
        return next((p for p in self.profiles.values() if p.external_id == external_id), None)

    def by_email(self, email: str) -> Profile | None:
        return next((p for p in self.profiles.values() if p.email == email.lower()), None)

    def by_alias(self, alias: dict[str, Any]) -> Profile | None:
        return next((p for p in self.profiles.values() if alias in p.aliases), None)

    def new_profile(self, **values: Any) -> Profile:
        profile = Profile(braze_id=f"braze-{next(self._ids):06d}-{uuid.uuid4().hex[:8]}", **values)
        self.profiles[profile.braze_id] = profile
        return profile

    def track(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """Apply one ``/users/track`` body as Braze would (the caller holds ``lock``): status and answer."""
        if not isinstance(payload, dict):
            return 400, {"message": "Invalid JSON: the body must be a JSON object"}
        kinds = {kind: payload.get(kind, []) for kind in ("attributes", "events", "purchases")}
        fatal = _fatal_problem(kinds) or self._fatal_refusal(kinds)
        if fatal is not None:
            return 400, fatal
        errors: list[dict[str, Any]] = []
        processed = Counter[str]()
        for kind, objects in kinds.items():
            for index, item in enumerate(objects):
                try:
                    processed[kind] += self._apply(kind, item)
                except _Refusal as exc:
                    errors.append({"type": str(exc), "input_array": kind, "index": index})
        self.counts["attributes_processed"] += processed["attributes"]
        self.counts["events_processed"] += processed["events"]
        answer: dict[str, Any] = {"message": "success"}
        for kind in ("attributes", "events", "purchases"):
            if kinds[kind]:
                answer[f"{kind}_processed"] = processed[kind]
        if errors:
            answer["errors"] = errors
        return 201, answer

    def _fatal_refusal(self, kinds: dict[str, Any]) -> dict[str, Any] | None:
        for refusal in self.refusals:
            if refusal.fatal and any(refusal.refuses(k, item) for k, objects in kinds.items() for item in objects):
                return {"message": refusal.message}
        return None

    def _apply(self, kind: str, item: Any) -> int:
        """Apply one object; 1 if processed, 0 if skipped (``_update_existing_only`` and no such user)."""
        if not isinstance(item, dict):
            raise _Refusal("each object must be a JSON object")
        refused = next((r for r in self.refusals if not r.fatal and r.refuses(kind, item)), None)
        if refused is not None:
            raise _Refusal(refused.message)
        profile = self._profile_for(item)
        if profile is None:
            return 0
        apply = {"attributes": self._apply_attributes, "events": self._apply_event, "purchases": self._apply_purchase}
        apply[kind](profile, item)
        return 1

    def _profile_for(self, item: dict[str, Any]) -> Profile | None:
        given = [name for name in IDENTIFIERS if item.get(name) not in (None, "")]
        if not given:
            raise _Refusal("a valid external_id, user_alias, braze_id or email is required")
        name = given[0]
        value = item[name]
        update_only = item.get("_update_existing_only")
        state = self
        if name == "braze_id":
            profile = state.profiles.get(str(value))
            if profile is None:
                raise _Refusal(f"braze_id {value!r} is not a known user")
            return profile
        if name == "user_alias":
            if not isinstance(value, dict) or not value.get("alias_name") or not value.get("alias_label"):
                raise _Refusal("user_alias needs alias_name and alias_label")
            profile = state.by_alias(value)
            if profile is None and update_only is False:
                profile = state.new_profile(
                    aliases=[{"alias_name": value["alias_name"], "alias_label": value["alias_label"]}]
                )
            return profile
        if not isinstance(value, str):
            raise _Refusal(f"{name} must be a string")
        profile = state.by_external_id(value) if name == "external_id" else state.by_email(value)
        if profile is None and not update_only:
            profile = (
                state.new_profile(external_id=value)
                if name == "external_id"
                else state.new_profile(attributes={"email": value})
            )
        return profile

    def _apply_attributes(self, profile: Profile, item: dict[str, Any]) -> None:
        for key, value in item.items():
            if key in _CONTROL_KEYS:
                continue
            if value is None:
                profile.attributes.pop(key, None)
            elif isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
                profile.attributes[key] = self._edit_array(profile.attributes.get(key), value)
            elif isinstance(value, list):
                profile.attributes[key] = list(dict.fromkeys(_scalar(v) for v in value))[: self.array_max]
            else:
                profile.attributes[key] = value

    def _edit_array(self, current: Any, change: dict[str, Any]) -> list[Any]:
        items = list(current) if isinstance(current, list) else []
        for added in change.get("add") or []:
            value = _scalar(added)
            if value in items:
                items.remove(value)
            items.append(value)
        removed = {json.dumps(_scalar(v)) for v in change.get("remove") or []}
        items = [v for v in items if json.dumps(v) not in removed]
        return items[-self.array_max :]

    def _apply_event(self, profile: Profile, item: dict[str, Any]) -> None:
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise _Refusal("an event needs a name")
        if not isinstance(item.get("time"), str) or not item["time"]:
            raise _Refusal("an event needs a time (ISO 8601)")
        properties = item.get("properties") or {}
        if not isinstance(properties, dict):
            raise _Refusal("event properties must be an object")
        profile.events.append({"name": item["name"], "time": item["time"], "properties": properties})

    def _apply_purchase(self, profile: Profile, item: dict[str, Any]) -> None:
        missing = [name for name in ("product_id", "currency", "price", "time") if item.get(name) is None]
        if missing:
            raise _Refusal(f"a purchase needs {', '.join(missing)}")
        profile.purchases.append(
            {k: item[k] for k in ("product_id", "currency", "price", "time", "properties") if k in item}
        )

    def seed(self, users: list[dict[str, Any]]) -> int:
        """Create or update profiles from ``[{"external_id", "email", "time_zone", ...custom}]``."""
        for user in users:
            if not isinstance(user, dict) or not user.get("external_id"):
                raise ValueError("each seeded user needs an external_id")
            external_id = str(user["external_id"])
            profile = self.by_external_id(external_id) or self.new_profile(external_id=external_id)
            profile.attributes.update({k: v for k, v in user.items() if k != "external_id"})
        return len(users)


class _Refusal(Exception):
    """A per-object problem: reported in ``errors``, the rest of the request is still processed."""


class _Handler(JsonHandler):
    server: LoopbackServer[BrazeState]

    @property
    def state(self) -> BrazeState:
        return self.server.state

    def dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        segments = [unquote(s) for s in path.split("/") if s]
        body = self.read_body()
        if segments[:1] == ["_sandbox"]:
            self._control(method, segments[1:], body)
        elif method == "POST" and segments == ["users", "track"]:
            self._track(body)
        else:
            self.send_json(404, {"message": f"no route {method} {path}"})

    def _track(self, body: bytes) -> None:
        payload = try_json(body)
        with self.state.lock:
            self.state.counts["track_requests"] += 1
            self.state.requests.append({"path": "/users/track", "body": payload if payload is not None else None})
            fault = take_fault(self.state.faults, "track")
        if fault is not None and self.apply_fault(fault):
            return
        if not self._authorized():
            self.send_json(401, {"message": "Invalid API key"})
            return
        with self.state.lock:
            allowed, limits = self.state.spend()
            if not allowed:
                self.send_json(429, {"message": "API rate limit exceeded"}, limits)
                return
            status, answer = self.state.track(payload)
        if fault is not None and fault.lose_answer:  # applied, but the caller never hears so
            self.close_connection = True
            self.connection.close()
            return
        self.send_json(status, answer, limits)

    def _authorized(self) -> bool:
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        with self.state.lock:
            return scheme.lower() == "bearer" and key.strip() in self.state.api_keys

    def _control(self, method: str, rest: list[str], body: bytes) -> None:
        """``/_sandbox/…``: inspect profiles and requests, seed users, arm faults, configure."""
        if method == "GET" and len(rest) == 2 and rest[0] == "users":
            with self.state.lock:
                profile = self.state.by_external_id(rest[1])
                found = profile.to_json() if profile else None
            self.send_json(200 if found else 404, found or {"message": f"no user with external_id {rest[1]!r}"})
            return
        self.run_control(_CONTROL_ACTIONS, method, rest, try_json(body))


def _fatal_problem(kinds: dict[str, Any]) -> dict[str, Any] | None:
    """Braze refuses the whole request (400) when an array is malformed or too long."""
    for kind, objects in kinds.items():
        if not isinstance(objects, list):
            return {"message": f"'{kind}' must be an array"}
        if len(objects) > MAX_OBJECTS:
            return {
                "message": "Max Input Length Exceeded",
                "errors": [f"{kind} has {len(objects)} objects; the maximum is {MAX_OBJECTS}"],
            }
    return None


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)


def _configure(state: BrazeState, data: Any) -> tuple[int, Any]:
    data = dict(data or {})
    if "apiKeys" in data:
        state.api_keys = {str(k) for k in data["apiKeys"]}
    if "rateLimit" in data:
        state.rate_limit = int(data["rateLimit"])
    if "rateWindow" in data:
        state.rate_window = float(data["rateWindow"])
        state.window_started, state.window_used = state.clock(), 0
    if "arrayMax" in data:
        state.array_max = int(data["arrayMax"])
    return 200, {"status": "configured"}


def _arm_fault(state: BrazeState, data: Any) -> tuple[int, Any]:
    state.faults.append(Fault.from_json(dict(data or {}), FAULT_TARGETS))
    return 200, {"status": "armed", "faults": len(state.faults)}


def _clear_faults(state: BrazeState, _: Any) -> tuple[int, Any]:
    state.faults.clear()
    return 200, {"status": "cleared"}


def _reset(state: BrazeState, _: Any) -> tuple[int, Any]:
    keys = set(state.api_keys)
    state.reset()
    state.api_keys = keys
    return 200, {"status": "reset"}


def _refuse(state: BrazeState, data: Any) -> tuple[int, Any]:
    data = dict(data or {})
    kind = data.get("inputArray")
    if not data.get("user") or kind not in (None, "attributes", "events"):
        raise ValueError('refusals take {"user", "message", "fatal"?, "inputArray"?: "attributes"|"events"}')
    refusal = Refusal(str(data["user"]), str(data.get("message") or "refused"), bool(data.get("fatal")), kind)
    state.refusals.append(refusal)
    return 200, {"status": "refusing", "refusals": len(state.refusals)}


def _clear_refusals(state: BrazeState, _: Any) -> tuple[int, Any]:
    state.refusals.clear()
    return 200, {"status": "cleared"}


def _seed(state: BrazeState, data: Any) -> tuple[int, Any]:
    users = data.get("users") if isinstance(data, dict) else data
    if not isinstance(users, list):
        raise ValueError('seed takes a JSON array of users (or {"users": [...]})')
    return 200, {"status": "seeded", "users": state.seed(users)}


_CONTROL_ACTIONS: dict[tuple[str, str], Callable[[BrazeState, Any], tuple[int, Any]]] = {
    ("GET", "health"): lambda state, _: (200, {"status": "ok"}),
    ("GET", "users"): lambda state, _: (200, [p.to_json() for p in state.profiles.values()]),
    ("GET", "requests"): lambda state, _: (200, list(state.requests)),
    ("GET", "stats"): lambda state, _: (200, dict(state.counts)),
    ("POST", "seed"): _seed,
    ("POST", "faults"): _arm_fault,
    ("DELETE", "faults"): _clear_faults,
    ("POST", "refusals"): _refuse,
    ("DELETE", "refusals"): _clear_refusals,
    ("POST", "reset"): _reset,
    ("POST", "config"): _configure,
}


class BrazeSandbox(BackgroundServer[BrazeState]):
    """``with BrazeSandbox() as braze: braze.url`` — the sandbox in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: tuple[str, ...] = DEFAULT_API_KEYS,
        verbose: bool = False,
    ) -> None:
        super().__init__(LoopbackServer((host, port), _Handler, BrazeState(api_keys), verbose), "braze-sandbox")
