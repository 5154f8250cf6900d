"""The sync flow's edge decisions, without IO: when a consumer stops retrying, what replay-dlq says
about a dead letter without a reason, and which account values a webhook leaves unknown."""

from __future__ import annotations

from bridgectl.dead_letters import dead_letter_reason
from chalicelib.sqs import RetryHorizon
from chalicelib.sync.envelope import Account
from chalicelib.sync.mapping import known_account, subscriber, suffix

SUBSCRIPTION = "06423672-b6ba-4536-aa36-70788a7a0a36"
HORIZON = RetryHorizon(3600.0)


def test_the_horizon_counts_the_next_delay_and_the_last_receive_sqs_allows():
    assert HORIZON.give_up(age=3000, delay=300, receives=4, max_receives=1000) is None
    assert HORIZON.give_up(age=3400, delay=300, receives=4, max_receives=1000) == (
        "gave up after 0.9 h of retries (horizon 1 h)"
    )
    assert HORIZON.give_up(age=None, delay=30, receives=9, max_receives=10) is None
    assert HORIZON.give_up(age=None, delay=30, receives=10, max_receives=10) == (
        "gave up after 10 receives (the queue's redrive limit)"
    )
    assert HORIZON.give_up(age=None, delay=30, receives=5000, max_receives=None) is None


def test_a_dead_letter_without_a_reason_is_described_from_what_sqs_recorded():
    moved = {
        "MessageAttributes": {"eventId": {"DataType": "String", "StringValue": "w-1"}},
        "Attributes": {
            "ApproximateReceiveCount": "1001",
            "SentTimestamp": "1796197329470",
            "DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-prod-sync",
        },
    }
    said = dead_letter_reason(moved)
    assert said.startswith("no reason recorded: moved by SQS's redrive policy after 1000 receives")
    assert "from rokt-calendar-bridge-prod-sync" in said
    assert "first queued 2026-12-02T" in said
    parked = {"MessageAttributes": {"deadLetterReason": {"DataType": "String", "StringValue": "why"}}}
    assert dead_letter_reason(parked) == "why"
    assert dead_letter_reason({}).startswith("no reason recorded: moved by SQS's redrive policy (")


def test_account_values_a_webhook_does_not_carry_come_from_the_ledger_unchanged():
    long_name = "N" * 300  # written truncated to Braze's 255 characters
    written = subscriber(SUBSCRIPTION, {}, Account("brazetest", "acc-1", long_name), "none").values

    known = known_account(SUBSCRIPTION, Account("brazetest"), {}, written)
    again = subscriber(SUBSCRIPTION, {}, known, "none").values

    assert again["rokt:account_id"] == written["rokt:account_id"] == [f"acc-1/{suffix(SUBSCRIPTION)}"]
    assert again["rokt:account_name"] == written["rokt:account_name"]
    assert known_account(SUBSCRIPTION, Account("b", "new"), {}, written).id == "new"  # the webhook wins
    assert known_account(SUBSCRIPTION, Account("b"), {"accountName": "From Rokt"}, written).name == "From Rokt"
    assert known_account(SUBSCRIPTION, Account("b"), None, None) == Account("b")
