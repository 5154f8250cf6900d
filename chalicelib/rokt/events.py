"""HTTP adapter for the Rokt Calendar events API.

The only module that knows Rokt's paths and body shapes, and the only one that sees
``requests.Response``. Retries are bounded by a :class:`~chalicelib.clock.Deadline` rather than by
urllib3's Retry, because the budget must span the token call, retries and a 401 replay together.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

import requests
from urllib3.exceptions import NewConnectionError

from chalicelib.errors import RateLimited, RoktRejected, UpstreamFailed, UpstreamTimeout
from chalicelib.observability import redact_emails

if TYPE_CHECKING:
    from collections.abc import Mapping

    from chalicelib.clock import Deadline
    from chalicelib.settings import UpdateShape

DEFAULT_RETRY_AFTER_SECONDS = 30
MAX_RETRY_AFTER_SECONDS = 3600
MAX_IN_PROCESS_WAIT_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 0.25
MAX_ERROR_BODY_CHARS = 2000


Operation = Literal["create", "update", "delete"]


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


class TokenSource(Protocol):
    def get(self, deadline: Deadline) -> str: ...

    def invalidate(self, value: str) -> None: ...


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
    # Delete's exact path is unconfirmed in Rokt's public reference (see DOMAIN.md); change it here only.
    return f"/v1/subscriptionevent/{account}/{quote(request.event_id, safe='')}"


class RoktCalendarClient:
    """Plans and sends event calls to Rokt with a token from ``tokens``."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        session: requests.Session,
        *,
        connect_timeout: float,
        read_timeout: float,
        update_shape: UpdateShape = "wrapped",
        max_attempts: int = 3,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._session = session
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._update_shape = update_shape
        self._max_attempts = max_attempts

    def plan(self, request: EventCall) -> UpstreamRequest:
        url = self._base_url + event_path(request)
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
        token = self._tokens.get(deadline)
        response, attempts = self._attempt(plan, token, deadline)
        refreshed = False
        if response.status_code == 401:
            self._tokens.invalidate(token)
            token = self._tokens.get(deadline)
            refreshed = True
            response, more = self._attempt(plan, token, deadline)
            attempts += more
        return UpstreamResult(status=self._check(response), attempts=attempts, token_refreshed=refreshed)

    def _attempt(self, plan: UpstreamRequest, token: str, deadline: Deadline) -> tuple[requests.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._session.request(
                    plan.method,
                    plan.url,
                    json=plan.body,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=deadline.timeout(self._connect_timeout, self._read_timeout),
                    allow_redirects=False,
                )
            except requests.ConnectTimeout as exc:
                if self._may_retry(attempt, deadline, BACKOFF_BASE_SECONDS * attempt):
                    continue
                raise UpstreamTimeout("Rokt could not be reached in time") from exc
            except requests.Timeout as exc:
                raise UpstreamTimeout("Rokt did not answer in time") from exc
            except requests.ConnectionError as exc:
                # Only a refused connection proves the request never reached Rokt; retrying a dropped
                # one could create the event twice, so Braze's retry (behind idempotency) handles it.
                if _never_connected(exc) and self._may_retry(attempt, deadline, BACKOFF_BASE_SECONDS * attempt):
                    continue
                raise UpstreamFailed("the connection to Rokt failed") from exc
            if response.status_code >= 500 and self._may_retry(attempt, deadline, _backoff(response, attempt)):
                response.close()
                continue
            return response, attempt

    def _may_retry(self, attempt: int, deadline: Deadline, wait: float) -> bool:
        return attempt < self._max_attempts and deadline.pause(wait)

    def _check(self, response: requests.Response) -> int:
        status = response.status_code
        if 200 <= status < 300:
            return status
        if status == 429:
            raise RateLimited("Rokt is rate-limiting the bridge", retry_after=retry_after_seconds(response))
        if status == 401:
            raise UpstreamFailed("Rokt refused a freshly issued token", upstream_status=401)
        if 400 <= status < 500:
            raise RoktRejected(status, _error_body(response))
        raise UpstreamFailed(f"Rokt answered HTTP {status}", upstream_status=status)


def retry_after_seconds(response: requests.Response, default: int = DEFAULT_RETRY_AFTER_SECONDS) -> int:
    """Rokt's Retry-After in whole seconds (delta or HTTP date), clamped to a sane range."""
    raw = (response.headers.get("Retry-After") or "").strip()
    seconds: float | None = None
    if raw.isdigit():
        seconds = float(raw)
    elif raw:
        parsed = email.utils.parsedate_to_datetime(raw) if _looks_like_date(raw) else None
        if parsed is not None:
            seconds = parsed.timestamp() - time.time()
    if seconds is None:
        return default
    return int(min(max(seconds, 1), MAX_RETRY_AFTER_SECONDS))


def _looks_like_date(raw: str) -> bool:
    try:
        return email.utils.parsedate_to_datetime(raw) is not None
    except (TypeError, ValueError):
        return False


def _backoff(response: requests.Response, attempt: int) -> float:
    if response.headers.get("Retry-After"):
        return float(min(retry_after_seconds(response, default=1), MAX_IN_PROCESS_WAIT_SECONDS))
    return BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1)


def _never_connected(exc: requests.ConnectionError) -> bool:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _error_body(response: requests.Response) -> Any:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:MAX_ERROR_BODY_CHARS]
    return redact_emails(body)
