"""Typed configuration, read once from the environment: the only module that looks at env vars."""

from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from chalicelib.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

# The bridge's name, written once: Chalice's app (and so its functions, roles and API), the queues,
# the default SSM prefix, the idempotency keys, the Powertools service and the dashboard derive from it.
APP_NAME = "rokt-calendar-bridge"
METRICS_NAMESPACE = "RoktCalendarBridge"
DEFAULT_ROKT_API_URL = "https://api.roktcalendar.com"
DEFAULT_TTL_SECONDS = 172_800
DEFAULT_TIMEOUT_SECONDS = 8.0
CONNECT_TIMEOUT_SECONDS = 3.05
# API Gateway cuts REST integrations at 29 s; everything, from the request's arrival, must finish
# inside this budget. Upstream work (token, Rokt) ends AWS_COMPLETION_RESERVE_SECONDS earlier, so the
# idempotency completion write (one bounded AWS call, see wiring.AWS_CLIENT_CONFIG) still fits.
REQUEST_BUDGET_SECONDS = 25.0
AWS_COMPLETION_RESERVE_SECONDS = 7.0
API_GATEWAY_LIMIT_SECONDS = 29.0
# Direct mode with a queue: open the breaker after this many retryable failures in a row, for this long.
BREAKER_FAILURE_THRESHOLD = 5
BREAKER_COOLDOWN_SECONDS = 30.0
# Queue consumer: retry for this long after a message was first queued (the longest Braze retry
# window), each retry after at most this long.
# With a delivery queue: the note of a queued intent and its send are two bounded AWS calls (each within
# the reserve) after the webhook's authentication, inside the budget less the Lambda margin.
MIN_QUEUE_BUDGET_SECONDS = 20.0
RETRY_HORIZON_SECONDS = 86_400.0
RETRY_MAX_BACKOFF_SECONDS = 900

# Rokt → Braze reconciliation: every subscription the ledger knows re-read from Rokt once per period,
# at most this many Rokt reads per second (chalicelib.sync.reconcile); a period shorter than an hour
# would re-read everything every few runs.
RECONCILE_PERIOD_SECONDS = 86_400.0
MIN_RECONCILE_PERIOD_SECONDS = 3_600.0
RECONCILE_READS_PER_SECOND = 10.0
RECONCILE_EVERY_MINUTES = 15  # app.py's schedule: each run re-reads what is due by the next

UpdateShape = Literal["wrapped", "flat"]
DeliveryMode = Literal["direct", "queued"]
IdentityFallback = Literal["email", "none"]


