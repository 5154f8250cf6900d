"""`make run` in queued mode: chalice local answers 202 and the local queue worker delivers."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest
import requests

from localworld.localstack import LocalStack
from localworld.seed import LOCAL_WEBHOOK_SECRET
from stage.project import SAMPLE_BODY
from tests.conftest import Sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.isolated("e2eq", queued=True) as local:
        yield local


def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_queued_webhooks_are_answered_202_then_delivered_once(stack: LocalStack):
    sandbox = Sandbox(stack.sandbox_url)
    body = {**SAMPLE_BODY, "event": {**SAMPLE_BODY["event"], "eventId": f"Queued_{uuid.uuid4().hex[:8]}_user42"}}
    headers = {"Authorization": f"Bearer {LOCAL_WEBHOOK_SECRET}"}

    answers = [
        requests.post(f"{stack.bridge_url}/v1/subscriptionevent/brazetest", json=body, headers=headers, timeout=10)
        for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json()["status"] == "queued"
    assert wait_for(lambda: sandbox.count("events_created") >= 1)
    time.sleep(1.5)  # give a duplicate (there must be none) time to arrive
    [stored] = sandbox.events("brazetest")
    assert stored["deliveries"] == 1
