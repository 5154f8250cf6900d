"""Who may call the bridge: Braze, presenting one of the webhook secrets kept in SSM, and Rokt,
whose webhook URLs carry one of the tokens kept in SSM (Rokt signs nothing)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from chalicelib.errors import Unauthorized
from chalicelib.observability import logger
from chalicelib.secrets import (
    ROKT_WEBHOOK_TOKENS,
    WEBHOOK_SECRETS,
    WEBHOOK_SIGNING_KEYS,
    SecretStore,
    split_list,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

SIGNATURE_HEADER = "x-bridge-signature"
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658


class WebhookAuthenticator:
    """Checks ``Authorization: Bearer <secret>`` against every accepted secret in constant time.

    The SSM value is a comma-separated list, so a new secret can be added before the old one is
    removed (rotation without downtime). Reads go through the Powertools cache for ``max_age`` s.
    """

    def __init__(self, store: SecretStore, max_age: int) -> None:
        self._store = store
        self._max_age = max_age

    def authenticate(self, authorization: str | None) -> None:
        presented = bearer_token(authorization)
        if presented is None:
            raise Unauthorized()
        accepted = split_list(self._store.get(WEBHOOK_SECRETS, max_age=self._max_age))
        if not accepted:
            logger.error("no webhook secret is configured in SSM; every webhook is refused")
        if not matches_any(presented, accepted):
            raise Unauthorized()


class PathTokenAuthenticator:
    """Checks the ``{token}`` of ``/rokt/webhooks/{token}`` against the SSM list, in constant time.

    Rokt's webhooks carry no signature or header we could check; the registered URL is the secret.
    The token is never logged: callers log the route template, not the path.
    """

    def __init__(self, store: SecretStore, max_age: int) -> None:
        self._store = store
        self._max_age = max_age

    def authenticate(self, token: str) -> None:
        if not token or not token.isascii():
            raise Unauthorized("unknown webhook token")
        accepted = split_list(self._store.get(ROKT_WEBHOOK_TOKENS, max_age=self._max_age))
        if not accepted:
            logger.error("no Rokt webhook token is configured in SSM; every Rokt webhook is refused")
        if not matches_any(token, accepted):
            raise Unauthorized("unknown webhook token")


def matches_any(presented: str, accepted: list[str]) -> bool:
    """True if ``presented`` equals one of ``accepted``; every comparison runs, each in constant time."""
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(candidate.encode("utf-8"), presented.encode("utf-8"))
    return matched


class SignatureVerifier:
    """Optional per-message proof: ``X-Bridge-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is the
    hex HMAC-SHA256 of ``"<t>.<route path>[?<query>].<hex SHA-256 of the raw body>"`` (the query, when
    there is one, as :func:`signed_target` writes it).

    Braze computes it in Liquid with a signing key (SSM ``webhook-signing-keys``, comma-separated for
    rotation). The route, its query and the body's hash are signed, so a captured signature cannot be
    replayed onto another body or route, nor a ``?dryRun=true`` preview replayed as a real send; ``t``
    must be within the tolerance window, so it cannot be replayed later, and a replay of the same request
    inside the window is only a duplicate.
    """

    def __init__(
        self,
        store: SecretStore,
        max_age: int,
        tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._max_age = max_age
        self._tolerance = tolerance
        self._clock = clock

    def verify(self, headers: Mapping[str, str], path: str, body: bytes, query: Any = None) -> None:
        """``query``: the request's query parameters (Chalice's ``query_params``: None or a MultiDict)."""
        fields = _signature_fields(headers.get(SIGNATURE_HEADER) or "")
        timestamp, signature = fields.get("t", ""), fields.get("v1", "").lower()
        # ASCII digits only: str.isdigit() also takes '²' and other digits int() refuses
        if not _ascii_digits(timestamp) or len(timestamp) > MAX_TIMESTAMP_DIGITS or not signature:
            raise Unauthorized("missing or malformed X-Bridge-Signature header (want t=<unix seconds>,v1=<hex>)")
        if abs(self._clock() - int(timestamp)) > self._tolerance:
            raise Unauthorized(f"the X-Bridge-Signature timestamp is more than {self._tolerance} s away from now")
        matched = False
        for key in split_list(self._store.get(WEBHOOK_SIGNING_KEYS, max_age=self._max_age)):
            expected = sign(key, timestamp, signed_target(path, query), body)
            matched |= hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace"))
        if not matched:
            raise Unauthorized("X-Bridge-Signature does not match this route, query, body and timestamp")


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def signed_target(path: str, query: Any = None) -> str:
    """What the signature covers of the URL: ``path``, plus ``?`` and the query parameters sorted by
    name (then value), form-encoded — ``/v1/subscriptionevent/acme?dryRun=true``; no query, no ``?``."""
    pairs = sorted((str(name), str(value)) for name in (query or {}) for value in _values(query, name))
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _values(query: Any, name: str) -> list[Any]:
    getlist = getattr(query, "getlist", None)
    return list(getlist(name)) if callable(getlist) else [query[name]]


def _signature_fields(header: str) -> dict[str, str]:
    """``t=1,v1=ab`` → ``{"t": "1", "v1": "ab"}`` (spaces ignored; a repeated name keeps the first)."""
    fields: dict[str, str] = {}
    for item in header.split(","):
        name, _, value = item.partition("=")
        fields.setdefault(name.strip().lower(), value.strip())
    return fields


def sign(key: str, timestamp: str, path: str, body: bytes) -> str:
    """What Braze's Liquid computes (``braze-template`` prints it): HMAC-SHA256 hex of
    ``"<timestamp>.<path>.<sha2 of body>"``, ``path`` as in ``/v1/subscriptionevent/<account>/update``
    (with ``?dryRun=true`` when the URL has that query: see :func:`signed_target`)."""
    message = f"{timestamp}.{path}.{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or not value.isascii():
        return None
    return value