@dataclass(frozen=True)
class Settings:
    """Everything the bridge needs to know about its deployment."""

    stage: str
    rokt_api_url: str
    ssm_prefix: str
    idempotency_table: str
    idempotency_ttl_seconds: int = DEFAULT_TTL_SECONDS
    rokt_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    request_budget_seconds: float = REQUEST_BUDGET_SECONDS
    completion_reserve_seconds: float = AWS_COMPLETION_RESERVE_SECONDS
    delivery_mode: DeliveryMode = "direct"
    delivery_queue_url: str | None = None
    update_body_shape: UpdateShape = "wrapped"
    webhook_secrets_max_age_seconds: int = 60
    require_signature: bool = False
    tracing: bool = False
    braze_rest_endpoint: str | None = None
    braze_identity_fallback: IdentityFallback = "email"
    sync_queue_url: str | None = None
    breaker_failure_threshold: int = BREAKER_FAILURE_THRESHOLD
    breaker_cooldown_seconds: float = BREAKER_COOLDOWN_SECONDS
    retry_horizon_seconds: float = RETRY_HORIZON_SECONDS
    retry_max_backoff_seconds: int = RETRY_MAX_BACKOFF_SECONDS
    reconcile_period_seconds: float = RECONCILE_PERIOD_SECONDS
    reconcile_reads_per_second: float = RECONCILE_READS_PER_SECOND

    @property
    def sync_configured(self) -> bool:
        """Rokt → Braze needs both; without them the sync route answers 503 and delivery is unaffected."""
        return bool(self.braze_rest_endpoint and self.sync_queue_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``environ``, reporting every missing or invalid variable at once."""
        problems: list[str] = []
        stage = stage_of(environ)
        api_url = environ.get("ROKT_API_URL", DEFAULT_ROKT_API_URL).rstrip("/")
        if not _is_acceptable_api_url(api_url):
            problems.append("ROKT_API_URL must be an https:// URL (plain http only on loopback)")
        prefix = environ.get("BRIDGE_SSM_PREFIX", default_ssm_prefix(stage)).rstrip("/")
        if not prefix.startswith("/"):
            problems.append("BRIDGE_SSM_PREFIX must start with '/'")
        table = environ.get("IDEMPOTENCY_TABLE", "").strip()
        if not table:
            problems.append("IDEMPOTENCY_TABLE is required")
        ttl = _number(environ, "IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL_SECONDS, int, problems)
        timeout = _number(environ, "ROKT_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, float, problems)
        budget = _number(environ, "BRIDGE_REQUEST_BUDGET_SECONDS", REQUEST_BUDGET_SECONDS, float, problems)
        mode = _choice(environ, "DELIVERY_MODE", ("direct", "queued"), problems)
        queue_url = environ.get("DELIVERY_QUEUE_URL") or None
        problems += _budget_problems(budget, timeout, queued=bool(queue_url))
        if mode == "queued" and not queue_url:
            problems.append("DELIVERY_QUEUE_URL is required when DELIVERY_MODE=queued")
        shape = _choice(environ, "ROKT_UPDATE_BODY_SHAPE", ("wrapped", "flat"), problems)
        signature = _choice(environ, "WEBHOOK_SIGNATURE", ("off", "required"), problems)
        tracing = _choice(environ, "BRIDGE_TRACING", ("off", "xray"), problems)
        if tracing == "xray" and importlib.util.find_spec("aws_xray_sdk") is None:
            problems.append("BRIDGE_TRACING=xray needs aws-xray-sdk in the package (requirements.txt or a layer)")
        braze = (environ.get("BRAZE_REST_ENDPOINT") or "").strip().rstrip("/") or None
        if braze is not None and not _is_acceptable_api_url(braze):
            problems.append("BRAZE_REST_ENDPOINT must be an https:// URL (plain http only on loopback)")
        fallback = _choice(environ, "BRAZE_IDENTITY_FALLBACK", ("email", "none"), problems)
        threshold = _number(environ, "BREAKER_FAILURE_THRESHOLD", BREAKER_FAILURE_THRESHOLD, int, problems)
        cooldown = _number(environ, "BREAKER_COOLDOWN_SECONDS", BREAKER_COOLDOWN_SECONDS, float, problems)
        horizon = _number(environ, "DELIVERY_RETRY_HORIZON_SECONDS", RETRY_HORIZON_SECONDS, float, problems)
        backoff = _number(environ, "DELIVERY_RETRY_MAX_BACKOFF_SECONDS", RETRY_MAX_BACKOFF_SECONDS, int, problems)
        period = _number(environ, "RECONCILE_PERIOD_SECONDS", RECONCILE_PERIOD_SECONDS, float, problems)
        if period < MIN_RECONCILE_PERIOD_SECONDS:
            problems.append(f"RECONCILE_PERIOD_SECONDS must be at least {MIN_RECONCILE_PERIOD_SECONDS:g} (an hour)")
        reads = _number(environ, "RECONCILE_READS_PER_SECOND", RECONCILE_READS_PER_SECOND, float, problems)
        if problems:
            raise ConfigError(problems)
        return cls(
            stage=stage,
            rokt_api_url=api_url,
            ssm_prefix=prefix,
            idempotency_table=table,
            idempotency_ttl_seconds=int(ttl),
            rokt_timeout_seconds=float(timeout),
            request_budget_seconds=float(budget),
            delivery_mode=mode,  # type: ignore[arg-type]
            delivery_queue_url=queue_url,
            update_body_shape=shape,  # type: ignore[arg-type]
            require_signature=signature == "required",
            tracing=tracing == "xray",
            braze_rest_endpoint=braze,
            braze_identity_fallback=fallback,  # type: ignore[arg-type]
            sync_queue_url=(environ.get("SYNC_QUEUE_URL") or "").strip() or None,
            breaker_failure_threshold=int(threshold),
            breaker_cooldown_seconds=float(cooldown),
            retry_horizon_seconds=float(horizon),
            retry_max_backoff_seconds=int(backoff),
            reconcile_period_seconds=float(period),
            reconcile_reads_per_second=float(reads),
        )


def default_ssm_prefix(stage: str) -> str:
    return f"/{APP_NAME}/{stage}"


def stage_of(environ: Mapping[str, str]) -> str:
    """``BRIDGE_STAGE`` (default ``dev``): names the stage's queues and parameters."""
    return environ.get("BRIDGE_STAGE", "dev").strip() or "dev"


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...], problems: list[str]) -> str:
    """The variable's value if it is one of ``allowed`` (the first is the default)."""
    value = environ.get(name, allowed[0])
    if value not in allowed:
        problems.append(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def _number(
    environ: Mapping[str, str], name: str, default: float, kind: type[int] | type[float], problems: list[str]
) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        problems.append(f"{name} must be a positive {kind.__name__}, got {raw!r}")
        return default
    if value <= 0:
        problems.append(f"{name} must be a positive {kind.__name__}, got {raw!r}")
        return default
    return value


def _is_acceptable_api_url(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or parts.query or parts.fragment:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _is_loopback(parts.hostname)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _budget_problems(budget: float, timeout: float, *, queued: bool) -> list[str]:
    """What the request budget must hold: under API Gateway's limit, Rokt's timeout before the reserve,
    and with a delivery queue, a queued intent's note and send."""
    problems = []
    if budget >= API_GATEWAY_LIMIT_SECONDS:
        problems.append(f"BRIDGE_REQUEST_BUDGET_SECONDS must stay under {API_GATEWAY_LIMIT_SECONDS:g}")
    if timeout + CONNECT_TIMEOUT_SECONDS > budget - AWS_COMPLETION_RESERVE_SECONDS:
        problems.append(
            "ROKT_TIMEOUT_SECONDS plus the connect timeout must fit the request budget "
            f"less {AWS_COMPLETION_RESERVE_SECONDS:g} s kept for the completion write"
        )
    if queued and budget < MIN_QUEUE_BUDGET_SECONDS:
        problems.append(
            f"with DELIVERY_QUEUE_URL, BRIDGE_REQUEST_BUDGET_SECONDS must be at least {MIN_QUEUE_BUDGET_SECONDS:g}: "
            "a queued intent is noted among its event's waiting intents (one bounded AWS call) before it is "
            "sent (another), which keeps queued intents in order"
        )
    return problems
