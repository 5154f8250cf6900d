"""Powertools Logger and Metrics, created once and shared; service and namespace come from the
standard ``POWERTOOLS_*`` variables set per stage in ``.chalice/config.json``."""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

logger = Logger()
metrics = Metrics()

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def redact_emails(value: Any) -> Any:
    """Mask e-mail addresses inside strings, lists and dicts (Rokt error bodies may echo subscribers)."""
    if isinstance(value, str):
        return _EMAIL.sub("[email redacted]", value)
    if isinstance(value, list):
        return [redact_emails(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_emails(item) for key, item in value.items()}
    return value


def _redact_event_id(event_id: str) -> str:
    """A Braze user id may be an e-mail address, and templates end eventIds with ``_<user id>``: mask
    it, keeping the campaign part before the last ``_`` readable for reports."""
    if "@" not in event_id:
        return event_id  # the common case, on every webhook: no regex
    head, separator, tail = event_id.rpartition("_")
    return f"{redact_emails(head)}_{redact_emails(tail)}" if separator else str(redact_emails(event_id))


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
