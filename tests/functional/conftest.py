"""Fixtures of the spilling route, shared by test_spill.py and test_breaker.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from chalicelib.delivery.queue import delivery_queue_names
from tests.conftest import serving
from tests.support.queues import QueuePair
from tests.support.spilling import FakeClock, spilling_bridge

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalice.test import Client

    from chalicelib.settings import Settings
    from tests.conftest import Aws


@pytest.fixture
def queues(aws: Aws) -> QueuePair:
    """The stage's delivery queue (test_queue.py declares its own)."""
    return QueuePair(aws.sqs(), *delivery_queue_names("test"), 1000, "deliver_queued")


@pytest.fixture
def breaker_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spilling(settings: Settings, aws: Aws, queues: QueuePair, breaker_clock: FakeClock) -> Iterator[Client]:
    with serving(spilling_bridge(settings, aws, queues, breaker_clock)) as client:
        yield client
