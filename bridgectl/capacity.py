"""What a Braze send needs from AWS and Rokt, from the measured per-webhook costs in bench/results.json.

The model (documented in bench/README.md): each webhook costs the measured CPU time, plus the
measured number of AWS calls at ``aws_call_ms`` each, plus one Rokt call at ``upstream_ms``.
Concurrency follows Little's law (arrival rate x time in the system).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stage.project import PROJECT_DIR

if TYPE_CHECKING:
    from pathlib import Path

RESULTS = PROJECT_DIR / "bench" / "results.json"

# us-east-1 list prices used for the estimate (checked 2026-11; change them here only).
PRICE_LAMBDA_REQUEST = 0.20 / 1_000_000
PRICE_LAMBDA_GB_SECOND = 0.0000166667
PRICE_API_GATEWAY_REST_REQUEST = 3.50 / 1_000_000
PRICE_DYNAMODB_WRITE_UNIT = 0.625 / 1_000_000
PRICE_SQS_REQUEST = 0.40 / 1_000_000
PRICE_KMS_REQUEST = 0.03 / 10_000
LAMBDA_MEMORY_GB = 0.5
DYNAMODB_WRITE_UNITS_PER_CALL = 1  # idempotency records stay well under 1 KB
# A new container reads two SecureStrings (webhook secrets, shared token) before its first delivery.
SSM_READS_PER_COLD_START = 2
SSM_STANDARD_THROUGHPUT_PER_SECOND = 40
LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY = 1000


@dataclass(frozen=True)
class Send:
    audience: int
    braze_rate_per_minute: int
    upstream_ms: float
    rokt_rate_per_second: float
    aws_call_ms: float = 8.0


@dataclass(frozen=True)
class Measured:
    """Per-webhook costs measured by `make bench`."""

    cpu_ms: float
    dynamodb_calls: float
    ssm_reads: float
    rokt_calls: float
    token_calls_per_lifetime: float

    @classmethod
    def from_results(cls, results: dict[str, Any]) -> Measured:
        return cls(
            cpu_ms=float(results["cpu_ms_per_webhook_bridge"]),
            dynamodb_calls=float(results["dynamodb_calls_per_webhook"]),
            ssm_reads=float(results["ssm_reads_per_webhook"]),
            rokt_calls=float(results["rokt_event_calls"]) / float(results["webhooks"]),
            token_calls_per_lifetime=float(results["token_calls_total"]),
        )

    @classmethod
    def load(cls, path: Path = RESULTS) -> Measured:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `make bench` first")
        return cls.from_results(json.loads(path.read_text()))


def plan(send: Send, measured: Measured) -> dict[str, Any]:
    per_second = send.braze_rate_per_minute / 60
    seconds_in_bridge = (
        measured.cpu_ms + measured.dynamodb_calls * send.aws_call_ms + measured.rokt_calls * send.upstream_ms
    ) / 1000
    rokt_per_second = per_second * measured.rokt_calls
    exceeds = rokt_per_second > send.rokt_rate_per_second
    # Each consumer works through its batch one message at a time: round down to stay under the limit.
    queued_consumers = math.floor(send.rokt_rate_per_second * seconds_in_bridge)
    concurrency = math.ceil(per_second * seconds_in_bridge)
    duration_minutes = send.audience / send.braze_rate_per_minute
    lambda_seconds = send.audience * seconds_in_bridge
    cost = {
        "lambda": send.audience * PRICE_LAMBDA_REQUEST + lambda_seconds * LAMBDA_MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
        "api_gateway": send.audience * PRICE_API_GATEWAY_REST_REQUEST,
        "dynamodb": send.audience * measured.dynamodb_calls * DYNAMODB_WRITE_UNITS_PER_CALL * PRICE_DYNAMODB_WRITE_UNIT,
        "ssm_kms": send.audience * measured.ssm_reads * PRICE_KMS_REQUEST,
    }
    return {
        "send_minutes": round(duration_minutes, 1),
        "webhooks_per_second": round(per_second, 1),
        "seconds_in_bridge_per_webhook": round(seconds_in_bridge, 4),
        "lambda_concurrency": concurrency,
        "ssm_reads_at_scale_out": concurrency * SSM_READS_PER_COLD_START,
        "ssm_higher_throughput_needed": concurrency * SSM_READS_PER_COLD_START
        > SSM_STANDARD_THROUGHPUT_PER_SECOND * 10,
        "lambda_limit_increase_needed": concurrency > LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY,
        "dynamodb_write_units_per_second": math.ceil(per_second * measured.dynamodb_calls),
        "ssm_reads_total": math.ceil(send.audience * measured.ssm_reads),
        "rokt_calls_per_second": round(rokt_per_second, 1),
        "rokt_token_calls_per_5_minutes": measured.token_calls_per_lifetime,
        "exceeds_rokt_rate": exceeds,
        "braze_rate_to_set_per_minute": math.floor(send.rokt_rate_per_second * 60 / measured.rokt_calls)
        if exceeds
        else send.braze_rate_per_minute,
        "queued_mode_advised": exceeds,
        "queued_max_concurrency": max(1, math.floor(queued_consumers)),
        "queued_drain_minutes": round(send.audience / (send.rokt_rate_per_second * 60), 1) if exceeds else None,
        "estimated_cost_usd": {k: round(v, 2) for k, v in cost.items()} | {"total": round(sum(cost.values()), 2)},
    }


def render(send: Send, result: dict[str, Any]) -> str:
    verdict = (
        f"Rokt's limit ({send.rokt_rate_per_second:g}/s) would be exceeded: set Braze's rate limit to "
        f"{result['braze_rate_to_set_per_minute']:,}/minute, or use queued mode with "
        f"MAX_CONCURRENCY={result['queued_max_concurrency']} (the queue drains in "
        f"{result['queued_drain_minutes']} min)"
        if result["exceeds_rokt_rate"]
        else f"within Rokt's limit ({send.rokt_rate_per_second:g}/s): direct mode is fine"
    )
    cost = result["estimated_cost_usd"]
    lines = [
        f"send: {send.audience:,} users at {send.braze_rate_per_minute:,}/minute → {result['send_minutes']} min, "
        f"{result['webhooks_per_second']:,}/s",
        f"time in the bridge per webhook: {result['seconds_in_bridge_per_webhook'] * 1000:.0f} ms "
        f"(upstream {send.upstream_ms:g} ms, AWS calls {send.aws_call_ms:g} ms each)",
        f"Lambda concurrency (direct mode): {result['lambda_concurrency']:,}"
        + (
            f" — above the default account limit ({LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY:,}): request an increase"
            if result["lambda_limit_increase_needed"]
            else ""
        ),
        f"DynamoDB write units/s (on demand): {result['dynamodb_write_units_per_second']:,}",
        f"SSM reads in total: {result['ssm_reads_total']:,} (steady rate measured by the bench); "
        f"{result['ssm_reads_at_scale_out']:,} while {result['lambda_concurrency']:,} containers start"
        + (
            " — above SSM's default 40/s over a 10 s ramp: enable SSM 'higher throughput' or ramp the send"
            if result["ssm_higher_throughput_needed"]
            else ""
        ),
        f"Rokt event calls/s: {result['rokt_calls_per_second']:,}; token calls per 5 min: "
        f"{result['rokt_token_calls_per_5_minutes']:g}",
        f"verdict: {verdict}",
        "estimated AWS cost: " + ", ".join(f"{k} ${v:,.2f}" for k, v in cost.items()),
    ]
    return "\n".join(lines)
