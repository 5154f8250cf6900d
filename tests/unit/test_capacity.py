from __future__ import annotations

import pytest

from bridgectl import capacity

MEASURED = capacity.Measured(
    cpu_ms=10.0, dynamodb_calls=2.0, ssm_reads=0.001, rokt_calls=1.0, token_calls_per_lifetime=2
)


def test_small_send_within_rokt_limit_stays_direct():
    send = capacity.Send(audience=6_000, braze_rate_per_minute=6_000, upstream_ms=70, rokt_rate_per_second=500)

    result = capacity.plan(send, MEASURED)

    # 100 webhooks/s x (10 ms CPU + 2 x 8 ms AWS + 70 ms Rokt = 96 ms) → 9.6 → 10 concurrent
    assert result["webhooks_per_second"] == 100
    assert result["seconds_in_bridge_per_webhook"] == pytest.approx(0.096)
    assert result["lambda_concurrency"] == 10
    assert result["dynamodb_write_units_per_second"] == 200
    assert result["rokt_calls_per_second"] == 100
    assert result["exceeds_rokt_rate"] is False
    assert result["braze_rate_to_set_per_minute"] == 6_000
    assert result["ssm_reads_total"] == 6


def test_send_above_rokt_limit_gets_a_rate_and_queued_advice():
    send = capacity.Send(audience=1_000_000, braze_rate_per_minute=500_000, upstream_ms=300, rokt_rate_per_second=200)

    result = capacity.plan(send, MEASURED)

    assert result["exceeds_rokt_rate"] is True
    assert result["braze_rate_to_set_per_minute"] == 12_000
    # 200/s x 0.326 s per delivery = 65.2 consumers → 65 keeps the queue under Rokt's rate
    assert result["queued_max_concurrency"] == 65
    assert result["lambda_limit_increase_needed"] is True
    text = capacity.render(send, result)
    assert "set Braze's rate limit to 12,000/minute" in text
    assert "MAX_CONCURRENCY=65" in text


def test_measured_figures_come_from_bench_results():
    measured = capacity.Measured.from_results(
        {
            "cpu_ms_per_webhook_bridge": 9.5,
            "dynamodb_calls_per_webhook": 2.0,
            "ssm_reads_per_webhook": 0.006,
            "rokt_event_calls": 10_000,
            "webhooks": 10_000,
            "token_calls_total": 2,
        }
    )

    assert (measured.cpu_ms, measured.rokt_calls, measured.token_calls_per_lifetime) == (9.5, 1.0, 2.0)


def test_reconciliation_of_100k_subscriptions_a_day():
    ledger = capacity.Ledger(100_000, reads_per_second=10, period_seconds=86_400, drift_fraction=0.01)

    result = capacity.reconciliation(ledger)

    assert result["rokt_reads_per_day"] == 100_000  # each subscription once per period
    assert result["runs_per_day"] == 96
    # 1,334 batches: their index pages (two 4 KB units, half a read unit each), the pass's count of
    # the index (100k x 90 bytes: 2,198 units, half each) and 96 cursor reads
    assert result["dynamodb_read_units_per_day"] == round(1334 * 1 + 2198 * 0.5 + 96 * 0.5)
    # 2 writes per unchanged subscription, 3 per drifted one, one cursor save per batch and per run
    assert result["dynamodb_write_units_per_day"] == (99_000 * 2 + 1_000 * 3 + 1334 + 96)
    assert 0 < result["braze_calls_per_day"] <= 1_000  # only batches with a drifted subscription call Braze
    assert result["lambda_seconds_per_day"] >= 100_000 / 10  # the read ceiling paces the runs
    assert result["fits_the_period"]


def test_a_read_ceiling_too_low_for_the_period_says_so():
    ledger = capacity.Ledger(5_000_000, reads_per_second=10, period_seconds=86_400)

    assert not capacity.reconciliation(ledger)["fits_the_period"]
