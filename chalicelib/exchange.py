"""One HTTP exchange bounded by a :class:`~chalicelib.clock.Deadline` from the first byte sent to the
last byte of the body — what Rokt's API, its token endpoint and Braze are all called through.

``requests``' read timeout bounds each socket read, not the answer: a peer that sends one byte every
0.6 s satisfies every read and can hold a call for minutes. So each exchange is watched: when its
deadline passes first, the watchdog shuts the exchange's socket down, which ends the blocked read at
once (status line, headers or body alike), and the caller gets ``requests.ReadTimeout``. The socket is
known because sessions passed through :func:`bounded` make their connections register with the
exchange running on their thread; the body is read inside the bound (``stream=True``, then read).
One watchdog thread serves the process, started on first use (a Timer thread per exchange cost
~60 µs of CPU each; a watch costs ~2 µs). The watchdog belongs to the session's adapter
(:meth:`BoundedAdapter.watch`): an adapter that is not a network (the simulator's) watches in its
own time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from urllib3.response import HTTPResponse

    from chalicelib.clock import Deadline

_current = threading.local()


class Watch(Protocol):
    """One exchange's watch: ``finish`` ends it and tells whether the deadline cut the exchange first."""

    def finish(self) -> bool: ...


class _Watch:
    """The watchdog of one exchange: shuts down the socket of the connection registered with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self.over = False

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self.over:
                return
            self.expired = True
            _shut(self._sock)

    def finish(self) -> bool:
        """No more expiring; True if the watchdog cut the exchange first."""
        with self._lock:
            self.over = True
            return self.expired


class _Watchdog:
    """One daemon thread for every exchange: sleeps until the earliest deadline, cuts what is past it."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch()
        entry = (time.monotonic() + seconds, next(self._order), watch)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exchange-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:  # a new earliest deadline: re-arm the sleep
                self._wake.notify()
        return watch

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._due and self._due[0][2].over:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wake.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                heapq.heappop(self._due)[2].expire()


_watchdog = _Watchdog()


def _shut(sock: socket.socket | None) -> None:
    """Wake a read blocked on ``sock`` in another thread (close alone does not); TLS or not."""
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed by the peer or by urllib3
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _register(sock: socket.socket | None) -> None:
    """Hand ``sock`` to the watchdog of the exchange running on this thread, if any."""
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


class _Connection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _register(self.sock)
        return super().getresponse()


class _TLSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _register(self.sock)
        return super().getresponse()


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class BoundedAdapter(HTTPAdapter):
    """requests' adapter, with connections whose socket the exchange's watchdog can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def watch(self, seconds: float) -> Watch:
        """Watch the exchange about to run on this thread: its socket is shut ``seconds`` from now."""
        watch = _watchdog.watch(seconds)
        _current.watch = watch
        return watch

    def unwatch(self) -> None:
        """The exchange on this thread is over: its connection registers with no watch any more."""
        _current.watch = None


def bounded(session: requests.Session) -> requests.Session:
    """``session``, its http(s) adapters replaced by BoundedAdapter (once; idempotent)."""
    for prefix in ("https://", "http://"):
        if not isinstance(session.get_adapter(prefix), BoundedAdapter):
            session.mount(prefix, BoundedAdapter())
    return session


def send_within(
    session: requests.Session,
    deadline: Deadline,
    method: str,
    url: str,
    *,
    connect: float,
    read: float,
    **kwargs: Any,
) -> requests.Response:
    """``session.request`` whose whole answer, body included, arrives by ``deadline``.

    ``connect``/``read`` are the per-call ceilings, shortened to what the deadline leaves (it raises
    UpstreamTimeout when nothing is left). Past the deadline: ``requests.ReadTimeout``. ``session``
    must come from :func:`bounded`."""
    timeout = deadline.timeout(connect, read)
    adapter = session.get_adapter(url)
    if not isinstance(adapter, BoundedAdapter):
        raise TypeError("send_within needs a session passed through bounded()")
    watch = adapter.watch(deadline.remaining())
    try:
        response = session.request(method, url, timeout=timeout, stream=True, **kwargs)
        try:
            _ = response.content  # the body, inside the same bound
        except BaseException:
            response.close()
            raise
    except requests.RequestException as exc:
        if watch.finish():
            raise requests.ReadTimeout("no complete answer within the deadline") from exc
        raise
    finally:
        cut = watch.finish()
        adapter.unwatch()
    if cut:  # what arrived before the cut can parse as an answer (a status line, then EOF): it is not one
        response.close()
        raise requests.ReadTimeout("no complete answer within the deadline")
    return response
