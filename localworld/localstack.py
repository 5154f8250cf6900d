"""The whole local stack on loopback: moto server (SSM, DynamoDB, SQS), the Rokt sandbox and
``chalice local``, wired exactly as `.chalice/config.json`'s ``local`` stage says, on any ports.

Used by ``make run`` and by the e2e tests, so both run the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import requests

from localworld.seed import (
    LOCAL_BRAZE_KEY,
    LOCAL_ROKT_CLIENT,
    LOCAL_ROKT_WEBHOOK_TOKEN,
    LOCAL_WEBHOOK_SECRET,
    SEED_PROFILES,
)
from stage import secrets
from stage.bootstrap import bootstrap
from stage.names import StageNames
from stage.project import PROJECT_DIR, SAMPLE_BODY, stage_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

LOOPBACK = "127.0.0.1"
SHIPPED = ("app.py", "chalicelib", "requirements.txt")


@contextlib.contextmanager
def _no_file() -> Iterator[None]:
    yield None


def _tee(source: Any, path: Path) -> None:
    """Copy a child's output to the terminal and to ``path`` (the run's log, for ``report --log-file``)."""
    with path.open("ab") as log:
        for line in iter(source.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            log.write(line)
            log.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def overlay_project(target: Path, stage: str, overrides: Mapping[str, str], project_dir: Path = PROJECT_DIR) -> Path:
    """A project folder whose ``stage`` is a copy of ours with ``overrides`` applied; code is symlinked."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stage_config = dict(config["stages"][stage])
    stage_config["environment_variables"] = {**stage_config.get("environment_variables", {}), **overrides}
    config["stages"] = {stage: stage_config}
    (target / ".chalice").mkdir(parents=True, exist_ok=True)
    (target / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))
    for name in SHIPPED:
        link = target / name
        if not link.exists():
            link.symlink_to(project_dir / name)
    return target


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Ports:
    moto: int = 5050
    sandbox: int = 8081
    bridge: int = 8000
    braze: int = 8082


