"""One upstream error type: Braze's errors are BridgeErrors, so the sync consumer decides every fate
from ``retryable`` and ``retry_after`` alone, whatever the upstream."""

from __future__ import annotations

import pytest

from chalicelib.braze.client import BrazeOutcomeUnknown, BrazeRateLimited, BrazeRejected, BrazeUnavailable
from chalicelib.errors import BridgeError, DependencyUnavailable, SubscriptionBusy


@pytest.mark.parametrize(
    ("error", "retryable", "retry_after"),
    [
        (BrazeRateLimited(42), True, 42),
        (BrazeUnavailable("Braze answered HTTP 503"), True, None),
        (BrazeOutcomeUnknown("Braze did not answer (ReadTimeout)"), True, None),
        (BrazeRejected(400, "Invalid attribute"), False, None),
        (SubscriptionBusy("another consumer is writing this subscription", retry_after=7), True, 7),
        (DependencyUnavailable("the sync ledger (DynamoDB) is unavailable"), True, None),
    ],
)
def test_every_upstream_error_says_whether_and_when_to_retry(error: BridgeError, retryable: bool, retry_after: int):
    assert isinstance(error, BridgeError)
    assert error.retryable is retryable
    assert error.retry_after == retry_after
    assert error.code
