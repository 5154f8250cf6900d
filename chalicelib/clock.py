"""Time budget for one webhook, so every answer leaves before API Gateway's 29 s cut-off."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.errors import UpstreamTimeout

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Below this much time left, another upstream attempt cannot finish usefully.
MIN_ATTEMPT_SECONDS = 0.25


class Deadline:
    """A point in time (on an injected monotonic clock) by which upstream work must be over."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._ends_at = clock() + seconds

    @classmethod
    def within(
        cls, budget: float, context: Any, margin: float, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> Deadline:
        """``budget`` seconds, or less when the Lambda invocation (``context``) has less time left than
        that plus ``margin`` (what the answer, logs and bookkeeping still need after upstream work)."""
        seconds = budget
        remaining_ms = lambda_remaining_ms(context)
        if remaining_ms is not None:
            seconds = min(seconds, remaining_ms / 1000 - margin)
        return cls(seconds, clock=clock, sleep=sleep)

    def remaining(self) -> float:
        return self._ends_at - self._clock()

    def timeout(self, connect: float, read: float) -> tuple[float, float]:
        """Per-call (connect, read) timeouts that together fit what is left (a slow connect cannot
        push the read past the deadline); UpstreamTimeout when nothing is left."""
        left = self.remaining()
        if left < MIN_ATTEMPT_SECONDS:
            raise UpstreamTimeout("Rokt did not answer within the time budget")
        connect = min(connect, left / 2)
        return connect, max(min(read, left - connect), MIN_ATTEMPT_SECONDS / 2)

    def pause(self, seconds: float) -> bool:
        """Sleep before a retry if the budget still allows an attempt afterwards; False when it doesn't."""
        if self.remaining() - seconds < MIN_ATTEMPT_SECONDS * 4:
            return False
        self._sleep(max(seconds, 0.0))
        return True


def lambda_remaining_ms(context: Any) -> int | None:
    """The invocation's remaining time from a Lambda context (real, Chalice's local one, or None)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else None
