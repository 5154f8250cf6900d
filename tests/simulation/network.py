"""HTTP between the bridge and Rokt or Braze, played in virtual time.

The bridge's session gets :class:`SimAdapter`, a :class:`~chalicelib.exchange.BoundedAdapter` that
never opens a socket: each exchange pauses for the scheduler, asks the peer's model what happens
(the seed's fault, if any, decides), and takes the time it would take — a refused connection, a
connect timeout, an answer that comes slowly, never, or one byte at a time, or a connection dropped
after the peer applied the request. The per-read timeout fires as requests' would; the whole-exchange
deadline fires as the production watchdog's would (``watch``), so a dripping peer is cut where it is
cut in AWS.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from chalicelib.exchange import BoundedAdapter

if TYPE_CHECKING:
    from tests.simulation.world import World

NETWORK_SECONDS = 0.01  # one way, in the same region


@dataclass
class Answer:
    """What a peer does with one request. ``latency``: before the first byte of the answer; ``drip``:
    seconds between its bytes (alive but slow); ``hang``: no answer at all; ``drop``: the connection
    dies after the peer applied the request (its answer is lost); ``refused``: never reached the peer;
    ``syn_lost``: the connection is never accepted (a connect timeout)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    drip: float = 0.0
    hang: bool = False
    drop: bool = False
    refused: bool = False
    syn_lost: bool = False

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


class Peer(Protocol):
    def exchange(self, request: requests.PreparedRequest) -> Answer: ...


class SimWatch:
    def __init__(self, cut_at: float) -> None:
        self.cut_at = cut_at
        self.expired = False

    def finish(self) -> bool:
        return self.expired


class SimAdapter(BoundedAdapter):
    """requests' transport for the simulated world (see the module's docstring)."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self._world = world
        self._local = threading.local()

    def watch(self, seconds: float) -> SimWatch:
        watch = SimWatch(self._world.scheduler.now + seconds)
        self._local.watch = watch
        return watch

    def unwatch(self) -> None:
        self._local.watch = None

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        world = self._world
        scheduler = world.scheduler
        scheduler.pause()
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        watch: SimWatch | None = getattr(self._local, "watch", None)
        cut_at = watch.cut_at if watch is not None else float("inf")
        url = str(request.url)
        peer = world.peer(url)
        answer = peer.exchange(request) if peer is not None else Answer(refused=True)
        trouble = [n for n in ("refused", "syn_lost", "drop", "hang") if getattr(answer, n)]
        if trouble or answer.drip:
            world.trace.add("net", f"{request.method} {url.split('/', 3)[-1][:60]}: {' '.join(trouble) or 'drip'}")
        if answer.refused:
            scheduler.sleep(NETWORK_SECONDS)
            refused = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
            raise requests.ConnectionError(MaxRetryError(None, url, refused), request=request)  # type: ignore[arg-type]
        if answer.syn_lost:
            self._until(min(scheduler.now + float(connect), cut_at), watch)
            raise requests.ConnectTimeout("connect timeout", request=request)
        if answer.drop:
            self._until(min(scheduler.now + NETWORK_SECONDS + answer.latency, cut_at), watch)
            raise requests.ConnectionError(ProtocolError("Connection aborted."), request=request)
        first_byte = float("inf") if answer.hang else 2 * NETWORK_SECONDS + answer.latency
        if first_byte > float(read):
            self._until(min(scheduler.now + float(read), cut_at), watch)
            if watch is not None and watch.expired:
                raise requests.ConnectionError(ProtocolError("socket shut"), request=request)
            raise requests.ReadTimeout("read timed out", request=request)
        content = answer.content()
        ends = scheduler.now + first_byte + answer.drip * len(content)
        if ends > cut_at:
            self._until(cut_at, watch)
            raise requests.ConnectionError(ProtocolError("socket shut"), request=request)
        scheduler.sleep(ends - scheduler.now)
        return _response(request, answer, content)

    def _until(self, moment: float, watch: SimWatch | None) -> None:
        scheduler = self._world.scheduler
        scheduler.sleep(max(moment - scheduler.now, 0.0))
        if watch is not None and scheduler.now >= watch.cut_at:
            watch.expired = True

    def close(self) -> None:
        """Nothing to close: no connection is ever opened."""


def _response(request: requests.PreparedRequest, answer: Answer, content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = answer.status
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **answer.headers})
    response.raw = io.BytesIO(content)
    response.url = str(request.url)
    response.request = request
    response.encoding = "utf-8"
    response.reason = "simulated"
    return response


def sim_session(world: World) -> requests.Session:
    """One container's HTTP session: every request goes to the simulated world."""
    session = requests.Session()
    session.trust_env = False
    adapter = SimAdapter(world)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def path_of(url: str) -> tuple[str, list[str]]:
    """The host and the decoded path segments of ``url``."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    return parts.netloc, [unquote(s) for s in parts.path.split("/") if s]
