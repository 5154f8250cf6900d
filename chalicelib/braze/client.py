"""``POST {BRAZE_REST_ENDPOINT}/users/track``: the only module that knows Braze's paths and answers.

Braze takes up to 75 attribute, 75 event and 75 purchase objects per call; answers 2xx with per-object
problems in ``errors``; 429 past the rate limit with ``X-RateLimit-Reset`` (epoch seconds); 5xx when it
is unwell; 401/403 when the REST key is refused (after one retry with the key read fresh). Those become
a result or a typed error here (the Braze errors of ``chalicelib.errors``, under BridgeError); deciding
what to retry is the caller's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from urllib3.exceptions import NewConnectionError

from chalicelib.errors import (
    BrazeError,
    BrazeKeyRefused,
    BrazeOutcomeUnknown,
    BrazeRateLimited,
    BrazeRejected,
    BrazeUnavailable,
)
from chalicelib.exchange import bounded, send_within
from chalicelib.observability import redact_emails

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from chalicelib.clock import Deadline

# The adapter's face: its client and result, and the errors it raises (typed in chalicelib.errors).
__all__ = [
    "MAX_OBJECTS_PER_KIND",
    "BrazeClient",
    "BrazeError",
    "BrazeKeyRefused",
    "BrazeOutcomeUnknown",
    "BrazeRateLimited",
    "BrazeRejected",
    "BrazeUnavailable",
    "TrackResult",
]

MAX_OBJECTS_PER_KIND = 75
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 60
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class TrackResult:
    status: int
    attributes_processed: int = 0
    events_processed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class BrazeClient:
    """One ``requests.Session``; the REST key comes from ``api_key(force_fetch)`` (SSM, cached)."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[bool], str],
        session: requests.Session,
        *,
        connect_timeout: float,
        read_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = base_url.rstrip("/") + "/users/track"
        self._api_key = api_key
        self._session = bounded(session)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clock = clock

    def track(
        self, attributes: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], deadline: Deadline
    ) -> TrackResult:
        """Write one batch; a 401/403 is retried once with the key read fresh (it may have rotated)."""
        if len(attributes) > MAX_OBJECTS_PER_KIND or len(events) > MAX_OBJECTS_PER_KIND:
            raise ValueError(f"Braze takes at most {MAX_OBJECTS_PER_KIND} objects of each kind per call")
        body: dict[str, Any] = {}
        if attributes:
            body["attributes"] = list(attributes)
        if events:
            body["events"] = list(events)
        response = self._post(body, self._api_key(False), deadline)
        if response.status_code in (401, 403):
            response = self._post(body, self._api_key(True), deadline)
        return self._result(response)

    def check_key(self, deadline: Deadline) -> int:
        """POST an empty batch: writes no profile; 401/403 means the key is refused. Returns the status."""
        return self._post({"attributes": []}, self._api_key(True), deadline).status_code

    def _post(self, body: dict[str, Any], key: str, deadline: Deadline) -> requests.Response:
        try:
            return send_within(
                self._session,
                deadline,
                "POST",
                self._url,
                connect=self._connect_timeout,
                read=self._read_timeout,
                json=body,
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                allow_redirects=False,
            )
        except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as exc:
            raise BrazeUnavailable(f"Braze could not be reached ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise BrazeUnavailable(f"Braze could not be reached ({type(exc).__name__})") from exc
            raise BrazeOutcomeUnknown(f"Braze did not answer ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise BrazeOutcomeUnknown(f"Braze did not answer ({type(exc).__name__})") from exc

    def _result(self, response: requests.Response) -> TrackResult:
        status = response.status_code
        if 200 <= status < 300:
            body = _json(response)
            listed = body.get("errors")
            errors: list[Any] = listed if isinstance(listed, list) else []
            return TrackResult(
                status=status,
                attributes_processed=int(body.get("attributes_processed") or 0),
                events_processed=int(body.get("events_processed") or 0),
                errors=[e for e in errors if isinstance(e, dict)],
            )
        if status == 429:
            raise BrazeRateLimited(self._until_reset(response))
        if status >= 500:
            raise BrazeUnavailable(f"Braze answered HTTP {status}")
        if status in (401, 403):
            raise BrazeKeyRefused(status)
        detail = str(redact_emails(_json(response).get("message") or response.text))[:MAX_ERROR_CHARS]
        raise BrazeRejected(status, detail)

    def _until_reset(self, response: requests.Response) -> int:
        raw = (response.headers.get("X-RateLimit-Reset") or "").strip()
        try:
            return max(1, int(float(raw) - self._clock() + 0.999))
        except ValueError:
            return DEFAULT_RATE_LIMIT_WAIT_SECONDS


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Only a refused or unresolvable connection proves the request never reached Braze."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
