"""Rokt OAuth access tokens: process memory → the shared SSM SecureString → ``POST /oauth2/token``.

Rokt tokens live about five minutes. Every Lambda container keeps the token in memory and looks in
SSM only when its copy is due for refresh, so the fleet makes a handful of token calls per token
lifetime instead of one per webhook. Each container refreshes at a slightly different moment
(jitter) so that one of them renews the shared token and the others pick it up from SSM.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from chalicelib.clock import MIN_ATTEMPT_SECONDS
from chalicelib.errors import DependencyUnavailable, UpstreamTimeout
from chalicelib.exchange import bounded, send_within
from chalicelib.observability import logger
from chalicelib.secrets import (
    ROKT_ACCESS_TOKEN,
    ROKT_CLIENT_ID,
    ROKT_CLIENT_SECRET,
    SecretStore,
    SecretStoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib.clock import Deadline
    from chalicelib.runtime import Lock

CREDENTIALS_MAX_AGE_SECONDS = 3600
REFRESH_AHEAD_SECONDS = 60.0
REFRESH_JITTER_SECONDS = 30.0
# At most one forced renewal (after a 401) per container in this many seconds.
FORCED_REFRESH_INTERVAL_SECONDS = 30.0
# A token this close to expiry is not worth sending: it may die in flight.
MIN_USEFUL_SECONDS = 5.0


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {"access_token": self.value, "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccessToken | None:
        value, expires_at = data.get("access_token"), data.get("expires_at")
        if not isinstance(value, str) or not value or not isinstance(expires_at, (int, float)):
            return None
        return cls(value=value, expires_at=float(expires_at))


class TokenEndpointUnavailable(DependencyUnavailable):
    """Rokt's token endpoint failed or refused our client credentials."""


class CredentialsRejected(TokenEndpointUnavailable):
    """The token endpoint answered 400/401 to our client id and secret."""


