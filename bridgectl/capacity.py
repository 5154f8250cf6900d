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

from chalicelib.settings import RECONCILE_EVERY_MINUTES
from chalicelib.sync.reads import MAX_PARALLEL_READS
from chalicelib.sync.reconcile import BATCH_SIZE
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


# --- reconciliation (chalicelib.sync.reconcile) ---------------------------------------------------
PRICE_DYNAMODB_READ_UNIT = 0.125 / 1_000_000
# A ledger index entry is its keys only: the item id (~66 characters) and the shard, ~90 bytes; a page
# of one batch (75) is under 8 KB: two 4 KB units, eventually consistent (half a unit each).
INDEX_ENTRY_BYTES = 90
# The writes per subscription re-read, as the reconciler makes them: the lease (UpdateItem) and either
# the expiry refresh (unchanged) or the write-ahead and the commit (drifted); a ledger item is under
# 1 KB (about a dozen rokt:* values of ~60 characters): one write unit each.
WRITES_UNCHANGED = 2
WRITES_DRIFTED = 3
BRAZE_CALL_SECONDS = 0.3


@dataclass(frozen=True)
class Ledger:
    """The subscriptions the ledger knows, and the reconciliation's settings."""

    subscriptions: int
    reads_per_second: float
    period_seconds: float
    drift_fraction: float = 0.01  # of the subscriptions read, those whose values drifted
    upstream_ms: float = 340.0
    aws_call_ms: float = 8.0


def reconciliation(ledger: Ledger) -> dict[str, Any]:
    """A day of reconciliation for ``ledger``: Rokt reads, DynamoDB units, Braze calls, Lambda seconds."""
    passes = 86_400 / ledger.period_seconds
    runs = 86_400 / (RECONCILE_EVERY_MINUTES * 60)
    reads = ledger.subscriptions * passes
    drifted = reads * ledger.drift_fraction
    batches = math.ceil(ledger.subscriptions / BATCH_SIZE) * passes
    page_units = math.ceil(BATCH_SIZE * INDEX_ENTRY_BYTES / 4096) * 0.5
    count_units = math.ceil(ledger.subscriptions * INDEX_ENTRY_BYTES / 4096) * 0.5 * passes  # sized per pass
    read_units = batches * page_units + count_units + runs * 0.5  # pages, the count, the cursor once per run
    write_units = (reads - drifted) * WRITES_UNCHANGED + drifted * WRITES_DRIFTED + batches + runs  # + cursor saves
    braze_calls = min(drifted, batches * (1 - (1 - ledger.drift_fraction) ** BATCH_SIZE))
    per_batch = (
        max(BATCH_SIZE / ledger.reads_per_second, BATCH_SIZE / MAX_PARALLEL_READS * ledger.upstream_ms / 1000)
        + BATCH_SIZE * WRITES_UNCHANGED * ledger.aws_call_ms / 1000 / MAX_PARALLEL_READS
    )
    lambda_seconds = batches * per_batch + braze_calls * BRAZE_CALL_SECONDS + runs * 0.1
    cost = {
        "lambda": runs * PRICE_LAMBDA_REQUEST + lambda_seconds * LAMBDA_MEMORY_GB * PRICE_LAMBDA_GB_SECOND,
        "dynamodb": read_units * PRICE_DYNAMODB_READ_UNIT + write_units * PRICE_DYNAMODB_WRITE_UNIT,
    }
    capacity_per_day = runs * (RECONCILE_EVERY_MINUTES * 60 - 30) / per_batch * BATCH_SIZE
    return {
        "rokt_reads_per_day": round(reads),
        "rokt_reads_per_second_average": round(reads / 86_400, 2),
        "dynamodb_read_units_per_day": round(read_units),
        "dynamodb_write_units_per_day": round(write_units),
        "braze_calls_per_day": round(braze_calls),
        "lambda_seconds_per_day": round(lambda_seconds),
        "runs_per_day": round(runs),
        "fits_the_period": reads <= capacity_per_day,
        "estimated_cost_usd_per_day": {k: round(v, 3) for k, v in cost.items()}
        | {"total": round(sum(cost.values()), 3)},
    }


def render_reconciliation(ledger: Ledger, result: dict[str, Any]) -> str:
    cost = result["estimated_cost_usd_per_day"]
    fits = (
        "every subscription is re-read within the period"
        if result["fits_the_period"]
        else "NOT every subscription fits the period at this read ceiling: raise RECONCILE_READS_PER_SECOND"
    )
    return "\n".join(
        [
            f"reconciliation: {ledger.subscriptions:,} subscriptions, a pass every {ledger.period_seconds / 3600:g} h, "
            f"at most {ledger.reads_per_second:g} Rokt reads/s, {ledger.drift_fraction:.1%} drifted",
            f"Rokt reads/day: {result['rokt_reads_per_day']:,} (average {result['rokt_reads_per_second_average']}/s)",
            f"DynamoDB/day: {result['dynamodb_read_units_per_day']:,} read units (the ledger index: its count and "
            "pages; the cursor), "
            f"{result['dynamodb_write_units_per_day']:,} write units (leases, expiry refreshes, healed entries)",
            f"Braze /users/track calls/day: {result['braze_calls_per_day']:,} (only for what drifted)",
            f"Lambda seconds/day: {result['lambda_seconds_per_day']:,} over {result['runs_per_day']} runs; {fits}",
            "estimated AWS cost/day: " + ", ".join(f"{k} ${v:,.3f}" for k, v in cost.items()),
        ]
    )
