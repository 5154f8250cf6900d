"""A proxy in front of the AWS emulator that counts every call at the service boundary (by the
``X-Amz-Target`` each SDK call carries) and, when told, fails calls the way AWS does: an error
status with an AWS error body (throttling, 500) or a dropped connection. Loopback only."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

MAX_HANG_SECONDS = 60.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
SERVICES = {"AmazonSSM": "ssm", "DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs"}


class _ProxyServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """The bridge gave up on a call the proxy was holding (its timeout): expected, not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


@dataclass
class AwsFault:
    """Fail the next ``count`` calls to ``service`` (and ``operation``, if given), after letting the first
    ``skip`` of them through."""

    service: str
    operation: str | None = None
    count: int = 1
    status: int = 400
    code: str = "ThrottlingException"
    drop: bool = False
    hang: float = 0.0  # seconds to hold the call before failing it (a sick dependency, not a dead one)
    skip: int = 0

    def matches(self, service: str, operation: str) -> bool:
        return self.count > 0 and self.service == service and self.operation in (None, operation)


class AwsProxy:
    """``with AwsProxy(upstream) as proxy: proxy.url``; ``proxy.counts`` maps 'ssm.GetParameter' → n."""

    def __init__(self, upstream: str) -> None:
        self.counts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.faults: list[AwsFault] = []
        self._lock = threading.Lock()
        self._upstream = urlsplit(upstream)
        self._local = threading.local()
        self._server = _ProxyServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, fault: AwsFault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.counts.clear()
            self.failed.clear()

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, service: str, operation: str) -> AwsFault | None:
        with self._lock:
            self.counts[f"{service}.{operation}"] += 1
            for fault in self.faults:
                if fault.matches(service, operation):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.count -= 1
                    self.failed[f"{service}.{operation}"] += 1
                    return fault
        return None

    def _forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._upstream.hostname or "127.0.0.1", self._upstream.port or 80)
            self._local.connection = connection
        connection.request(method, path, body=body, headers=headers)
        return connection.getresponse()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                prefix, _, operation = self.headers.get("X-Amz-Target", "").partition(".")
                fault = proxy._take_fault(SERVICES.get(prefix, prefix), operation)
                if fault is not None and fault.hang:
                    time.sleep(min(fault.hang, MAX_HANG_SECONDS))
                if fault is not None and fault.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None:
                    payload = json.dumps({"__type": fault.code, "message": "injected by AwsProxy"}).encode()
                    self._answer(fault.status, [("Content-Type", "application/x-amz-json-1.1")], payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = proxy._forward("POST", self.path, body, headers)
                self._answer(answer.status, answer.getheaders(), answer.read())

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
