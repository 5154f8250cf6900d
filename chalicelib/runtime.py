"""What one Lambda container runs on besides its clients: clocks, sleep, threads, locks and ids.

In AWS these are the system's (``SYSTEM``). They are one injected object, so that the bridge's own
code reads the time, sleeps, starts a thread or draws an id only through whoever built it: tests give
fake clocks, and the deterministic simulator (``tests/simulation``) gives every container its own
skewed clock, virtual sleep, cooperative threads and seeded ids, so that one seed replays every
interleaving exactly.
"""

from __future__ import annotations

import threading
import time as _time
import uuid
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


class Lock(Protocol):
    """A lock that may be held across IO (``threading.Lock``'s interface)."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> bool: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _threads(workers: int, name: str) -> Executor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Runtime:
    """``time``: wall-clock epoch seconds, what is stored and compared across containers;
    ``monotonic``: durations and budgets inside one container; ``executor(workers, name)``: a pool for
    work that runs in parallel; ``new_id``: a fresh unique id (32 hex digits) for lease owners and
    queued intents."""

    time: Callable[[], float] = _time.time
    monotonic: Callable[[], float] = _time.monotonic
    sleep: Callable[[float], None] = _time.sleep
    lock: Callable[[], Lock] = threading.Lock
    executor: Callable[[int, str], Executor] = _threads
    new_id: Callable[[], str] = _new_id


SYSTEM = Runtime()
