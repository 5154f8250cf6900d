"""A counting proxy in front of the AWS emulator: remote calls are counted at the service boundary
(by the ``X-Amz-Target`` each SDK call carries), not by trusting the client."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class CountingProxy:
    """``with CountingProxy(upstream) as proxy: proxy.url``; ``proxy.counts`` maps 'ssm.GetParameter' → n."""

    def __init__(self, upstream: str) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target_header = self.headers.get("X-Amz-Target", "")
                service, _, operation = target_header.partition(".")
                name = {"AmazonSSM": "ssm", "DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs"}.get(service, service)
                with proxy._lock:
                    proxy.counts[f"{name}.{operation}"] += 1
                upstream_conn = _connection(target.hostname or "127.0.0.1", target.port or 80)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream_conn.request("POST", self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


_local = threading.local()


def _connection(host: str, port: int) -> http.client.HTTPConnection:
    """One keep-alive connection to the emulator per proxy thread."""
    conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        _local.conn = conn
    return conn