class TokenEndpoint:
    """``POST {base}/oauth2/token`` with the client-credentials grant."""

    def __init__(self, session: requests.Session, base_url: str, connect_timeout: float, read_timeout: float) -> None:
        self._session = bounded(session)
        self._url = f"{base_url.rstrip('/')}/oauth2/token"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def fetch(self, client_id: str, client_secret: str, deadline: Deadline, now: float) -> AccessToken:
        try:
            response = send_within(
                self._session,
                deadline,
                "POST",
                self._url,
                connect=self._connect_timeout,
                read=self._read_timeout,
                data={"grant_type": "client_credentials"},
                auth=(client_id, client_secret),
                headers={"Accept": "application/json"},
            )
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(f"Rokt token endpoint unreachable ({type(exc).__name__})") from exc
        if response.status_code in (400, 401, 403):
            raise CredentialsRejected(
                f"Rokt token endpoint refused the client credentials (HTTP {response.status_code})"
            )
        if response.status_code != 200:
            raise TokenEndpointUnavailable(f"Rokt token endpoint answered HTTP {response.status_code}")
        try:
            payload = response.json()
            token = str(payload["access_token"])
            expires_in = float(payload["expires_in"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenEndpointUnavailable("Rokt token endpoint answered without access_token/expires_in") from exc
        return AccessToken(value=token, expires_at=now + expires_in)


class TokenProvider:
    """Hands out a valid Rokt access token; thread-safe, one refresh at a time per container."""

    def __init__(
        self,
        endpoint: TokenEndpoint,
        store: SecretStore,
        *,
        clock: Callable[[], float] = time.time,
        refresh_ahead: float = REFRESH_AHEAD_SECONDS,
        jitter: float = REFRESH_JITTER_SECONDS,
        rng: Callable[[], float] = random.random,
        on_refresh: Callable[[str], None] = lambda source: None,
        lock: Lock | None = None,
    ) -> None:
        """``lock``: held across the refresh's IO (SSM, Rokt's token endpoint) while other threads wait."""
        self._endpoint = endpoint
        self._store = store
        self._clock = clock
        self._ahead = refresh_ahead + jitter * rng()
        self._on_refresh = on_refresh
        self._lock: Lock = lock or threading.Lock()
        self._token: AccessToken | None = None
        self._rejected: str | None = None
        self._forced_at = float("-inf")  # when a 401 last forced a renewal
        self._forced_token: str | None = None  # the token Rokt issued for it, until Rokt accepts it
        self._credentials: tuple[str, str] | None = None

    def get(self, deadline: Deadline) -> str:
        token = self._token
        if token is not None and not self._due(token):
            return token.value
        # Another thread may be refreshing (the sync consumer reads subscriptions in parallel): wait
        # for it no longer than this caller's own deadline.
        if not self._lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise UpstreamTimeout("waited for another Rokt token refresh until the deadline")
        try:
            token = self._token
            if token is not None and not self._due(token):
                return token.value
            return self._refresh(deadline).value
        finally:
            self._lock.release()

    def accepted(self, value: str) -> None:
        """Rokt took ``value``: a later 401 is news (a revocation), worth a renewal."""
        if self._forced_token == value:
            with self._lock:
                self._forced_token = None

    def invalidate(self, value: str) -> bool:
        """Rokt answered 401 to ``value``: never use it again, here or from SSM. True if a fresh token
        is worth trying; False when this container renewed its token moments ago and Rokt has refused
        that one every time since (the 401 is not about the token: renewing again would only hammer
        SSM and Rokt)."""
        with self._lock:
            now = self._clock()
            if value == self._forced_token and now - self._forced_at < FORCED_REFRESH_INTERVAL_SECONDS:
                logger.warning("Rokt refused a token renewed moments ago; not renewing again yet")
                return False
            self._rejected = value
            self._forced_at = now
            self._forced_token = None
            if self._token is not None and self._token.value == value:
                self._token = None
            return True

    def _due(self, token: AccessToken) -> bool:
        return self._clock() >= token.expires_at - self._ahead

    def _usable(self, token: AccessToken | None) -> bool:
        return (
            token is not None
            and token.value != self._rejected
            and token.expires_at - self._clock() > MIN_USEFUL_SECONDS
        )

    def _refresh(self, deadline: Deadline) -> AccessToken:
        _in_time(deadline)
        shared = self._read_shared()
        if shared is not None and self._usable(shared) and not self._due(shared):
            self._token = shared
            self._on_refresh("ssm")
            return shared
        try:
            fresh = self._fetch(deadline)
        except TokenEndpointUnavailable:
            fallback = next((t for t in (self._token, shared) if self._usable(t)), None)
            if fallback is None:
                raise
            logger.warning("Rokt token refresh failed; using the current token until it expires")
            return fallback
        self._token = fresh
        if self._clock() - self._forced_at < FORCED_REFRESH_INTERVAL_SECONDS:
            self._forced_token = fresh.value
        self._on_refresh("oauth")
        if deadline.remaining() >= MIN_ATTEMPT_SECONDS:
            self._write_shared(fresh)
        else:
            logger.warning("no time left to share the new Rokt token through SSM; other containers fetch their own")
        return fresh

    def _fetch(self, deadline: Deadline) -> AccessToken:
        client_id, client_secret = self._client_credentials(deadline, force=False)
        try:
            return self._endpoint.fetch(client_id, client_secret, deadline, self._clock())
        except CredentialsRejected:
            client_id, client_secret = self._client_credentials(deadline, force=True)
            return self._endpoint.fetch(client_id, client_secret, deadline, self._clock())

    def _client_credentials(self, deadline: Deadline, *, force: bool) -> tuple[str, str]:
        if self._credentials is None or force:
            _in_time(deadline)
            client_id = self._store.get(ROKT_CLIENT_ID, CREDENTIALS_MAX_AGE_SECONDS, force_fetch=force)
            _in_time(deadline)
            client_secret = self._store.get(ROKT_CLIENT_SECRET, CREDENTIALS_MAX_AGE_SECONDS, force_fetch=force)
            self._credentials = (client_id, client_secret)
        return self._credentials

    def _read_shared(self) -> AccessToken | None:
        try:
            data = self._store.get_json(ROKT_ACCESS_TOKEN)
        except SecretStoreUnavailable:
            logger.warning("SSM token cache unreadable; fetching a Rokt token directly")
            return None
        return AccessToken.from_json(data) if data is not None else None

    def _write_shared(self, token: AccessToken) -> None:
        try:
            self._store.put_secure(ROKT_ACCESS_TOKEN, json.dumps(token.to_json(), separators=(",", ":")))
        except SecretStoreUnavailable:
            logger.warning("SSM token cache unwritable; other containers will fetch their own token")


def _in_time(deadline: Deadline) -> None:
    """An SSM read on the way to a token starts only while the upstream deadline has not passed: one that
    then hangs overruns it by one bounded AWS call at most, which the request's reserve covers."""
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise UpstreamTimeout("not enough of the request's time was left to get a Rokt token")
