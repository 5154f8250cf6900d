"""The deployment package, run as Lambda runs it, does what the checkout does under `chalice local`.

`chalice package` (loopback only, requirements from a wheelhouse) → the bytecode of the modules the
init imports added, as `make package` adds it (scripts/bytecode.py) → the zip unzipped → each of the
three functions in its own fresh interpreter (``python -I -S -B``, the base Python) whose path holds
only the unzipped package, boto3/botocore at the Lambda runtime's versions
(``requirements-lambda-runtime.txt``, in ``.venv/lambda-runtime`` by ``make install``) and the
standard library, with the stage's environment plus Lambda's own variables (tests/e2e/lambda_runtime.py,
tests/e2e/lambda_bootstrap.py). A missing requirement, a file left out of the package, IO at import
or an import of something only the dev venv has fails here; so does a function that compiles the
package's own code from source instead of running its shipped bytecode.

One world (moto server, the Rokt and Braze sandboxes as subprocesses; `make run`'s configuration:
direct mode with the delivery queue behind it, and the sync) and one scenario, played twice from the
same starting state: first by the checkout — every route over HTTP through `chalice local`, both queue
consumers in-process (chalice local serves no SQS event), then, after the world is reset, by the
package — API Gateway proxy events to the API function (``app.app``), SQS events (built from the same
queues) to ``app.sync_subscribers`` and ``app.deliver_queued``, each function a cold container. The
answers and the effects (Rokt's events, the Braze profile, the idempotency records, the queues, the
SSM parameters) must be equal, up to times and ids.
"""

from __future__ import annotations

import calendar
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import pytest
import requests
from chalice.local import LambdaContext

import app as bridge_app
from chalicelib.settings import Settings
from chalicelib.wiring import Bridge
from localworld.localstack import LocalStack
from localworld.queue_worker import receive_batch, sqs_event
from localworld.seed import LOCAL_ROKT_WEBHOOK_TOKEN, LOCAL_WEBHOOK_SECRET, SEED_PROFILES
from scripts.bytecode import BytecodeError, cached_name, stale_bytecode
from stage.project import PROJECT_DIR, SAMPLE_BODY, stage_environment
from tests.conftest import Braze, Sandbox
from tests.e2e import lambda_runtime as runtime_harness
from tests.e2e.lambda_runtime import InitError, LambdaFunction, Package, proxy_event

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

STAGE = "local"  # the stage whose environment the world's copy overrides (as `make run` does)
ACCOUNT = "brazetest"
EVENT_ID = "PkgLambda_0001_user42"
SPILLED_EVENT_ID = "PkgLambda_0002_user42"
SUBSCRIBER = "user42"
SUBSCRIPTION_ID = "5c0f3c1e-4b7a-4d7e-9a0b-1c2d3e4f5a6b"
BRAZE_HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Bearer {LOCAL_WEBHOOK_SECRET}",
    "User-Agent": "Braze Sender 1.0",
}
ROKT_HEADERS = {"Content-Type": "application/json", "User-Agent": "Rokt-Webhooks/2.0"}
ROKT_DOWN = {"target": "events", "status": 503, "count": 100}  # every try of the spilled webhook fails
TRANSPORT_HEADERS = {"server", "date", "content-length", "connection", "keep-alive", "transfer-encoding"}
CONSUMERS = {
    "sync": ("sync_subscribers", "SYNC_QUEUE_URL", 75),
    "delivery": ("deliver_queued", "DELIVERY_QUEUE_URL", 10),
}


# --- the scenario ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One request to a route, sent alike over HTTP and as an API Gateway proxy event."""

    name: str
    method: str
    resource: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    rokt_fault: dict[str, Any] | None = None  # armed at the Rokt sandbox for this request only

    @property
    def path(self) -> str:
        path = self.resource
        for name, value in self.params.items():
            path = path.replace(f"{{{name}}}", quote(value, safe=""))
        return path

    def event(self) -> dict[str, Any]:
        return proxy_event(
            self.method,
            self.resource,
            path_params=self.params,
            headers=self.headers,
            query=self.query,
            body=self.body,
        )