class LocalStack:
    """Start/stop the processes; every one on loopback, every one stopped on exit.

    With ``sync`` the Braze sandbox runs too (seeded with ``SEED_PROFILES``), the Rokt sandbox's
    webhooks are registered to the bridge's ``/rokt/webhooks/{token}`` and the queue worker feeds
    the sync queue to the bridge's handler: the whole loop, both directions.
    """

    def __init__(
        self,
        ports: Ports,
        *,
        stage: str = "local",
        autoreload: bool = False,
        quiet: bool = False,
        token_ttl: float = 300.0,
        queued: bool = False,
        spill: bool = False,
        sync: bool = False,
        log_dir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.ports = ports
        self.stage = stage
        self.autoreload = autoreload
        self.quiet = quiet
        self.token_ttl = token_ttl
        self.queued = queued
        self.spill = spill
        self.log_dir = log_dir
        self.sync = sync
        self.extra_env = dict(extra_env or {})
        self.progress = progress
        self.processes: list[subprocess.Popen[Any]] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="rokt-bridge-local-"))
        self.env = stage_environment(stage)
        self.env.update(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "ROKT_API_URL": self.sandbox_url,
                **self.extra_env,
            }
        )
        if sync:
            self.env["BRAZE_REST_ENDPOINT"] = self.braze_url
        else:  # Rokt → Braze stays unconfigured: its route answers 503, as the contract says
            self.env.pop("BRAZE_REST_ENDPOINT", None)
            self.env.pop("SYNC_QUEUE_URL", None)

    @classmethod
    def isolated(
        cls, name: str, ports: Ports | None = None, extra_env: Mapping[str, str] | None = None, **options: Any
    ) -> LocalStack:
        """A quiet stack on free loopback ports with its own SSM prefix and table, sharing nothing."""
        run = uuid.uuid4().hex[:8]
        return cls(
            ports or Ports(moto=free_port(), sandbox=free_port(), bridge=free_port(), braze=free_port()),
            quiet=True,
            progress=lambda _: None,
            extra_env={
                "BRIDGE_SSM_PREFIX": f"/{name}-{run}/bridge",
                "IDEMPOTENCY_TABLE": f"{name}-{run}-idempotency",
                **(extra_env or {}),
            },
            **options,
        )

    @property
    def moto_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.moto}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.sandbox}"

    @property
    def bridge_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.bridge}"

    @property
    def braze_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.braze}"

    @property
    def rokt_webhook_url(self) -> str:
        return f"{self.bridge_url}/rokt/webhooks/{LOCAL_ROKT_WEBHOOK_TOKEN}"

    def session(self) -> boto3.session.Session:
        """A boto3 session with the local stage's credentials and region; clients add the endpoint."""
        return boto3.session.Session(
            region_name=self.env.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID", "local-emulator"),
            aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY", "local-emulator"),
        )

    def dynamodb(self) -> DynamoDBClient:
        return self.session().client("dynamodb", endpoint_url=self.moto_url)

    def ssm(self) -> SSMClient:
        return self.session().client("ssm", endpoint_url=self.moto_url)

    def sqs(self) -> SQSClient:
        return self.session().client("sqs", endpoint_url=self.moto_url)

    def _spawn(
        self, args: list[str], name: str, to_log: bool, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """Start a child in its own session; its output goes to ``<workdir>/<name>.log`` when asked, or
        (with ``log_dir``, for the bridge and the queue worker) to the terminal and ``<log_dir>/<name>.log``."""
        if self.log_dir is not None and not (to_log or self.quiet):
            return self._spawn_teed(args, name, env)
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") if (to_log or self.quiet) else _no_file() as log:
            process = subprocess.Popen(
                args,
                cwd=PROJECT_DIR,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def _spawn_teed(self, args: list[str], name: str, env: Mapping[str, str] | None) -> subprocess.Popen[Any]:
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}.log"
        path.write_bytes(b"")  # this run's lines only
        process = subprocess.Popen(
            args,
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        threading.Thread(target=_tee, args=(process.stdout, path), daemon=True, name=f"tee-{name}").start()
        self.processes.append(process)
        return process

    def start_moto(self) -> None:
        self.progress(f"AWS emulator (moto server): {self.moto_url}")
        moto = self._spawn(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.ports.moto)], "moto", to_log=True
        )
        wait_for_http(f"{self.moto_url}/moto-api/", process=moto)

    def start_sandbox(self) -> None:
        self.progress(f"Rokt sandbox: {self.sandbox_url}")
        sandbox = self._spawn(
            [
                sys.executable,
                "-m",
                "localworld",
                "sandbox",
                "--host",
                LOOPBACK,
                "--port",
                str(self.ports.sandbox),
                "--token-ttl",
                str(self.token_ttl),
            ],
            "sandbox",
            to_log=True,
        )
        wait_for_http(f"{self.sandbox_url}/_sandbox/health", process=sandbox)

    def bootstrap(self) -> None:
        """The operators' bootstrap and secrets commands, with the local stack's values."""
        names = StageNames.from_environment(self.stage, self.env)
        queues = bootstrap(names, self.dynamodb(), self.sqs(), progress=self.progress)
        assert queues is not None
        if self.queued:
            self.env.update(DELIVERY_MODE="queued", DELIVERY_QUEUE_URL=queues.delivery)
        elif self.spill:  # direct mode with the queue behind it: outages are spilled, not lost
            self.env["DELIVERY_QUEUE_URL"] = queues.delivery
        if self.sync:
            self.env["SYNC_QUEUE_URL"] = queues.sync
            secrets.set_braze_key(names, self.ssm(), LOCAL_BRAZE_KEY, progress=self.progress)
            secrets.ROKT_TOKEN_LIST.add(names, self.ssm(), LOCAL_ROKT_WEBHOOK_TOKEN, progress=self.progress)
        secrets.set_rokt_credentials(names, self.ssm(), *LOCAL_ROKT_CLIENT, progress=self.progress)
        secrets.add_webhook_secret(names, self.ssm(), LOCAL_WEBHOOK_SECRET, progress=self.progress)

    def start_bridge(self) -> None:
        project = overlay_project(self.workdir / "project", self.stage, self.env)
        self.progress(f"bridge (chalice local --stage {self.stage}): {self.bridge_url}")
        args = [
            str(Path(sys.executable).parent / "chalice"),
            "--project-dir",
            str(project),
            "local",
            "--stage",
            self.stage,
            "--host",
            LOOPBACK,
            "--port",
            str(self.ports.bridge),
        ]
        if not self.autoreload:
            args.append("--no-autoreload")
        bridge = self._spawn(args, "bridge", to_log=False)
        wait_for_http(f"{self.bridge_url}/health", timeout=60, process=bridge)

    def start_queue_worker(self) -> None:
        """chalice local never triggers SQS handlers: this poller feeds the same consumer function."""
        self.progress("queue worker: feeding the queues to the bridge's SQS handlers")
        project = self.workdir / "project"
        worker = self._spawn(
            [sys.executable, "-m", "localworld", "queue-worker", "--project-dir", str(project), "--stage", self.stage],
            "queue-worker",
            to_log=False,
            env=self.env,
        )
        time.sleep(0.5)
        if worker.poll() is not None:
            raise RuntimeError(f"the queue worker exited with {worker.returncode}")

    def start_braze(self) -> None:
        self.progress(f"Braze sandbox: {self.braze_url} (REST key {LOCAL_BRAZE_KEY})")
        seed = self.workdir / "braze-profiles.json"
        seed.write_text(json.dumps(SEED_PROFILES, indent=2))
        braze = self._spawn(
            [sys.executable, "-m", "localworld", "braze-sandbox", "--host", LOOPBACK, "--port", str(self.ports.braze),
             "--seed", str(seed)],
            "braze",
            to_log=True,
        )  # fmt: skip
        wait_for_http(f"{self.braze_url}/_sandbox/health", process=braze)

    def register_rokt_webhooks(self) -> None:
        """What a brand does in Rokt's dashboard: Add Webhook (v2) with the bridge's URL."""
        requests.post(
            f"{self.sandbox_url}/_sandbox/webhooks", json={"url": self.rokt_webhook_url}, timeout=5
        ).raise_for_status()
        self.progress(f"Rokt sandbox webhooks → {self.bridge_url}/rokt/webhooks/{{token}}")

    def start(self) -> LocalStack:
        try:
            self.start_moto()
            self.start_sandbox()
            if self.sync:
                self.start_braze()
            self.bootstrap()
            self.start_bridge()
            if self.sync:
                self.register_rokt_webhooks()
            if self.queued or self.spill or self.sync:
                self.start_queue_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self, name: str) -> str:
        """What a quiet child printed so far (``moto``, ``sandbox`` or ``bridge``)."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sample_curl(bridge_url: str, secret: str = LOCAL_WEBHOOK_SECRET, account: str = "brazetest") -> str:
    body = json.dumps(SAMPLE_BODY)
    return (
        f"curl -sS -X POST '{bridge_url}/v1/subscriptionevent/{account}' \\\n"
        f"  -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )
