"""The authenticated HTTP transport every Rokt client shares: Bearer token from the token source, one
replay after a 401 with a fresh token, bounded retries inside a :class:`~chalicelib.clock.Deadline`,
and Rokt's answers turned into typed errors. The only module that sees ``requests.Response``
besides the clients built on it.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import requests
from urllib3.exceptions import NewConnectionError

from chalicelib.errors import RateLimited, RoktRejected, UpstreamFailed, UpstreamTimeout
from chalicelib.exchange import bounded, send_within
from chalicelib.observability import redact_emails

if TYPE_CHECKING:
    from chalicelib.clock import Deadline

DEFAULT_RETRY_AFTER_SECONDS = 30
MAX_RETRY_AFTER_SECONDS = 3600
MAX_IN_PROCESS_WAIT_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 0.25
MAX_ERROR_BODY_CHARS = 2000


class TokenSource(Protocol):
    def get(self, deadline: Deadline) -> str: ...

    def invalidate(self, value: str) -> bool: ...

    def accepted(self, value: str) -> None: ...


@dataclass(frozen=True)
class Exchange:
    """One answered call: the final response, how many attempts it took, whether the token was renewed."""

    response: requests.Response
    attempts: int
    token_refreshed: bool


class RoktTransport:
    """Sends one request to Rokt with a valid token, within the deadline."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        session: requests.Session,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._session = bounded(session)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts

    def call(self, method: str, url: str, body: Any, deadline: Deadline) -> Exchange:
        """Send; a 401 is replayed once with a fresh token. Connection problems raise typed errors."""
        token = self._tokens.get(deadline)
        response, attempts = self._attempt(method, url, body, token, deadline)
        refreshed = False
        if response.status_code == 401 and self._tokens.invalidate(token):
            token = self._tokens.get(deadline)
            refreshed = True
            response, more = self._attempt(method, url, body, token, deadline)
            attempts += more
        if response.status_code != 401:
            self._tokens.accepted(token)
        return Exchange(response, attempts, refreshed)

    def _attempt(
        self, method: str, url: str, body: Any, token: str, deadline: Deadline
    ) -> tuple[requests.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send_within(
                    self._session,
                    deadline,
                    method,
                    url,
                    connect=self._connect_timeout,
                    read=self._read_timeout,
                    json=body,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
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


def check(response: requests.Response) -> int:
    """The status of a 2xx answer; anything else raises the matching BridgeError."""
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