def _event_body(event_id: str, **changes: Any) -> str:
    return json.dumps({**SAMPLE_BODY, "event": {**SAMPLE_BODY["event"], "eventId": event_id, **changes}})


def api_steps(envelope: dict[str, Any]) -> list[Step]:
    """Every route; the first is the cold container's first webhook (import + first webhook)."""
    account = {"account_code": ACCOUNT}
    create, update, delete = (
        "/v1/subscriptionevent/{account_code}",
        "/v1/subscriptionevent/{account_code}/update",
        "/v1/subscriptionevent/{account_code}/delete",
    )
    without_title = json.loads(_event_body("PkgLambda_0003_user42"))
    del without_title["event"]["title"]
    return [
        Step("create", "POST", create, account, BRAZE_HEADERS, _event_body(EVENT_ID)),
        Step("health", "GET", "/health"),
        Step("update", "POST", update, account, BRAZE_HEADERS, _event_body(EVENT_ID, title="Moved")),
        Step("delete", "POST", delete, account, BRAZE_HEADERS, json.dumps({"event": {"eventId": EVENT_ID}})),
        Step("no account code", "POST", "/v1/subscriptionevent", {}, BRAZE_HEADERS, _event_body(EVENT_ID)),
        Step(
            "wrong secret",
            "POST",
            create,
            account,
            {**BRAZE_HEADERS, "Authorization": "Bearer nope"},
            _event_body(EVENT_ID),
        ),
        Step("invalid body", "POST", create, account, BRAZE_HEADERS, json.dumps(without_title)),
        Step(
            "dry run",
            "POST",
            create,
            account,
            BRAZE_HEADERS,
            _event_body("PkgLambda_0004_user42"),
            query={"dryRun": "true"},
        ),
        Step(
            "rokt webhook",
            "POST",
            "/rokt/webhooks/{token}",
            {"token": LOCAL_ROKT_WEBHOOK_TOKEN},
            ROKT_HEADERS,
            json.dumps(envelope),
        ),
        Step(
            "spilled while Rokt is down",
            "POST",
            create,
            account,
            BRAZE_HEADERS,
            _event_body(SPILLED_EVENT_ID),
            rokt_fault=ROKT_DOWN,
        ),
    ]


class Runner(Protocol):
    """Who plays the scenario: the checkout (chalice local + in-process consumers) or the package."""

    def api(self, step: Step) -> dict[str, Any]: ...

    def consume(self, role: str, event: dict[str, Any]) -> Any: ...


@dataclass
class Run:
    answers: dict[str, Any] = field(default_factory=dict)
    queued: dict[str, list[Any]] = field(default_factory=dict)  # message bodies each consumer was given
    consumed: dict[str, Any] = field(default_factory=dict)  # each consumer's answer
    effects: dict[str, Any] = field(default_factory=dict)


def play(world: LocalStack, runner: Runner, envelope: dict[str, Any]) -> Run:
    """The scenario from a reset world: every route, then each queue fed once to its consumer."""
    reset_world(world)
    Sandbox(world.sandbox_url).subscribe(subscriptionId=SUBSCRIPTION_ID, subscriberId=SUBSCRIBER, tags=["All Teams"])
    run = Run()
    rokt = Sandbox(world.sandbox_url)
    for step in api_steps(envelope):
        if step.rokt_fault:
            rokt.fault(**step.rokt_fault)
        try:
            run.answers[step.name] = runner.api(step)
        finally:
            rokt.clear_faults()
    sqs = world.sqs()
    for role, (_handler, url_variable, batch_size) in CONSUMERS.items():
        url = world.env[url_variable]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        messages = receive_batch(sqs, url, batch_size, wait_seconds=0)
        run.queued[role] = [json.loads(m["Body"]) for m in messages]
        answer = runner.consume(role, sqs_event(messages, arn))
        run.consumed[role] = answer
        failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])}
        for message in messages:  # as Lambda's event source mapping does with ReportBatchItemFailures
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    run.effects = effects(world)
    return run


