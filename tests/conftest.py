"""Shared fixtures: a moto server and the Rokt sandbox on free loopback ports, reset for every test,
and the bridge built by the production wiring with its clients pointed at them."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Before anything imports Powertools: name the service and the metrics namespace, and give boto3
# harmless credentials so nothing can reach a real AWS account.
os.environ.update(
    {
        "POWERTOOLS_SERVICE_NAME": "rokt-calendar-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "RoktCalendarBridge",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test-only",
        "AWS_SECRET_ACCESS_KEY": "test-only",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

import boto3
import pytest
import requests
from chalice.test import Client
from moto.server import ThreadedMotoServer

import app as bridge_app
from chalicelib.observability import logger
from chalicelib.settings import Settings
from chalicelib.wiring import Bridge
from localworld.braze_sandbox import DEFAULT_API_KEYS, BrazeSandbox
from localworld.localstack import free_port
from localworld.rokt_sandbox import DEFAULT_CLIENTS, RoktSandbox
from stage.bootstrap import ensure_table, put_secure
from stage.project import SAMPLE_BODY

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

PREFIX = "/rokt-calendar-bridge/test"
TABLE = "rokt-calendar-bridge-test-idempotency"
SECRET = "braze-secret-0123456789"
CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_CLIENTS.items()))
SUBSCRIPTION = "06423672-b6ba-4536-aa36-70788a7a0a36"
BRAZE_KEY = DEFAULT_API_KEYS[0]
ROKT_TOKEN = "rokt-token-0123456789abcdef"
TESTS_DIR = Path(__file__).resolve().parent
# The IAM proof records every AWS call the bridge and the operator make, and judges it at the end (tests/iam).
pytest_plugins = ["tests.iam.plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from its directory (tests/unit → ``unit``, …): a directory
    directly under tests/ named like a marker registered in pyproject.toml, so ``-m`` selects a tier."""
    registered = {line.split(":")[0].strip() for line in config.getini("markers")}
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS_DIR) and (tier := path.relative_to(TESTS_DIR).parts[0]) in registered:
            item.add_marker(tier)


def seed_body(event_id: str = "Event_0001_user42", **event: Any) -> dict[str, Any]:
    """The body the seed's Braze template renders (create), with optional field overrides."""
    body: dict[str, Any] = copy.deepcopy(SAMPLE_BODY)
    body["event"]["eventId"] = event_id
    body["event"].update(event)
    return body


@dataclass
class Aws:
    url: str
    session: boto3.session.Session

    def ssm(self) -> SSMClient:
        return self.session.client("ssm", endpoint_url=self.url)

    def dynamodb(self) -> DynamoDBClient:
        return self.session.client("dynamodb", endpoint_url=self.url)

    def sqs(self) -> SQSClient:
        return self.session.client("sqs", endpoint_url=self.url)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str) -> Aws:
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    session = boto3.session.Session(region_name="us-east-1")
    handle = Aws(moto_url, session)
    ensure_table(handle.dynamodb(), TABLE, progress=lambda _: None)
    ssm = handle.ssm()
    put_secure(ssm, f"{PREFIX}/rokt/client-id", CLIENT_ID, progress=lambda _: None)
    put_secure(ssm, f"{PREFIX}/rokt/client-secret", CLIENT_SECRET, progress=lambda _: None)
    put_secure(ssm, f"{PREFIX}/webhook-secrets", SECRET, progress=lambda _: None)
    put_secure(ssm, f"{PREFIX}/braze/api-key", BRAZE_KEY, progress=lambda _: None)
    put_secure(ssm, f"{PREFIX}/rokt-webhook-tokens", ROKT_TOKEN, progress=lambda _: None)
    return handle


@pytest.fixture
def cli_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds its own boto3 clients from the environment, as it would for an operator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)


