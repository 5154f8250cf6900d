"""Time budget for one webhook, so every answer leaves before API Gateway's 29 s cut-off."""

from __future__ import annotations

import time
from collections.abc import Callable

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

    def remaining(self) -> float:
        return self._ends_at - self._clock()

    def timeout(self, connect: float, read: float) -> tuple[float, float]:
        """Per-call (connect, read) timeouts clipped to what is left; UpstreamTimeout when nothing is."""
        left = self.remaining()
        if left < MIN_ATTEMPT_SECONDS:
            raise UpstreamTimeout("Rokt did not answer within the time budget")
        return min(connect, left), min(read, left)

    def pause(self, seconds: float) -> bool:
        """Sleep before a retry if the budget still allows an attempt afterwards; False when it doesn't."""
        if self.remaining() - seconds < MIN_ATTEMPT_SECONDS * 4:
            return False
        self._sleep(max(seconds, 0.0))
        return True
