"""A per-container circuit breaker in front of Rokt, for the HTTP route when it can spill to the queue.

Closed: calls go through. After ``failure_threshold`` retryable failures in a row (or a Rokt 429 that
names a ``Retry-After``) it opens: for ``cooldown_seconds`` (or the Retry-After, if longer) the route
does not call Rokt at all and spills at once. Then one call is let through as a probe (half-open):
an answer from Rokt (a delivery or a refusal) closes the breaker, a failure opens it again, and a
call that ends without a word from Rokt (a duplicate or ``superseded`` answer from DynamoDB, a webhook
sent behind queued intents, one in flight elsewhere) leaves the probe to the next request. State
changes are logged and counted (``BreakerOpened``/``BreakerClosed``); the state lives in the
container, so a fleet of N containers sends at most N probes per cool-down.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Literal

from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from collections.abc import Callable

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, failure_threshold: int, cooldown_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = max(failure_threshold, 1)
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()  # chalice local serves requests on threads; Lambda one at a time
        self._state: State = "closed"
        self._failures = 0
        self._open_until = 0.0

    def allow(self) -> bool:
        """May this request call Rokt? Open: no, until the cool-down ends; then one probe may."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open" and self._clock() >= self._open_until:
                self._change("half_open", "cool-down over: one probe goes to Rokt")
                return True
            return False

    def succeeded(self) -> None:
        """Rokt itself answered (a delivery, or a refusal: either way it is up) — never an answer
        taken from DynamoDB."""
        with self._lock:
            self._failures = 0
            if self._state != "closed":
                self._change("closed", "Rokt answered the probe")

    def failed(self, retry_after: float | None = None) -> None:
        """A retryable failure (Rokt, the token endpoint, SSM or DynamoDB); ``retry_after`` from a 429."""
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or self._failures >= self._threshold or retry_after is not None:
                pause = max(self._cooldown, float(retry_after or 0))
                self._open_until = self._clock() + pause
                if self._state != "open":
                    self._change("open", f"{self._failures} retryable failure(s) in a row", pause)

    def abandoned(self) -> None:
        """The call ended with no word on Rokt's health (a duplicate or superseded answer from
        DynamoDB, the event in flight elsewhere): a half-open breaker lets the next request probe
        instead, and a closed one keeps its count of failures."""
        with self._lock:
            if self._state == "half_open":
                self._state = "open"

    def _change(self, state: State, why: str, pause: float | None = None) -> None:
        previous, self._state = self._state, state
        if state == "half_open":
            return  # a probe is not news: its result is
        extra: dict[str, object] = {"breaker": state, "previous": previous, "reason": why}
        if pause is not None:
            extra["coolDownSeconds"] = round(pause, 3)
        logger.warning(f"circuit breaker {state}", extra=extra)
        count("BreakerOpened" if state == "open" else "BreakerClosed")
