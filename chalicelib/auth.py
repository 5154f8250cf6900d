"""Who may call the bridge: Braze, presenting one of the webhook secrets kept in SSM."""

from __future__ import annotations

import hmac

from chalicelib.errors import Unauthorized
from chalicelib.observability import logger
from chalicelib.secrets import WEBHOOK_SECRETS, SecretStore


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
        accepted = self._accepted()
        if not accepted:
            logger.error("no webhook secret is configured in SSM; every webhook is refused")
        matched = False
        for secret in accepted:
            matched |= hmac.compare_digest(secret.encode("utf-8"), presented.encode("utf-8"))
        if not matched:
            raise Unauthorized()

    def _accepted(self) -> list[str]:
        raw = self._store.get(WEBHOOK_SECRETS, max_age=self._max_age)
        return [part.strip() for part in raw.split(",") if part.strip()]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or not value.isascii():
        return None
    return value
