"""The spilling route under test: direct mode with the delivery queue behind it and a breaker with a
small threshold and an injected clock (shared by the spill and breaker tests; fixtures in
tests/functional/conftest.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.delivery.service import DeliveryOutcome
from chalicelib.runtime import Runtime
from chalicelib.wiring import Bridge

if TYPE_CHECKING:
    from chalicelib.clock import Deadline
    from chalicelib.delivery.models import EventRequest
    from chalicelib.settings import Settings
    from tests.conftest import Aws, Sandbox
    from tests.support.queues import QueuePair

CREATE = "/v1/subscriptionevent/brazetest"
THRESHOLD = 3
COOLDOWN = 30.0


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spilling_bridge(settings: Settings, aws: Aws, queues: QueuePair, clock: FakeClock, **clients: object) -> Bridge:
    return Bridge(
        replace(
            settings,
            delivery_queue_url=queues.url,
            breaker_failure_threshold=THRESHOLD,
            breaker_cooldown_seconds=COOLDOWN,
        ),
        ssm_client=clients.get("ssm_client") or aws.ssm(),  # type: ignore[arg-type]
        dynamodb_client=clients.get("dynamodb_client") or aws.dynamodb(),  # type: ignore[arg-type]
        sqs_client=aws.sqs(),
        runtime=Runtime(monotonic=lambda: time.monotonic() + clock.now),
    )


def rokt_event_calls(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests() if "/v1/subscriptionevent/" in r["path"])


# In-memory doubles of the spilling route's two paths (Rokt, the queue), for tests without IO.


def outcome(status: Any = "delivered", duplicate: bool = False) -> DeliveryOutcome:
    return DeliveryOutcome(status, "update", "brazetest", "Event_0001_user42", 202, duplicate=duplicate)


class ScriptedDeliverer:
    """Answers each call with the next of ``answers`` (an outcome, or an error to raise)."""

    def __init__(self, *answers: DeliveryOutcome | Exception) -> None:
        self._answers = list(answers)
        self.calls = 0

    def deliver(
        self, request: EventRequest, deadline: Deadline, lambda_context: Any = None, received_at: float | None = None
    ) -> DeliveryOutcome:
        self.calls += 1
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class RecordingQueue:
    def __init__(self) -> None:
        self.queued = 0

    def deliver(
        self, request: EventRequest, deadline: Deadline, lambda_context: Any = None, received_at: float | None = None
    ) -> DeliveryOutcome:
        self.queued += 1
        return outcome("queued")
