"""What every local stand-in server shares: a JSON request handler, a threaded loopback server that
runs in the background, and injected faults (the Rokt and Braze sandboxes both use them)."""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

MAX_FAULT_DELAY_SECONDS = 60.0

State = TypeVar("State")
ControlAction = Callable[[Any, Any], tuple[int, Any]]


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost: the only targets a sandbox may call."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def try_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


@dataclass
class Fault:
    """One injected misbehaviour: applies to the next ``count`` matching requests.

    ``target`` names which requests (each sandbox lists its own, plus "any"); status (with optional
    retry_after and body), delay (seconds before answering) and drop (close the connection without
    answering) combine; drip sends the whole answer (status line, headers, body; ``status`` or 503)
    one byte every ``drip`` seconds, as a peer that is alive but slow, so every socket read succeeds;
    ``lose_answer`` (Braze sandbox) applies the request, then drops the answer;
    ``after`` lets that many matching requests through before the fault starts;
    ``revoke`` (Rokt sandbox) invalidates every issued token first.
    """

    target: str
    status: int | None = None
    retry_after: str | None = None
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    drip: float = 0.0
    lose_answer: bool = False
    revoke: bool = False
    after: int = 0
    count: int = 1

    @classmethod
    def from_json(cls, data: dict[str, Any], targets: tuple[str, ...]) -> Fault:
        fault = cls(
            target=str(data.get("target", targets[0])),
            status=int(data["status"]) if data.get("status") is not None else None,
            retry_after=str(data["retryAfter"]) if data.get("retryAfter") is not None else None,
            body=data.get("body"),
            delay=min(float(data.get("delay", 0.0)), MAX_FAULT_DELAY_SECONDS),
            drop=bool(data.get("drop", False)),
            drip=min(float(data.get("drip", 0.0)), MAX_FAULT_DELAY_SECONDS),
            lose_answer=bool(data.get("loseAnswer", False)),
            revoke=bool(data.get("revoke", False)),
            after=int(data.get("after", 0)),
            count=int(data.get("count", 1)),
        )
        if fault.target not in (*targets, "any"):
            raise ValueError(f"target must be one of {', '.join((*targets, 'any'))}")
        return fault


def take_fault(faults: list[Fault], target: str) -> Fault | None:
    """The fault that applies to this request, if any (call under the state's lock)."""
    for fault in faults:
        if fault.target in (target, "any") and fault.count > 0:
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count == 0:
                faults.remove(fault)
            return fault
    return None


class JsonHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with JSON answers; quiet unless the server is verbose."""

    server: LoopbackServer[Any]
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; without this, Nagle + delayed ACK adds ~40 ms a call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        """Answer one request (each sandbox routes its own paths)."""
        self.send_json(405, {"error": "method_not_allowed", "method": method})

    def run_control(
        self, actions: Mapping[tuple[str, str], ControlAction], method: str, rest: list[str], data: Any
    ) -> None:
        """One ``/_sandbox/…`` call from ``actions`` (method, path) under the state's lock; a malformed
        call is a 400 that says why."""
        action = actions.get((method, "/".join(rest)))
        if action is None:
            self.send_json(404, {"error": "not_found", "message": "no such sandbox call"})
            return
        try:
            with self.server.state.lock:
                status, payload = action(self.server.state, data)
        except (KeyError, TypeError, ValueError) as exc:
            status, payload = 400, {"error": "bad_request", "message": str(exc)}
        self.send_json(status, payload)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def drip(self, status: int, payload: Any, interval: float) -> None:
        """Answer ``payload`` one byte every ``interval`` seconds (bounded by the answer's length); stops
        when the client hangs up."""
        body = json.dumps(payload).encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {self.responses.get(status, ('Fault',))[0]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.close_connection = True
        for byte in head.encode("latin-1") + body:
            try:
                self.wfile.write(bytes((byte,)))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(interval)

    def apply_fault(self, fault: Fault, headers: dict[str, str] | None = None) -> bool:
        """Misbehave as ``fault`` says; True when the request has been answered (or dropped)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self.close_connection = True
            self.connection.close()
            return True
        if fault.drip:
            self.drip(fault.status or 503, fault.body or {"error": "injected_fault", "drip": fault.drip}, fault.drip)
            return True
        if fault.status is not None:
            extra = {**(headers or {}), **({"Retry-After": fault.retry_after} if fault.retry_after else {})}
            self.send_json(fault.status, fault.body or {"error": "injected_fault", "status": fault.status}, extra)
            return True
        return False


class LoopbackServer(ThreadingHTTPServer, Generic[State]):
    """A threaded server holding its sandbox's state; refuses to bind anything but loopback."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], state: State, verbose: bool) -> None:
        if not is_loopback_url(f"http://{address[0]}"):
            raise ValueError(f"sandboxes bind loopback only, not {address[0]!r}")
        super().__init__(address, handler)
        self.state = state
        self.verbose = verbose

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, dropped connection) is expected here, not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class BackgroundServer(Generic[State]):
    """Run a sandbox server in a background thread: ``with Sandbox() as sandbox: sandbox.url``."""

    def __init__(self, server: LoopbackServer[State], name: str) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def state(self) -> State:
        return self._server.state

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