def reset_world(world: LocalStack) -> None:
    """The world as `make run` starts it: emulator state gone and bootstrapped again, sandboxes reset."""
    requests.post(f"{world.moto_url}/moto-api/reset", timeout=10).raise_for_status()
    world.bootstrap()
    Sandbox(world.sandbox_url).reset()
    braze = Braze(world.braze_url)
    braze.control("POST", "reset")
    braze.control("POST", "seed", SEED_PROFILES)


def effects(world: LocalStack) -> dict[str, Any]:
    rokt, braze, sqs = Sandbox(world.sandbox_url), Braze(world.braze_url), world.sqs()
    table = world.env["IDEMPOTENCY_TABLE"]
    records = world.dynamodb().scan(TableName=table, ConsistentRead=True)["Items"]
    queues = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        queues[url.rsplit("/", 1)[-1]] = {k: int(v) for k, v in attributes.items()}
    parameters = world.ssm().get_parameters_by_path(Path=world.env["BRIDGE_SSM_PREFIX"], Recursive=True)
    return {
        "rokt events": rokt.events(),
        "rokt calls": rokt.stats(),
        "braze profile": braze.user(SUBSCRIBER),
        "braze calls": braze.control("GET", "stats"),
        "idempotency records": sorted(records, key=lambda item: json.dumps(item.get("id"))),
        "queues": queues,
        "ssm parameters": sorted(p["Name"] for p in parameters["Parameters"]),
    }


# --- the two runners -------------------------------------------------------------------------------


class Checkout:
    """The checkout: routes over HTTP through `chalice local`; queue consumers in-process, each a fresh
    container (a Bridge built from the same stage environment), invoked as the functional tests do."""

    def __init__(self, world: LocalStack) -> None:
        self.world = world

    def api(self, step: Step) -> dict[str, Any]:
        answer = requests.request(
            step.method,
            f"{self.world.bridge_url}{step.path}",
            params=step.query or None,
            data=step.body.encode() if step.body is not None else None,
            headers=step.headers,
            timeout=35,
        )
        headers = {k.lower(): v for k, v in answer.headers.items() if k.lower() not in TRANSPORT_HEADERS}
        return {"statusCode": answer.status_code, "headers": headers, "body": _json_or_text(answer.text)}

    def consume(self, role: str, event: dict[str, Any]) -> Any:
        handler = CONSUMERS[role][0]
        world = self.world
        bridge = Bridge(
            Settings.from_env(world.env),
            ssm_client=world.ssm(),
            dynamodb_client=world.dynamodb(),
            sqs_client=world.sqs(),
        )
        bridge_app.use_bridge(bridge)
        try:
            return bridge_app.app.handler_map[handler](event, LambdaContext(handler, 512, max_runtime_ms=30_000))
        finally:
            bridge_app.use_bridge(None)


class Packaged:
    """The package: one API container for every route (cold for the first), one cold container per consumer."""

    def __init__(self, world: LocalStack, package: Package, runtime: Path) -> None:
        self.world, self.package, self.runtime = world, package, runtime
        self.functions: dict[str, LambdaFunction] = {}
        self.first: dict[str, float] = {}  # per role: seconds from the bootstrap's start to the first answer
        self.reports: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}

    def function(self, role: str) -> LambdaFunction:
        if role not in self.functions:
            env = runtime_harness.lambda_environment(
                self.world.env, STAGE, role, task_root=self.package.task_root, runtime=self.runtime
            )
            self.functions[role] = LambdaFunction(self.package, self.runtime, env).start()
        return self.functions[role]

    def invoke(self, role: str, event: dict[str, Any]) -> Any:
        invocation = self.function(role).invoke(event)
        self.first.setdefault(role, invocation.since_start)
        if invocation.error is not None:
            return {"lambdaError": invocation.error}
        return invocation.result

    def api(self, step: Step) -> dict[str, Any]:
        answer = self.invoke("api", step.event())
        if "lambdaError" in answer:
            return dict(answer)
        headers = {k.lower(): v for k, v in answer.get("headers", {}).items()}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ", ".join(values)
        return {"statusCode": answer["statusCode"], "headers": headers, "body": _json_or_text(answer.get("body"))}

    def consume(self, role: str, event: dict[str, Any]) -> Any:
        answer = self.invoke(role, event)
        self.finish(role)
        return answer

    def finish(self, role: str) -> None:
        function = self.functions.get(role)
        if function is not None and role not in self.reports:
            self.reports[role] = function.report()
            function.close()
            self.logs[role] = function.log()

    def close(self) -> None:
        for role in list(self.functions):
            self.finish(role)


