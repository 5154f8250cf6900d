"""Send webhooks the way Braze does: bounded concurrency, a campaign rate limit per minute, and
Braze's retry rule — 408, 429 and 5xx retried up to 5 times with exponential backoff, honouring
Retry-After, never 3xx or other 4xx. Time can be compressed (``time_scale``) for local runs and
tests. Loopback only; every loop is bounded.

Compressing Braze's own schedule (its backoff) is not the same as compressing the bridge's: the
bridge, its dependencies and the faults injected into them run in real time, and a ``Retry-After``
the bridge answers is in its seconds. ``retry_after_scale`` (default: ``time_scale``, as before)
says how to read it; 1.0 honours it as Braze would, in the bridge's time. And Braze schedules a
retry, it does not hold a connection slot while it waits: with ``waiting`` > 0 up to that many
webhooks may wait for their retry while ``concurrency`` others are being sent."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from chalicelib.settings import APP_NAME
from localworld.httpkit import is_loopback_url

if TYPE_CHECKING:
    from collections.abc import Callable

RETRIED = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRIES = 5
TIMEOUT_SECONDS = 90  # Braze's own; API Gateway would cut at 29
USER_AGENT = f"Braze Sender ({APP_NAME} simulator)"


@dataclass(frozen=True)
class Attempt:
    status: int  # 0: no answer (connection failed)
    seconds: float
    retry_after: str | None = None
    error: str | None = None
    duplicate: bool = False
    answer: Any = None


@dataclass
class Webhook:
    """One rendered webhook: ``path`` (relative to the sender's base URL) or a full URL; ``body`` a
    JSON-able value or the raw text a template rendered."""

    path: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    user: str = ""
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> int:
        return self.attempts[-1].status if self.attempts else 0

    @property
    def event_id(self) -> str:
        body = self.body
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                return ""
        event = body.get("event") if isinstance(body, dict) else None
        return str(event.get("eventId", "")) if isinstance(event, dict) else ""

    @property
    def gave_up(self) -> bool:
        return self.final in RETRIED or self.final == 0


class BrazeSender:
    def __init__(
        self,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        concurrency: int = 8,
        rate_per_minute: int | None = None,
        first_backoff: float = 60.0,
        time_scale: float = 1.0,
        max_wait: float = 60.0,
        on_done: Callable[[Webhook], None] | None = None,
        retry_after_scale: float | None = None,
        waiting: int = 0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._concurrency = concurrency
        self._interval = 60.0 / rate_per_minute * time_scale if rate_per_minute else 0.0
        self._first_backoff = first_backoff
        self._scale = time_scale
        self._retry_after_scale = time_scale if retry_after_scale is None else retry_after_scale
        self._max_wait = max_wait
        self._waiting = max(waiting, 0)
        self._slots = threading.BoundedSemaphore(concurrency)  # requests in flight at once
        self._on_done = on_done
        self._pace = threading.Lock()
        self._next_start = time.monotonic()
        self._session = requests.Session()

    def send_all(self, webhooks: list[Webhook]) -> list[Webhook]:
        for webhook in webhooks:
            if not is_loopback_url(self._url(webhook)):
                raise ValueError(f"the Braze simulator only targets loopback, not {self._url(webhook)!r}")
        with ThreadPoolExecutor(max_workers=self._concurrency + self._waiting) as pool:
            list(pool.map(self._deliver, webhooks))
        return webhooks

    def _url(self, webhook: Webhook) -> str:
        return webhook.path if webhook.path.startswith(("http://", "https://")) else self._base_url + webhook.path

    def _deliver(self, webhook: Webhook) -> None:
        for retry in range(MAX_RETRIES + 1):
            with self._slots:
                self._wait_for_rate()
                attempt = self._attempt(webhook)
            webhook.attempts.append(attempt)
            if attempt.status not in RETRIED and attempt.status != 0:
                break
            if retry < MAX_RETRIES:
                time.sleep(self._wait(retry, attempt.retry_after))
        if self._on_done is not None:
            self._on_done(webhook)

    def _wait_for_rate(self) -> None:
        """The campaign's rate limit: webhook starts spaced evenly over the minute (compressed)."""
        if not self._interval:
            return
        with self._pace:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        time.sleep(max(start - now, 0.0))

    def _attempt(self, webhook: Webhook) -> Attempt:
        started = time.monotonic()
        raw = webhook.body if isinstance(webhook.body, (str, bytes)) else json.dumps(webhook.body)
        headers = {"Content-Type": "application/json", **self._headers, **webhook.headers}
        try:
            answer = self._session.post(
                self._url(webhook), data=raw.encode("utf-8") if isinstance(raw, str) else raw, headers=headers,
                timeout=TIMEOUT_SECONDS, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as exc:
            return Attempt(0, time.monotonic() - started, error=type(exc).__name__)
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        duplicate = bool(parsed.get("duplicate")) if isinstance(parsed, dict) and answer.status_code < 300 else False
        return Attempt(
            answer.status_code, time.monotonic() - started, answer.headers.get("Retry-After"), None, duplicate, parsed
        )

    def _wait(self, retry: int, retry_after: str | None) -> float:
        """Braze's backoff (compressed), or the answer's Retry-After (read in the bridge's time) if
        later; bounded by ``max_wait``."""
        wait = self._first_backoff * 2.0**retry * self._scale
        if retry_after and retry_after.isdigit():
            wait = max(wait, float(retry_after) * self._retry_after_scale)
        return min(wait, self._max_wait)
