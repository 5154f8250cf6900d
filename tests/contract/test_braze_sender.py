"""The Braze simulator against a real HTTP server (the Rokt sandbox, whose answers and faults are
scripted): it must retry no sooner than real Braze would, relative to the system it sends to."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from localworld.braze_sender import BrazeSender, Webhook

if TYPE_CHECKING:
    from tests.conftest import Sandbox

PATH = "/v1/subscriptionevent/brazetest"  # no token: the sandbox answers 401, which Braze never retries


def webhook(event_id: str) -> Webhook:
    return Webhook(PATH, {"event": {"eventId": event_id}})


def test_a_retry_after_is_honoured_in_the_servers_time_while_braze_own_backoff_is_compressed(sandbox: Sandbox):
    # Given a server that answers 429 with Retry-After: 1 (its seconds) once
    sandbox.fault(status=429, retryAfter="1", count=1)
    sender = BrazeSender(sandbox.url, time_scale=0.002, max_wait=5.0, retry_after_scale=1.0)

    # When Braze's compressed first backoff (60 s x 0.002 = 0.12 s) is shorter than the Retry-After
    started = time.monotonic()
    [sent] = sender.send_all([webhook("E_retry_after")])

    # Then the retry waited the server's full second, not the compressed 2 ms
    assert [a.status for a in sent.attempts] == [429, 401]
    assert time.monotonic() - started >= 1.0


def test_a_webhook_waiting_for_its_retry_does_not_hold_a_connection_slot(sandbox: Sandbox):
    # Given one connection slot, and a server that asks the first webhook to come back in a second
    sandbox.fault(status=429, retryAfter="1", count=1)
    sender = BrazeSender(sandbox.url, concurrency=1, time_scale=0.002, max_wait=5.0, retry_after_scale=1.0, waiting=4)

    # When two webhooks are sent
    first, second = sender.send_all([webhook("E_first"), webhook("E_second")])

    # Then the second went out while the first waited for its retry
    order = [r["body"]["event"]["eventId"] for r in sandbox.requests()]
    assert order == ["E_first", "E_second", "E_first"]
    assert [a.status for a in first.attempts] == [429, 401]
    assert [a.status for a in second.attempts] == [401]
