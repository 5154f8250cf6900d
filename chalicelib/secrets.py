"""SSM Parameter Store behind one small class: names relative to the stage prefix, errors typed.

Built on Powertools Parameters so reads are cached (``max_age``) and decrypted the way Lambda users
expect; every value the bridge reads here is a SecureString.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, SetParameterError
from botocore.exceptions import ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.parameters import SSMProvider

MIN_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
WEBHOOK_SECRETS = "webhook-secrets"
WEBHOOK_SIGNING_KEYS = "webhook-signing-keys"
ROKT_CLIENT_ID = "rokt/client-id"
ROKT_CLIENT_SECRET = "rokt/client-secret"
ROKT_ACCESS_TOKEN = "rokt/access-token"
ROKT_WEBHOOK_TOKENS = "rokt-webhook-tokens"
BRAZE_API_KEY = "braze/api-key"
BRAZE_KEY_MAX_AGE_SECONDS = 300  # how long a container trusts the Braze key it read


def split_list(raw: str) -> list[str]:
    """The entries of a comma-separated SecureString (webhook secrets, signing keys), blanks dropped."""
    return [part.strip() for part in raw.split(",") if part.strip()]


class ParameterMissing(DependencyUnavailable):
    """A parameter the operator must create does not exist (see the README's Deploy section)."""


class SecretStoreUnavailable(DependencyUnavailable):
    """SSM could not be reached, throttled us, or refused access."""


class SecretStore:
    """SecureStrings under ``prefix``; read through the Powertools cache unless told to fetch.

    When SSM is unreachable, slow or throttling, a value read successfully before is served again (and
    the logs say so) rather than failing every webhook; a parameter that was deleted is never served.
    After a failure SSM is left alone for a backoff (1 s, doubling to 60 s): during that time reads are
    answered from the last good values or fail at once, so a hanging SSM costs one timeout per backoff
    period per container, not one per webhook (and not SSM's ~40 reads/s quota in a storm).
    """

    def __init__(self, provider: SSMProvider, prefix: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._provider = provider
        self._prefix = prefix.rstrip("/")
        self._last_good: dict[str, str] = {}
        self._clock = clock
        self._sick_until = 0.0
        self._backoff = 0.0
        self._warned: set[str] = set()  # parameters served stale in this backoff period (logged once)

    def name(self, relative: str) -> str:
        return f"{self._prefix}/{relative}"

    def get(
        self,
        relative: str,
        max_age: int,
        force_fetch: bool = False,
        stale_if_error: bool = True,
        log_missing: bool = True,
    ) -> str:
        """The decrypted value, from cache when younger than ``max_age`` seconds."""
        name = self.name(relative)
        if self._clock() < self._sick_until:
            return self._fallback(name, stale_if_error, None)
        try:
            value = str(self._provider.get(name, max_age=max_age, decrypt=True, force_fetch=force_fetch))
        except GetParameterError as exc:
            if _is_not_found(exc):
                self._last_good.pop(name, None)
                if log_missing:
                    logger.error("SSM parameter missing: create it (README, Deploy)", extra={"parameter": name})
                raise ParameterMissing("a secret the bridge needs is not configured (see the logs)") from exc
            self._backoff = min(max(self._backoff * 2, MIN_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
            self._sick_until = self._clock() + self._backoff
            self._warned.clear()
            return self._fallback(name, stale_if_error, exc)
        self._backoff = 0.0
        self._warned.clear()
        self._last_good[name] = value
        return value

    def _fallback(self, name: str, stale_if_error: bool, cause: BaseException | None) -> str:
        if stale_if_error and name in self._last_good:
            if name not in self._warned:  # once per parameter per backoff period, not once per webhook
                self._warned.add(name)
                logger.warning(
                    "SSM unreachable; using the last value read",
                    extra={"parameter": name, "retryInSeconds": round(self._backoff, 1)},
                )
            return self._last_good[name]
        error = SecretStoreUnavailable("a dependency (SSM) is unavailable; retry later")
        if cause is not None:
            logger.warning("SSM read failed", extra={"parameter": name, "error": type(cause).__name__})
            raise error from cause
        raise error

    def get_json(self, relative: str) -> dict[str, Any] | None:
        """A JSON SecureString read fresh from SSM; None when it does not exist yet or is not JSON."""
        try:
            raw = self.get(relative, max_age=0, force_fetch=True, stale_if_error=False, log_missing=False)
        except ParameterMissing:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def put_secure(self, relative: str, value: str) -> None:
        name = self.name(relative)
        if self._clock() < self._sick_until:
            raise SecretStoreUnavailable("a dependency (SSM) is unavailable; retry later")
        try:
            # An empty key id means the account's default aws/ssm key.
            self._provider.set(name, value, overwrite=True, parameter_type="SecureString", kms_key_id="")
        except SetParameterError as exc:
            logger.warning("SSM write failed", extra={"parameter": name})
            raise SecretStoreUnavailable("a dependency (SSM) is unavailable; retry later") from exc


def _is_not_found(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ClientError):
        return bool(cause.response.get("Error", {}).get("Code") == "ParameterNotFound")
    return "ParameterNotFound" in str(exc)
