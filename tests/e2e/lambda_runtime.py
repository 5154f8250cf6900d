"""The deployment package run as Lambda runs it, on loopback: `chalice package` from a copy of the
project (requirements from a wheelhouse of this environment, no package index), the zip unzipped as
``/var/task``, and each function's execution environment a fresh interpreter (the base Python, not
the dev venv's: ``-I -S -B``) whose path is only that folder, the Lambda runtime's boto3/botocore
(``requirements-lambda-runtime.txt``, installed by ``make install`` in ``.venv/lambda-runtime``) and
the standard library — see ``lambda_bootstrap.py``, which runs inside it.

:class:`LambdaFunction` is one execution environment: ``start()`` is the init phase (the handler's
module imported once), ``invoke()`` one invocation with a Lambda-shaped context. The environment is
the stage's (from `.chalice/config.json`, as the caller built it) plus what Lambda itself sets; the
reserved variables (region, credentials, ``AWS_LAMBDA_*``) are Lambda's, as in AWS.

Used by tests/e2e/test_package_runs_as_lambda.py and ``python -m bench.package_cold_start``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from localworld.localstack import free_port
from stage.names import function_names
from stage.project import PROJECT_DIR
from tests.support import deploy_harness as harness

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

RUNTIME_REQUIREMENTS = PROJECT_DIR / "requirements-lambda-runtime.txt"
RUNTIME_DIR = PROJECT_DIR / ".venv" / "lambda-runtime"
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
# The interpreter the dev venv was made from: its standard library, none of the venv's packages.
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
PACKAGED_STAGE = "prod"  # what `make package` builds; the zip's contents do not depend on the stage
HANDLERS = {"api": "app.app", "delivery": "app.deliver_queued", "sync": "app.sync_subscribers"}
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit on the init phase of an on-demand function
PACKAGE_TIMEOUT_SECONDS = 120


class InitError(RuntimeError):
    """The function's init phase failed (Lambda: Runtime.ImportModuleError and friends)."""

    def __init__(self, error: Mapping[str, Any], log: str) -> None:
        self.error = dict(error)
        self.log = log
        trace = "".join(self.error.get("stackTrace", []))
        super().__init__(f"{self.error.get('errorType')}: {self.error.get('errorMessage')}\n{trace}")


def runtime_pins(requirements: Path = RUNTIME_REQUIREMENTS) -> dict[str, str]:
    """``name -> version`` of each ``name==version`` line."""
    pins: dict[str, str] = {}
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_normalized(name)] = version.strip()
    return pins


def runtime_dir(directory: Path = RUNTIME_DIR) -> Path:
    """The Lambda runtime's libraries, as ``make install`` put them: each pin installed at its version."""
    pins = runtime_pins()
    installed = {}
    if directory.is_dir():
        for info in directory.glob("*.dist-info"):
            name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
            installed[_normalized(name)] = version
    wrong = [f"{name}=={version} ({installed.get(name) or 'missing'})" for name, version in pins.items()
             if installed.get(name) != version]  # fmt: skip
    if wrong:
        raise RuntimeError(
            f"{directory} lacks the Lambda runtime's libraries pinned in {RUNTIME_REQUIREMENTS.name}: "
            f"{', '.join(wrong)}. Run `make install`."
        )
    return directory


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@dataclass(frozen=True)
class Package:
    zip_path: Path
    task_root: Path  # the zip unzipped: Lambda's /var/task
    names: frozenset[str]
    seconds: float
    template: dict[str, Any]  # the SAM template `chalice package` wrote beside the zip


