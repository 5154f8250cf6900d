"""The stage's CloudWatch dashboard, defined once: the merge template embeds it (CloudFormation path)
and ``bridgectl stage put-dashboard`` puts it (``chalice deploy`` path).

Every widget of our namespace names a metric the code emits (``chalicelib.observability``) with the
dimensions it emits them with (``service`` and ``route``); a test holds it to that.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.sync.reconcile import HEALED_METRICS, ROUTE
from stage.names import NAMESPACE, QUEUES, SERVICE, resource_name

# The routes record_outcome names: the three Braze → Rokt routes, the delivery queue's consumer, and
# Rokt → Braze's route and queue consumer.
DELIVERY_ROUTES = ("create", "update", "delete", "queue")
SYNC_ROUTES = ("rokt_webhook", "sync_queue")
WEBHOOK_OUTCOMES = ("Delivered", "Duplicates", "Queued", "Spilled", "Superseded", "Invalid", "Unauthorized",
                    "RejectedByRokt", "RetryableFailures", "NotAttempted", "DeadLettered", "Errors")  # fmt: skip
SYNC_COUNTS = ("Accepted", "Ignored", "Synced", "Skipped", "DeadLettered", "BrazeCalls", "BrazeObjectErrors",
               "SyncDeadLettered", "SyncSkippedNoIdentity")  # fmt: skip
# What Braze refused, on the sync queue's consumer: the REST key (alarmed), single objects (dead-lettered
# with Braze's words), and calls refused whole with a 400 (bisected to the subscription that makes it).
BRAZE_REFUSALS = ("BrazeKeyRefused", "BrazeObjectsRefused", "BrazeCallsSplit")
# Placeholders filled by CloudFormation (Fn::Sub) or by put-dashboard with the deployed names.
REGION = "${AWS::Region}"
FUNCTIONS = {
    "api": "${APIHandler}",
    "delivery": "${DeliverQueued}",
    "sync": "${SyncSubscribers}",
    "reconcile": "${ReconcileSubscriptions}",
}


def _ours(metric: str, route: str, **options: Any) -> list[Any]:
    line: list[Any] = [NAMESPACE, metric, "service", SERVICE, "route", route]
    return [*line, options] if options else line


def _widget(title: str, metrics: list[list[Any]], *, stat: str = "Sum", stacked: bool = False) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": REGION,
            "view": "timeSeries",
            "stacked": stacked,
            "stat": stat,
            "period": 60,
            "metrics": metrics,
        },
    }


def _queue(metric: str, queue: str, label: str) -> list[Any]:
    return ["AWS/SQS", metric, "QueueName", queue, {"label": label}]


def widgets(stage: str) -> list[dict[str, Any]]:
    deliveries, deliveries_dlq = QUEUES["delivery"](stage)
    sync, sync_dlq = QUEUES["sync"](stage)
    outcomes = [
        _ours(metric, route, label=f"{route} {metric}") for route in DELIVERY_ROUTES for metric in WEBHOOK_OUTCOMES
    ]
    latency = [_ours("WebhookLatency", route, stat=p, label=f"{route} {p}") for route in DELIVERY_ROUTES[:3]
               for p in ("p50", "p90", "p99")]  # fmt: skip
    upstream = [_ours("UpstreamLatency", route, stat=p, label=f"{route} {p}") for route in DELIVERY_ROUTES
                for p in ("p50", "p99")]  # fmt: skip
    classes = [
        _ours(metric, route, label=f"{route} {label}")
        for route in DELIVERY_ROUTES
        for metric, label in (("Delivered", "2xx"), ("RejectedByRokt", "4xx"), ("RetryableFailures", "5xx/429/timeout"))
    ]
    tokens = [_ours(m, r, label=f"{r} {m}") for r in DELIVERY_ROUTES for m in ("TokenRefreshes", "SharedTokenReuses")]
    breaker = [_ours(m, r, label=f"{r} {m}") for r in DELIVERY_ROUTES[:3] for m in ("BreakerOpened", "BreakerClosed")]
    breaker += [_ours("Spilled", r, label=f"{r} spilled") for r in DELIVERY_ROUTES[:3]]
    queues = [
        _queue("ApproximateNumberOfMessagesVisible", deliveries, "deliveries waiting"),
        _queue("ApproximateNumberOfMessagesVisible", sync, "sync waiting"),
    ]
    ages = [
        _queue("ApproximateAgeOfOldestMessage", deliveries, "deliveries oldest (s)"),
        _queue("ApproximateAgeOfOldestMessage", sync, "sync oldest (s)"),
    ]
    dead = [
        _queue("ApproximateNumberOfMessagesVisible", deliveries_dlq, "delivery DLQ"),
        _queue("ApproximateNumberOfMessagesVisible", sync_dlq, "sync DLQ"),
    ]
    sync_counts = [_ours(m, r, label=f"{r} {m}") for r in SYNC_ROUTES for m in SYNC_COUNTS]
    refusals = [_ours(m, "sync_queue", label=m) for m in BRAZE_REFUSALS]
    healed = [_ours(metric, ROUTE, label=f"healed: {kind}") for kind, metric in HEALED_METRICS.items()]
    healed += [_ours(m, ROUTE, label=m) for m in ("ReconciliationFailed", "ReconciliationRefused")]
    lambdas = [
        ["AWS/Lambda", metric, "FunctionName", name, {"label": f"{role} {metric}"}]
        for role, name in FUNCTIONS.items()
        for metric in ("Errors", "Throttles", "ConcurrentExecutions")
    ]
    return [
        _widget("Webhooks by outcome", outcomes, stacked=True),
        _widget("Answer latency (ms)", latency, stat="p50"),
        _widget("Rokt latency (ms)", upstream, stat="p50"),
        _widget("Rokt answers by class", classes, stacked=True),
        _widget("Token refreshes", tokens),
        _widget("Circuit breaker and spills", breaker),
        _widget("Queue depth", queues, stat="Maximum"),
        _widget("Age of oldest message (s)", ages, stat="Maximum"),
        _widget("Dead-letter queues", dead, stat="Maximum"),
        _widget("Rokt → Braze sync", sync_counts, stacked=True),
        _widget("Braze refusals", refusals),
        _widget("Reconciliation: profiles healed, by kind", healed, stacked=True),
        _widget("Lambda errors, throttles, concurrency", lambdas, stat="Maximum"),
    ]


def dashboard_body(stage: str) -> str:
    """The dashboard JSON with ``${...}`` placeholders for the region and the function names."""
    placed = []
    for index, widget in enumerate(widgets(stage)):
        placed.append({**widget, "x": 12 * (index % 2), "y": 6 * (index // 2)})
    return json.dumps({"widgets": placed}, separators=(",", ":"))


def dashboard_name(stage: str) -> str:
    return resource_name(stage, "")


def filled(body: str, region: str, functions: dict[str, str]) -> str:
    """The body with the placeholders replaced (``chalice deploy`` path): region and function names."""
    body = body.replace(REGION, region)
    for role, placeholder in FUNCTIONS.items():
        body = body.replace(placeholder, functions[role])
    return body
