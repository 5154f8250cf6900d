"""A Braze stand-in for reliability tests: sends webhooks with bounded concurrency and retries them
the way Braze does — 408, 429 and 5xx up to 5 times with exponential backoff, honouring Retry-After,
never 3xx/other 4xx — with time scaled down. Loopback only; every loop is bounded."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

RETRIED = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRIES = 5
TIMEOUT_SECONDS = 90  # Braze's own; API Gateway would cut at 29


@dataclass(frozen=True)
class Attempt:
    status: int  # 0: no answer (connection failed)
    seconds: float
    retry_after: str | None = None
    error: str | None = None
    duplicate: bool = False


@dataclass
class Webhook:
    path: str
    body: Any
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> int:
        return self.attempts[-1].status if self.attempts else 0

    @property
    def event_id(self) -> str:
        return str(self.body["event"]["eventId"])

    @property
    def gave_up(self) -> bool:
        return self.final in RETRIED or self.final == 0


class BrazeSimulator:
    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        concurrency: int = 8,
        first_backoff: float = 60.0,
        time_scale: float = 0.002,
        max_wait: float = 2.0,
    ) -> None:
        host = urlsplit(base_url).hostname or ""
        if not (host == "localhost" or host.startswith("127.")):
            raise ValueError("the Braze simulator only targets loopback")
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret}", "User-Agent": "Braze Sender (simulator)"}
        self._concurrency = concurrency
        self._first_backoff = first_backoff
        self._scale = time_scale
        self._max_wait = max_wait

    def send_all(self, webhooks: list[Webhook]) -> list[Webhook]:
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            list(pool.map(self._deliver, webhooks))
        return webhooks

    def _deliver(self, webhook: Webhook) -> None:
        for retry in range(MAX_RETRIES + 1):
            attempt = self._attempt(webhook)
            webhook.attempts.append(attempt)
            if attempt.status not in RETRIED and attempt.status != 0:
                return
            if retry < MAX_RETRIES:
                time.sleep(self._wait(retry, attempt.retry_after))

    def _attempt(self, webhook: Webhook) -> Attempt:
        started = time.monotonic()
        try:
            answer = requests.post(
                self._base_url + webhook.path, json=webhook.body, headers=self._headers, timeout=TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            return Attempt(0, time.monotonic() - started, error=type(exc).__name__)
        try:
            duplicate = bool(answer.json().get("duplicate")) if answer.status_code < 300 else False
        except ValueError:
            duplicate = False
        return Attempt(
            answer.status_code, time.monotonic() - started, answer.headers.get("Retry-After"), None, duplicate
        )

    def _wait(self, retry: int, retry_after: str | None) -> float:
        backoff = self._first_backoff * 2.0**retry
        if retry_after and retry_after.isdigit():
            backoff = max(backoff, float(retry_after))
        return min(backoff * self._scale, self._max_wait)


def accounting(webhooks: list[Webhook], deliveries: dict[str, int]) -> dict[str, int]:
    """delivered / refused / lost / doubled over unique event ids, from Braze's and Rokt's sides."""
    by_event: dict[str, list[Webhook]] = {}
    for webhook in webhooks:
        by_event.setdefault(webhook.event_id, []).append(webhook)
    counts = {"events": len(by_event), "delivered": 0, "refused": 0, "lost": 0, "doubled": 0}
    for event_id, sends in by_event.items():
        times = deliveries.get(event_id, 0)
        if times > 1:
            counts["doubled"] += 1
        if times >= 1:
            counts["delivered"] += 1
        elif all(s.final not in RETRIED and s.final >= 400 for s in sends):
            counts["refused"] += 1
        else:
            counts["lost"] += 1
    counts["retried"] = sum(len(w.attempts) - 1 for w in webhooks)
    counts["duplicates_suppressed"] = sum(1 for w in webhooks if w.attempts and w.attempts[-1].duplicate)
    counts["slowest_answer_ms"] = int(max((a.seconds for w in webhooks for a in w.attempts), default=0) * 1000)
    return counts