class Sandbox:
    """Test-side handle on the sandbox, driven through its HTTP control API like a person would."""

    def __init__(self, url: str, server: RoktSandbox | None = None) -> None:
        self.url = url
        self._server = server

    @property
    def server(self) -> RoktSandbox:
        """The in-process server (for peeking at issued tokens); absent when it runs in a subprocess."""
        if self._server is None:
            raise RuntimeError("this sandbox runs in another process")
        return self._server

    def reset(self) -> None:
        requests.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()
        self.configure(tokenTtl=300, clients=DEFAULT_CLIENTS)

    def fault(self, **fault: Any) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=fault, timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = requests.get(f"{self.url}/_sandbox/stats", timeout=5).json()
        return stats

    def count(self, name: str) -> int:
        return self.stats().get(name, 0)

    def events(self, account: str | None = None) -> list[dict[str, Any]]:
        path = "/_sandbox/events" + (f"/{account}" if account else "")
        events: list[dict[str, Any]] = requests.get(self.url + path, timeout=5).json()
        return events

    def requests(self) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = requests.get(f"{self.url}/_sandbox/requests", timeout=5).json()
        return received

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_sandbox/faults", timeout=5).raise_for_status()

    def revoke_tokens(self) -> None:
        requests.post(f"{self.url}/_sandbox/revoke-tokens", timeout=5).raise_for_status()

    def configure(self, **config: Any) -> None:
        requests.post(f"{self.url}/_sandbox/config", json=config, timeout=5).raise_for_status()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def subscribe(self, **fields: Any) -> str:
        """A person subscribes (defaults: account brazetest, calendar sports, subscriber user42)."""
        body = {"accountCode": "brazetest", "calendarCode": "sports", "subscriberId": "user42", **fields}
        return str(self.control("POST", "subscribe", body)["subscriptionId"])

    def unsubscribe(self, subscription_id: str) -> None:
        self.control("POST", "unsubscribe", {"subscriptionId": subscription_id})

    def sent_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook envelope Rokt emitted, oldest first."""
        sent: list[dict[str, Any]] = self.control("GET", "webhooks/sent")
        return sent


class Braze:
    """Test-side handle on the Braze sandbox, through its HTTP control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = self.control("GET", "users")
        return users

    def user(self, external_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.control("GET", f"users/{external_id}")
        return found

    def track_calls(self) -> int:
        return int(self.control("GET", "stats").get("track_requests", 0))

    def fault(self, **fault: Any) -> None:
        self.control("POST", "faults", fault)


@pytest.fixture(scope="session")
def braze_server() -> Iterator[BrazeSandbox]:
    with BrazeSandbox() as server:
        yield server


@pytest.fixture
def braze(braze_server: BrazeSandbox) -> Braze:
    handle = Braze(braze_server.url)
    handle.control("POST", "reset")
    return handle


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RoktSandbox]:
    with RoktSandbox() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: RoktSandbox) -> Sandbox:
    handle = Sandbox(sandbox_server.url, sandbox_server)
    handle.reset()
    return handle


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    return Settings(
        stage="test",
        rokt_api_url=sandbox.url,
        ssm_prefix=PREFIX,
        idempotency_table=TABLE,
        rokt_timeout_seconds=1.0,
        request_budget_seconds=6.0,
        completion_reserve_seconds=1.0,
        webhook_secrets_max_age_seconds=0,
    )


def make_bridge(settings: Settings, aws: Aws, **overrides: Any) -> Bridge:
    """One "Lambda container": its own clients, caches and token memory, sharing SSM and DynamoDB."""
    return Bridge(
        replace(settings, **overrides) if overrides else settings,
        ssm_client=aws.ssm(),
        dynamodb_client=aws.dynamodb(),
        sqs_client=aws.sqs(),
    )


@contextlib.contextmanager
def serving(bridge: Bridge) -> Iterator[Client]:
    """Serve requests with ``bridge`` installed, as one warm Lambda container would."""
    bridge_app.use_bridge(bridge)
    try:
        with Client(bridge_app.app, stage_name="local") as client:
            yield client
    finally:
        bridge_app.use_bridge(None)


@pytest.fixture
def bridge(settings: Settings, aws: Aws) -> Iterator[Bridge]:
    built = make_bridge(settings, aws)
    bridge_app.use_bridge(built)
    yield built
    bridge_app.use_bridge(None)


@pytest.fixture
def client(bridge: Bridge) -> Iterator[Client]:
    with Client(bridge_app.app, stage_name="local") as test_client:
        yield test_client


class LogCapture:
    """The bridge's log output exactly as CloudWatch receives it: one JSON object per line."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def messages(self) -> list[str]:
        return [str(record["message"]) for record in self.records()]

    def summaries(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["message"] == "webhook handled"]


@pytest.fixture
def json_logs() -> Iterator[LogCapture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    stdlib_logger = logging.getLogger(logger.name)
    stdlib_logger.addHandler(handler)
    yield LogCapture(stream)
    stdlib_logger.removeHandler(handler)


def post(
    client: Client,
    path: str,
    body: Any,
    secret: str | None = SECRET,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST a webhook the way Braze does; ``body`` may be a dict (JSON-encoded) or raw str/bytes."""
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    sent = {"Content-Type": "application/json", "User-Agent": "Braze Sender 1.0"}
    if secret is not None:
        sent["Authorization"] = f"Bearer {secret}"
    sent.update(headers or {})
    return client.http.post(path, headers=sent, body=raw)