def build_package(workspace: Path, *, edit: Callable[[Path], None] | None = None) -> Package:
    """`chalice package` from a copy of the project (``edit`` may change the copy first), loopback only,
    the requirements resolved from a wheelhouse packed from this environment; then unzipped."""
    started = time.monotonic()
    wheels = harness.wheelhouse(PROJECT_DIR / "requirements.txt", workspace / "wheelhouse")
    project = harness.copy_project(PROJECT_DIR, workspace / "project", PACKAGED_STAGE, {})
    if edit is not None:
        edit(project)
    closed = f"http://127.0.0.1:{free_port()}"  # packaging calls no AWS API: any that tried would fail
    env = harness.loopback_only_environment(closed, wheels, closed_port=free_port())
    out = workspace / "out"
    done = subprocess.run(
        [*harness.CHALICE, "package", "--stage", PACKAGED_STAGE, str(out)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chalice package exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    zip_path = out / "deployment.zip"
    task_root = workspace / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task_root)
        names = frozenset(archive.namelist())
    template = json.loads((out / "sam.json").read_text())
    return Package(zip_path, task_root, names, time.monotonic() - started, template)


def stage_config(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The stage's settings as Chalice resolves them: top-level values overlaid by the stage's own."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return {**{k: v for k, v in config.items() if k != "stages"}, **config["stages"][stage]}


def lambda_environment(
    stage_env: Mapping[str, str], stage: str, role: str, *, task_root: Path, runtime: Path
) -> dict[str, str]:
    """What one of the stage's functions sees: the stage's variables, then what Lambda sets itself
    (reserved names: Lambda's values win, as AWS refuses them in a function's configuration)."""
    config = stage_config(stage)
    name = function_names(stage)[role]
    region = stage_env.get("AWS_DEFAULT_REGION", "us-east-1")
    return {
        **stage_env,
        "_HANDLER": HANDLERS[role],
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config["lambda_memory_size"]),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"2025/01/01/[$LATEST]{uuid.uuid4().hex}",
        # the execution role's temporary credentials (any value will do for moto)
        "AWS_ACCESS_KEY_ID": "ASIALAMBDAROLEKEY",
        "AWS_SECRET_ACCESS_KEY": "lambda-role-secret",
        "AWS_SESSION_TOKEN": "lambda-role-session-token",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/local/bin:/usr/bin/:/bin",
    }


@dataclass
class Invocation:
    result: Any = None
    error: dict[str, Any] | None = None
    seconds: float = 0.0
    since_start: float = 0.0  # from the bootstrap's first line to the end of this invocation
    cpu_seconds: float = 0.0  # the process's CPU time at the end of this invocation (interpreter start included)


@dataclass
class LambdaFunction:
    """One execution environment of one function, in a fresh interpreter; a context manager."""

    package: Package
    runtime: Path
    env: Mapping[str, str]
    audit: bool = True
    timeout_seconds: float = 35.0
    init: dict[str, Any] = field(default_factory=dict)
    spawn_to_ready_seconds: float = 0.0
    _process: subprocess.Popen[bytes] | None = None
    _lines: queue.Queue[bytes] = field(default_factory=queue.Queue)
    _log_path: Path | None = None

    def start(self) -> LambdaFunction:
        """The init phase: the handler's module imported in a fresh interpreter. Raises InitError."""
        self._log_path = self.package.task_root.parent / f"lambda-{uuid.uuid4().hex[:8]}.log"
        command = [str(BASE_PYTHON), "-I", "-S", "-B", str(BOOTSTRAP), str(self.package.task_root), str(self.runtime)]
        started = time.perf_counter()
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*command, *([] if self.audit else ["--no-audit"])],
                cwd=self.package.task_root,
                env=dict(self.env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self._process.stdout is not None
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True, name="lambda-answers").start()
        answer = self._next(INIT_TIMEOUT_SECONDS + 5)
        self.spawn_to_ready_seconds = time.perf_counter() - started
        self.init = answer["init"]
        if "error" in self.init:
            self.close()
            raise InitError(self.init["error"], self.log())
        return self

    def invoke(self, event: Mapping[str, Any], remaining_ms: int = 30_000) -> Invocation:
        answer = self._ask({"event": event, "remainingMs": remaining_ms, "requestId": str(uuid.uuid4())})
        return Invocation(
            answer.get("result"),
            answer.get("error"),
            answer.get("seconds", 0.0),
            answer.get("sinceStart", 0.0),
            answer.get("cpuSeconds", 0.0),
        )

    def report(self) -> dict[str, Any]:
        """Where each loaded module came from, the imports attempted (and by whom), the addresses connected to."""
        report: dict[str, Any] = self._ask({"command": "report"})["report"]
        return report

    def log(self) -> str:
        """What the function wrote (its JSON log lines and EMF metrics: CloudWatch's part in AWS)."""
        return self._log_path.read_text(errors="replace") if self._log_path and self._log_path.exists() else ""

    def close(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        self._process = None

    def __enter__(self) -> LambdaFunction:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("the function is not running")
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        return self._next(self.timeout_seconds)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no answer from the function within {timeout:g} s\n{self.log()[-4000:]}") from None
        if not line:
            raise RuntimeError(f"the function's interpreter exited\n{self.log()[-4000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _read(self, answers: IO[bytes]) -> None:
        for line in iter(answers.readline, b""):
            self._lines.put(line)
        self._lines.put(b"")


def proxy_event(
    method: str,
    resource: str,
    *,
    path_params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: str | None = None,
    api_stage: str = "api",
) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload 1.0), as API Gateway hands a request to Lambda."""
    path = resource
    for name, value in (path_params or {}).items():
        path = path.replace(f"{{{name}}}", value)
    sent = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "X-Forwarded-Proto": "https", **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": dict(sent),
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": dict(path_params) if path_params else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "path": f"/{api_stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": api_stage,
            "domainPrefix": "abc123",
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": sent.get("User-Agent")},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def stdlib_roots() -> list[str]:
    """Where the base interpreter's standard library lives (what ``-I -S`` leaves on the path)."""
    return [str(Path(sys.base_prefix) / "lib")]


def is_under(path: str, roots: Sequence[Path | str]) -> bool:
    resolved = os.path.realpath(path)
    return any(resolved.startswith(os.path.realpath(root) + os.sep) for root in roots)
