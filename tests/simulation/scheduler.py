"""Virtual time and cooperative threads: the simulator's runtime.

Every actor (a Lambda invocation, a Braze sender, Rokt's webhook retries, an SQS poller, a task of
the sync consumer's read pool) is a real thread, but only one runs at a time: it runs until it
reaches an IO boundary (every AWS call, every HTTP exchange, every sleep), where it hands control
back and the scheduler picks who runs next from the seed. Time is virtual: it moves only when no
actor can run, to the earliest timer. So one seed is one history, replayed exactly.

An actor belongs to at most one invocation, whose ``kill_at`` is Lambda's timeout: the first IO
boundary at or after it raises :class:`Killed` (a BaseException the bridge's code does not catch),
and a killed actor does nothing more (every later boundary raises again).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from random import Random
    from types import TracebackType

MAX_STEPS_WITHOUT_TIME = 200_000  # a livelock guard: that many switches without time moving
MAX_BLOCKED_SECONDS = 30.0  # one actor's step, in real time: beyond, it is blocked outside the scheduler
MAX_WALL_SECONDS = 600.0  # a seed that takes longer is reported, not waited for


class Killed(BaseException):
    """The invocation this actor belongs to reached Lambda's timeout: it stops where it is."""


class Stuck(Exception):
    """The simulation cannot go on (a livelock, or an actor blocked outside the scheduler)."""


@dataclass
class Invocation:
    """What a group of actors shares: Lambda kills them together at ``kill_at``."""

    name: str
    kill_at: float | None = None
    killed: bool = False


@dataclass(eq=False)
class Actor:
    name: str
    run: Callable[[], Any]
    invocation: Invocation | None
    resume: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    done: bool = False
    killed: bool = False
    result: Any = None
    error: BaseException | None = None
    wait_token: int = 0
    thread: threading.Thread | None = None
    on_done: list[Callable[[Actor], None]] = field(default_factory=list)

    @property
    def kill_at(self) -> float | None:
        return self.invocation.kill_at if self.invocation is not None else None


class Scheduler:
    def __init__(self, rng: Random, on_time: Callable[[float], None] | None = None) -> None:
        self.now = 0.0
        self._rng = rng
        self._on_time = on_time
        self._ready: list[Actor] = []
        self._timers: list[tuple[float, int, Actor, int]] = []
        self._seq = itertools.count()
        self._baton = threading.Semaphore(0)
        self._current: Actor | None = None
        self._local = threading.local()
        self.steps = 0
        self.live: set[Actor] = set()

    # --- from the scheduler's side ---------------------------------------------------------------
    def spawn(
        self,
        name: str,
        run: Callable[[], Any],
        *,
        at: float | None = None,
        invocation: Invocation | None = None,
        on_done: Callable[[Actor], None] | None = None,
    ) -> Actor:
        """A new actor, ready now (or at virtual time ``at``)."""
        actor = Actor(name, run, invocation)
        if on_done is not None:
            actor.on_done.append(on_done)
        thread = threading.Thread(target=self._body, args=(actor,), name=f"sim:{name}", daemon=True)
        actor.thread = thread
        self.live.add(actor)
        thread.start()
        if at is None or at <= self.now:
            self._ready.append(actor)
        else:
            self._timer(at, actor)
        return actor

    def run(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        """Run actors until ``done()`` holds with nothing left to run, or virtual time reaches ``until``."""
        idle_steps = 0
        started = time.monotonic()
        while True:
            if self.steps % 1000 == 0 and time.monotonic() - started > MAX_WALL_SECONDS:
                raise Stuck(f"the run took over {MAX_WALL_SECONDS:g} s of real time (t={self.now:.0f}s)")
            if self._ready:
                index = self._rng.randrange(len(self._ready)) if len(self._ready) > 1 else 0
                actor = self._ready.pop(index)
                self._switch_to(actor)
                idle_steps += 1
                if idle_steps > MAX_STEPS_WITHOUT_TIME:
                    raise Stuck(f"{idle_steps} switches at t={self.now:.3f} without time moving")
                continue
            if done() or not self._timers:
                return
            due = self._timers[0][0]
            if due > until:
                return
            self._advance(due)
            idle_steps = 0
            while self._timers and self._timers[0][0] <= self.now:
                _, _, actor, token = heapq.heappop(self._timers)
                if token == actor.wait_token and not actor.done and actor not in self._ready:
                    self._ready.append(actor)

    def close(self) -> None:
        """Kill every actor left (a run that stopped at ``until``) so its thread ends."""
        for actor in list(self.live):
            if actor.invocation is None:
                actor.invocation = Invocation(actor.name)
            actor.invocation.kill_at = self.now
            actor.invocation.killed = True
        for actor in list(self.live):
            if not actor.done:
                self._switch_to(actor)

    # --- from an actor's side ----------------------------------------------------------------------
    @property
    def current(self) -> Actor:
        actor: Actor | None = getattr(self._local, "actor", None)
        if actor is None:
            raise Stuck("an IO boundary was reached outside any actor")
        return actor

    def pause(self) -> None:
        """An IO boundary: any ready actor may run before this one goes on."""
        actor = self.current
        self._check(actor)
        self._ready.append(actor)
        self._yield(actor)

    def sleep(self, seconds: float) -> None:
        """This actor waits ``seconds`` of virtual time (no longer than its invocation lives)."""
        actor = self.current
        self._check(actor)
        wake = self.now + max(seconds, 0.0)
        if actor.kill_at is not None:
            wake = min(wake, max(actor.kill_at, self.now))
        actor.wait_token += 1
        self._timer(wake, actor)
        self._yield(actor)

    def park(self, waiters: Waiters, timeout: float | None) -> None:
        """Wait until ``waiters`` is notified or ``timeout`` passes (callers re-check their condition)."""
        actor = self.current
        self._check(actor)
        actor.wait_token += 1
        waiters.parked.append(actor)
        wake = None if timeout is None else self.now + max(timeout, 0.0)
        if actor.kill_at is not None:
            wake = max(actor.kill_at, self.now) if wake is None else min(wake, max(actor.kill_at, self.now))
        if wake is not None:
            self._timer(wake, actor)
        self._yield(actor)
        if actor in waiters.parked:
            waiters.parked.remove(actor)

    def wake(self, waiters: Waiters) -> None:
        for actor in waiters.parked:
            actor.wait_token += 1
            if not actor.done and actor not in self._ready:
                self._ready.append(actor)
        waiters.parked.clear()

    # --- plumbing ----------------------------------------------------------------------------------
    def _timer(self, due: float, actor: Actor) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), actor, actor.wait_token))

    def _advance(self, due: float) -> None:
        if due > self.now:
            self.now = due
            if self._on_time is not None:
                self._on_time(due)

    def _switch_to(self, actor: Actor) -> None:
        self._current = actor
        self.steps += 1
        actor.resume.release()
        if not self._baton.acquire(timeout=MAX_BLOCKED_SECONDS):
            raise Stuck(
                f"{actor.name} did not hand back within {MAX_BLOCKED_SECONDS:g} s of real time (t={self.now:.0f}s)"
            )
        self._current = None

    def _yield(self, actor: Actor) -> None:
        self._baton.release()
        actor.resume.acquire()
        self._check(actor)

    def _check(self, actor: Actor) -> None:
        if actor.killed or (actor.kill_at is not None and self.now >= actor.kill_at):
            actor.killed = True
            if actor.invocation is not None:
                actor.invocation.killed = True
            raise Killed(actor.name)

    def _body(self, actor: Actor) -> None:
        actor.resume.acquire()
        self._local.actor = actor
        try:
            self._check(actor)
            actor.result = actor.run()
        except Killed:
            actor.killed = True
        except BaseException as exc:  # reported by whoever reads the actor's outcome
            actor.error = exc
        finally:
            actor.done = True
            self.live.discard(actor)
            for callback in actor.on_done:
                callback(actor)
            self._baton.release()


