"""The token provider under threads: a caller waiting for another's refresh waits no longer than its
own deadline (the sync consumer reads up to 8 subscriptions at once through one provider)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.clock import Deadline
from chalicelib.errors import UpstreamTimeout
from chalicelib.rokt.tokens import AccessToken, TokenProvider

BOUND_SECONDS = 10.0  # a bound for the test itself, never reached when the code is right


class HangingEndpoint:
    """Rokt's token endpoint, hanging until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def fetch(self, client_id: str, client_secret: str, deadline: Deadline, now: float) -> AccessToken:
        self.entered.set()
        self.release.wait(BOUND_SECONDS)
        return AccessToken(value="fresh", expires_at=now + 300)


class EmptyStore:
    """SSM with the credentials and no shared token."""

    def get(self, name: str, max_age: float, force_fetch: bool = False) -> str:
        return "value"

    def get_json(self, name: str) -> Any:
        return None

    def put_secure(self, name: str, value: str) -> None:
        return None


def test_a_caller_waiting_for_another_refresh_gives_up_at_its_own_deadline():
    endpoint = HangingEndpoint()
    provider = TokenProvider(endpoint, EmptyStore(), jitter=0.0)  # type: ignore[arg-type]
    first = threading.Thread(target=provider.get, args=(Deadline(BOUND_SECONDS),), daemon=True)
    first.start()
    assert endpoint.entered.wait(BOUND_SECONDS)
    try:
        with pytest.raises(UpstreamTimeout):
            provider.get(Deadline(0.2))  # returns while the first refresh still hangs
        assert first.is_alive()
    finally:
        endpoint.release.set()
        first.join(BOUND_SECONDS)
    assert provider.get(Deadline(1.0)) == "fresh"
