"""Who may call the bridge: Braze, presenting one of the webhook secrets kept in SSM, and Rokt,
whose webhook URLs carry one of the tokens kept in SSM (Rokt signs nothing)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING

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
TIMESTAMP_HEADER = "x-bridge-timestamp"
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
    """Optional per-message proof: ``X-Bridge-Signature`` = hex HMAC-SHA256 of ``"<timestamp>.<eventId>"``.

    Braze computes it in Liquid with a signing key (SSM ``webhook-signing-keys``, comma-separated for
    rotation); ``X-Bridge-Timestamp`` (unix seconds) must be within the tolerance window, so a captured
    request cannot be replayed later, and a replay inside the window is only a duplicate.
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

    def verify(self, headers: Mapping[str, str], event_id: str) -> None:
        timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
        signature = (headers.get(SIGNATURE_HEADER) or "").strip().lower()
        if not timestamp.isdigit() or len(timestamp) > MAX_TIMESTAMP_DIGITS or not signature:
            raise Unauthorized("missing X-Bridge-Timestamp or X-Bridge-Signature header")
        if abs(self._clock() - int(timestamp)) > self._tolerance:
            raise Unauthorized(f"X-Bridge-Timestamp is more than {self._tolerance} s away from now")
        matched = False
        for key in split_list(self._store.get(WEBHOOK_SIGNING_KEYS, max_age=self._max_age)):
            expected = sign(key, timestamp, event_id)
            matched |= hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace"))
        if not matched:
            raise Unauthorized("X-Bridge-Signature does not match the event id and timestamp")


def sign(key: str, timestamp: str, event_id: str) -> str:
    """What Braze's Liquid computes: ``{{ ts | append: '.' | append: eventId | hmac_sha256_hex: key }}``."""
    message = f"{timestamp}.{event_id}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or not value.isascii():
        return None
    return value
