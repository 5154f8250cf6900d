"""A loopback endpoint that records what is POSTed to it and answers with scripted statuses."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from localworld.httpkit import BackgroundServer, JsonHandler, LoopbackServer


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []


class _Handler(JsonHandler):
    server: LoopbackServer[_State]

    def do_POST(self) -> None:
        body = json.loads(self.read_body() or b"null")
        with self.server.state.lock:
            self.server.state.received.append(body)
            status = self.server.state.statuses.pop(0) if self.server.state.statuses else 200
        self.send_json(status, {"status": status})


class Receiver(BackgroundServer[_State]):
    """``with Receiver() as hook: hook.answer(500, 302); ... hook.received``"""

    def __init__(self) -> None:
        super().__init__(LoopbackServer(("127.0.0.1", 0), _Handler, _State(), False), "receiver")

    def answer(self, *statuses: int) -> None:
        """The next answers, in order; 200 after them."""
        with self.state.lock:
            self.state.statuses.extend(statuses)

    @property
    def received(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.received
            time.sleep(0.02)
        raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")
