"""Powertools Logger and Metrics, created once and shared; service and namespace come from the
standard ``POWERTOOLS_*`` variables set per stage in ``.chalice/config.json``."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

# Any characters an address may hold (RFC 6531 lets both parts be any Unicode, e.g. josé@exämple.de):
# a run of anything but whitespace and the separators around addresses in text, an '@', another run.
_ADDRESS_PART = r"[^\s@<>()\[\]{},;:\"]+"
_EMAIL = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}")
MASK = "[email redacted]"
# The campaign part the Braze templates put before ``_<user id>``: ``Event_0001_``.
_CAMPAIGN = re.compile(r"[^@_]+_[0-9]+_")


def redact_emails(value: Any) -> Any:
    """Mask e-mail addresses inside strings, lists and dicts, keys included (Rokt error bodies may echo
    subscribers; a field may be named like an address)."""
    if isinstance(value, str):
        return _EMAIL.sub(MASK, value) if "@" in value else value
    if isinstance(value, (list, tuple)):
        return [redact_emails(item) for item in value]
    if isinstance(value, dict):
        return {redact_emails(key): redact_emails(item) for key, item in value.items()}
    return value


def _log_line(record: dict[str, Any]) -> str:
    """Every log line, as Powertools would write it, with each e-mail address masked wherever it is — an
    accountCode, a field's name, an exception's text: the last guard, whatever a caller logs."""
    return json.dumps(redact_emails(record), default=str, separators=(",", ":"), ensure_ascii=False)


logger = Logger(json_serializer=_log_line)
metrics = Metrics()


def _redact_event_id(event_id: str) -> str:
    """A Braze user id may be an e-mail address, and templates end eventIds with ``_<user id>``. The
    address may hold ``_`` and any letters, so where it starts is not knowable: everything after the
    campaign part (``Event_0001_``, the template's ``<name>_<number>_``) is masked, and the whole
    eventId when it has no such part — never a piece of an address."""
    if "@" not in event_id:
        return event_id  # the common case, on every webhook: no regex
    campaign = _CAMPAIGN.match(event_id)
    return f"{campaign.group()}{MASK}" if campaign else MASK


def flush_metrics() -> None:
    """Publish this invocation's metrics, if any (``/health`` records none and must not warn).

    A metrics misconfiguration (no namespace) is logged, never turned into a failed webhook.
    """
    try:
        if metrics.metric_set:
            metrics.flush_metrics()
    except SchemaValidationError:
        logger.error("metrics not published: set POWERTOOLS_METRICS_NAMESPACE for this stage")
    finally:
        metrics.clear_metrics()


def count(name: str, value: int = 1) -> None:
    """One more of something operators watch (e.g. ``BrazeCalls``, ``SyncDeadLettered``)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def for_route(route: str) -> None:
    """The ``route`` dimension of the metrics that follow (a function without webhooks: the reconciliation)."""
    metrics.add_dimension("route", route)


def count_token_refresh(source: str) -> None:
    """A container renewed its Rokt token: from Rokt itself (``oauth``) or another container (``ssm``)."""
    count("TokenRefreshes" if source == "oauth" else "SharedTokenReuses")


# One count per outcome, so dashboards need no high-cardinality dimension (never eventId).
OUTCOME_METRICS = {
    "delivered": "Delivered",
    "duplicate": "Duplicates",
    "queued": "Queued",
    "spilled": "Spilled",
    "superseded": "Superseded",
    "invalid": "Invalid",
    "rejected": "RejectedByRokt",
    "retryable_failure": "RetryableFailures",
    "unauthorized": "Unauthorized",
    "dry_run": "DryRuns",
    "accepted": "Accepted",
    "ignored": "Ignored",
    "synced": "Synced",
    "skipped": "Skipped",
    "dead_lettered": "DeadLettered",
    "not_attempted": "NotAttempted",
    "held_back": "HeldBack",  # a queued intent waiting for an older one for its event (not a failure)
    "error": "Errors",
}


def record_outcome(message: str, summary: dict[str, Any]) -> None:
    """The one log line and the metrics for one webhook (or one queued message)."""
    outcome = str(summary.setdefault("outcome", "error"))
    if isinstance(summary.get("eventId"), str):
        summary["eventId"] = _redact_event_id(summary["eventId"])
    logger.info(message, extra=summary)
    metrics.add_dimension("route", str(summary["route"]))
    metrics.add_metric(name="Webhooks", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=OUTCOME_METRICS.get(outcome, "Errors"), unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="WebhookLatency", unit=MetricUnit.Milliseconds, value=float(summary["latencyMs"]))
    if "upstreamLatencyMs" in summary:
        metrics.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=float(summary["upstreamLatencyMs"])
        )