def _json_or_text(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return text


# --- what may differ between two runs: times and ids -----------------------------------------------

ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
# Ids drawn at random (answers' correlation ids, queue intents, Braze's own profile id) and durations.
VOLATILE_KEYS = {"x-correlation-id", "intentId", "braze_id", "upstreamMs", "latencyMs"}
NOW = time.time()
RECENT = (NOW - 86_400, NOW + 2 * 366 * 86_400)  # the run's clock times, and the expiries its records were given


def normalized(value: Any, key: str = "") -> Any:
    """``value`` with what differs from run to run by nature replaced by a placeholder: the wall-clock
    times of the run (ISO strings, epoch seconds or milliseconds, also as DynamoDB's number strings —
    the scenario's own dates are years old and stay), random ids and durations; JSON held in a string
    is parsed, then normalized."""
    if key in VOLATILE_KEYS:
        return "<varies>"
    if isinstance(value, dict):
        return {k: normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return _clock_time(float(value)) or value
    if isinstance(value, str):
        return _normalized_text(value)
    return value


def _normalized_text(value: str) -> Any:
    if value[:1] in "{[":
        try:
            return normalized(json.loads(value))
        except ValueError:
            pass
    iso = ISO_TIME.match(value)
    if iso:
        when = calendar.timegm(time.strptime(f"{iso[1]} {iso[2]}", "%Y-%m-%d %H:%M:%S"))
        return "<time>" if RECENT[0] <= when <= RECENT[1] else value
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return _clock_time(float(value)) or value
    return value


def _clock_time(number: float) -> str | None:
    if RECENT[0] <= number <= RECENT[1]:
        return "<epoch>"
    if RECENT[0] * 1000 <= number <= RECENT[1] * 1000:
        return "<epoch ms>"
    return None


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lambda_runtime() -> Path:
    """The Lambda runtime's boto3/botocore; without them this test cannot say anything: it fails."""
    try:
        return runtime_harness.runtime_dir()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    return runtime_harness.build_package(tmp_path_factory.mktemp("package"))


@pytest.fixture(scope="module")
def world() -> Iterator[LocalStack]:
    """`make run`'s world without its queue worker (the test feeds the queues) or Rokt's webhook
    registration (the test sends Rokt's webhook itself, the same one to both)."""
    stack = LocalStack.isolated("pkglambda", spill=True, sync=True)
    try:
        stack.start_moto()
        stack.start_sandbox()
        stack.start_braze()
        stack.bootstrap()
        stack.start_bridge()
        yield stack
    finally:
        stack.stop()


@dataclass
class Runs:
    checkout: Run
    package: Run
    packaged: Packaged


@pytest.fixture(scope="module")
def runs(world: LocalStack, package: Package, lambda_runtime: Path) -> Runs:
    rokt = Sandbox(world.sandbox_url)
    rokt.subscribe(subscriptionId=SUBSCRIPTION_ID, subscriberId=SUBSCRIBER, tags=["All Teams"])
    envelope = rokt.sent_webhooks()[-1]  # Rokt's Subscribe webhook: the same one goes to both
    checkout = play(world, Checkout(world), envelope)
    packaged = Packaged(world, package, lambda_runtime)
    try:
        package_run = play(world, packaged, envelope)
    finally:
        packaged.close()
    return Runs(checkout, package_run, packaged)


# --- the tests -------------------------------------------------------------------------------------


def test_every_route_answers_as_under_chalice_local(runs: Runs):
    steps = api_steps({})
    served = {(s.resource, s.method) for s in steps}
    statuses = {name: answer["statusCode"] for name, answer in runs.package.answers.items()}

    assert served == {(path, method) for path, methods in bridge_app.app.routes.items() for method in methods}
    assert normalized(runs.package.answers) == normalized(runs.checkout.answers)
    assert statuses == {
        "create": 200,
        "health": 200,
        "update": 200,
        "delete": 200,
        "no account code": 422,
        "wrong secret": 401,
        "invalid body": 400,
        "dry run": 200,
        "rokt webhook": 202,
        "spilled while Rokt is down": 202,
    }, runs.package.answers


def test_both_queue_consumers_answer_as_in_the_checkout(runs: Runs):
    assert normalized(runs.package.queued) == normalized(runs.checkout.queued)
    assert [len(runs.package.queued[role]) for role in CONSUMERS] == [1, 1]
    assert runs.package.consumed == runs.checkout.consumed
    assert runs.package.consumed == {"sync": {"batchItemFailures": []}, "delivery": {"batchItemFailures": []}}


def test_the_effects_are_the_same(runs: Runs):
    package, checkout = runs.package.effects, runs.checkout.effects

    for what in package:
        assert normalized(package[what]) == normalized(checkout[what]), what
    stored = {e["event"]["eventId"]: e for e in package["rokt events"]}
    assert stored[EVENT_ID]["deleted"] is True
    assert (stored[SPILLED_EVENT_ID]["deleted"], stored[SPILLED_EVENT_ID]["deliveries"]) == (False, 1)
    assert package["braze profile"]["attributes"]["rokt:subscription_id"] == [SUBSCRIPTION_ID]
    assert all(sum(counts.values()) == 0 for counts in package["queues"].values()), package["queues"]


def test_only_the_package_the_runtime_and_the_standard_library_are_used(
    runs: Runs, package: Package, lambda_runtime: Path
):
    packaged = runs.packaged
    stdlib = runtime_harness.stdlib_roots()
    ours = [package.task_root / "app.py", package.task_root / "chalicelib"]

    runtimes = {
        r["Properties"]["Runtime"]
        for r in package.template["Resources"].values()
        if "Runtime" in r.get("Properties", {})
    }

    assert set(packaged.reports) == {"api", "sync", "delivery"}
    for role, function in packaged.functions.items():
        init, report = function.init, packaged.reports[role]
        assert {init["python"]} == runtimes  # the interpreter is the runtime the package was built for
        assert init["flags"] == {"isolated": 1, "no_site": 1}
        assert all(runtime_harness.is_under(entry, stdlib) for entry in init["initialPath"]), init["initialPath"]
        assert init["io"] == [], f"{role}: IO while importing the handler's module: {init['io']}"
        outside = {
            name: origin
            for name, origin in report["modules"].items()
            if not runtime_harness.is_under(origin, [package.task_root, lambda_runtime, *stdlib])
        }
        assert set(outside) <= {"__main__"}, f"{role}: modules from outside the package and the runtime: {outside}"
        for library in ("boto3", "botocore"):  # the runtime's, at its pinned versions (runtime_dir checked them)
            assert runtime_harness.is_under(report["modules"][library], [lambda_runtime]), report["modules"][library]
        # what the app's own code asked for and did not get: an import only the dev venv could satisfy,
        # even one a try/except would have hidden
        wanted = {name for name, importer in report["lookups"] if runtime_harness.is_under(importer, ours)}
        assert sorted(wanted - set(report["loaded"])) == [], f"{role}: imports the package cannot satisfy"
        hosts = {address.split(",")[0].strip("(' ") for address in report["connects"]}
        assert hosts <= {"127.0.0.1"}, report["connects"]
    assert '"message":"webhook handled"' in packaged.logs["api"]
    assert LOCAL_WEBHOOK_SECRET not in "".join(packaged.logs.values())


def test_cold_start_beside_the_bench(runs: Runs):
    """Import + first webhook in the fresh interpreter (one sample; `python -m bench.package_cold_start`
    takes several), beside bench/results.json's cold start of the same in the dev venv."""
    api = runs.packaged.functions["api"]
    import_seconds, first_webhook = api.init["seconds"], runs.packaged.first["api"]
    bench = json.loads((PROJECT_DIR / "bench" / "results.json").read_text())
    consumers = ", ".join(f"{role} {runs.packaged.first[role] * 1000:.0f} ms" for role in CONSUMERS)
    print(
        f"\npackage as Lambda: import {import_seconds * 1000:.0f} ms, import + first webhook "
        f"{first_webhook * 1000:.0f} ms (consumers' import + first batch: {consumers}); "
        f"bench/results.json, dev venv: {bench['cold_start_ms_bridge']:.0f} ms"
    )
    assert import_seconds < runtime_harness.INIT_TIMEOUT_SECONDS  # Lambda's limit on the init phase
    assert import_seconds < first_webhook


def test_the_package_ships_bytecode_for_its_code_and_what_the_init_imports(package: Package):
    ours = sorted(n for n in package.names if n == "app.py" or (n.startswith("chalicelib/") and n.endswith(".py")))
    compiled = {n for n in package.names if n.endswith(".pyc")}

    assert {cached_name(source) for source in ours} <= compiled
    assert "aws_lambda_powertools/logging/__pycache__/logger.cpython-311.pyc" in compiled
    assert stale_bytecode(package.zip_path) == []  # each .pyc: the hash-based bytecode of the source beside it
    assert package.zip_path.stat().st_size <= 3 * 1024 * 1024


def test_every_function_runs_the_shipped_bytecode(runs: Runs):
    """No function compiled a file of the package while importing its handler, nor app.py or chalicelib
    at any time (the ``compile`` audit event, which a source import raises and a bytecode import does not)."""
    for role in ("api", *CONSUMERS):
        compiled = runs.packaged.reports[role]["compiled"]
        assert [path for phase, path in compiled if phase == "init"] == [], role
        assert [path for _, path in compiled if path == "app.py" or path.startswith("chalicelib/")] == [], role


def test_without_its_bytecode_the_package_compiles_at_init(tmp_path: Path, package: Package, lambda_runtime: Path):
    """The control for the test above: the same package with every __pycache__ removed compiles app.py
    and chalicelib when its API function starts, so the audit sees a compile when there is one."""
    task_root = tmp_path / "task"
    shutil.copytree(package.task_root, task_root, ignore=shutil.ignore_patterns("__pycache__", "lambda-*.log"))
    bare = Package(package.zip_path, task_root, package.names, 0.0, package.template)
    env = runtime_harness.lambda_environment(
        stage_environment(STAGE), STAGE, "api", task_root=task_root, runtime=lambda_runtime
    )

    with LambdaFunction(bare, lambda_runtime, env) as function:
        compiled = {path for phase, path in function.report()["compiled"] if phase == "init"}

    assert {"app.py", "chalicelib/wiring.py", "aws_lambda_powertools/logging/logger.py"} <= compiled


def test_a_package_built_without_a_requirement_cannot_start(tmp_path: Path, lambda_runtime: Path):
    """The planted defect: `requests` left out of requirements.txt. The dev venv has it, so every other
    test would pass; `make package` refuses it (its bytecode step imports what the init imports), and the
    zip as `chalice package` left it fails its API function's init, as it would in Lambda."""

    def without_requests(project: Path) -> None:
        requirements = project / "requirements.txt"
        kept = [line for line in requirements.read_text().splitlines() if not line.startswith("requests")]
        requirements.write_text("\n".join(kept) + "\n")

    with pytest.raises(BytecodeError, match="No module named 'requests'"):
        runtime_harness.build_package(tmp_path / "make-package", edit=without_requests)
    broken = runtime_harness.build_package(tmp_path / "chalice-package", edit=without_requests, bytecode=False)
    env = runtime_harness.lambda_environment(
        stage_environment(STAGE), STAGE, "api", task_root=broken.task_root, runtime=lambda_runtime
    )

    assert not any(name.startswith("requests/") for name in broken.names)
    with pytest.raises(InitError) as failed:
        LambdaFunction(broken, lambda_runtime, env).start()
    assert failed.value.error["errorType"] == "ModuleNotFoundError"
    assert failed.value.error["errorMessage"] == "No module named 'requests'"