@dataclass
class Waiters:
    """Actors waiting for one thing (a lock, a future, a queue) to change."""

    parked: list[Actor] = field(default_factory=list)


class SimLock:
    """``threading.Lock`` for actors: waiting for it is an IO boundary, with a virtual timeout."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._owner: Actor | None = None
        self._waiters = Waiters()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        scheduler = self._scheduler
        ends = None if timeout < 0 else scheduler.now + timeout
        while self._owner is not None and not self._owner.done:
            if not blocking or (ends is not None and scheduler.now >= ends):
                return False
            scheduler.park(self._waiters, None if ends is None else ends - scheduler.now)
        self._owner = scheduler.current
        return True

    def release(self) -> None:
        self._owner = None
        self._scheduler.wake(self._waiters)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class SimFuture(Future[Any]):
    """A future an actor waits for in virtual time."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._sim_waiters = Waiters()

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(timeout=0)

    def _wait(self, timeout: float | None) -> None:
        scheduler = self._scheduler
        ends = None if timeout is None else scheduler.now + timeout
        while not self.done():
            if ends is not None and scheduler.now >= ends:
                raise FutureTimeout()
            scheduler.park(self._sim_waiters, None if ends is None else ends - scheduler.now)

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._scheduler.wake(self._sim_waiters)

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._scheduler.wake(self._sim_waiters)

    def cancel(self) -> bool:
        cancelled = super().cancel()
        self._scheduler.wake(self._sim_waiters)
        return cancelled


class SimExecutor(Executor):
    """A thread pool whose workers are actors of the submitting actor's invocation."""

    def __init__(self, scheduler: Scheduler, workers: int, name: str) -> None:
        self._scheduler = scheduler
        self._max = max(workers, 1)
        self._name = name
        self._queue: list[tuple[SimFuture, Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self._workers: list[Actor] = []
        self._invocation = scheduler.current.invocation
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = SimFuture(self._scheduler)
        self._queue.append((future, fn, args, kwargs))
        self._workers = [w for w in self._workers if not w.done]
        if len(self._workers) < self._max:
            index = len(self._workers)
            self._workers.append(
                self._scheduler.spawn(f"{self._name}-{index}", self._work, invocation=self._invocation)
            )
        return future

    def _work(self) -> None:
        while self._queue:
            future, fn, args, kwargs = self._queue.pop(0)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except Killed:
                raise
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            for future, *_ in self._queue:
                future.cancel()
            self._queue.clear()
        if wait:
            done = Waiters()
            for worker in list(self._workers):
                while not worker.done:
                    worker.on_done.append(lambda _actor: self._scheduler.wake(done))
                    self._scheduler.park(done, None)
