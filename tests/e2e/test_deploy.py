"""The documented deploy (docs/deploy.md, path A) against a moto server this module starts: bootstrap,
the real `chalice deploy --stage dev`, the after-deploy steps; then what exists in "AWS" is checked
against the stage's definition (`.chalice/config.json`, `.chalice/policy-dev.json`, `stage/resources.py`,
the app's routes and queue handlers), `doctor` runs green once the secrets are set, and
`chalice delete` leaves none of what the deploy created.

Loopback only: every command runs with AWS pointed at moto and any other host refused (see
tests/support/deploy_harness.py), from a copy of the project whose `dev` stage talks to the Rokt sandbox.
The tests share one deploy and run in file order; the last one deletes it.
"""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

import app as bridge_app
from chalicelib.delivery.queue import BATCH_SIZE, MAX_CONCURRENCY, delivery_queue_names
from chalicelib.settings import APP_NAME
from chalicelib.sync.queue import SYNC_BATCH_SIZE, SYNC_BATCH_WINDOW_SECONDS, sync_queue_names
from localworld.localstack import free_port, wait_for_http
from localworld.rokt_sandbox import DEFAULT_CLIENTS
from stage import dashboard
from stage.names import function_names
from stage.project import PROJECT_DIR, stage_environment
from tests.e2e.test_package import ZIP_BUDGET_BYTES
from tests.support import deploy_harness as harness

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from localworld.rokt_sandbox import RoktSandbox

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STAGE = "dev"
STEP_TIMEOUT_SECONDS = 60
HANDLERS = {
    "api": "app.app",
    "delivery": "app.deliver_queued",
    "sync": "app.sync_subscribers",
    "reconcile": "app.reconcile_subscriptions",
}
ROLES = {
    "api": "api_handler",
    "delivery": "deliver_queued",
    "sync": "sync_subscribers",
    "reconcile": "reconcile_subscriptions",
}
WEBHOOK_SECRET = "deploy-e2e-webhook-secret-0123456789"


@dataclass
class Deployment:
    project: Path
    env: dict[str, str]
    aws: boto3.session.Session
    moto_url: str
    rokt_url: str
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, step: str, command: list[str], stdin: str = "") -> str:
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_SECONDS,
            check=False,
        )
        self.seconds[step] = round(time.monotonic() - started, 2)
        assert done.returncode == 0, (
            f"{step}: {' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def client(self, service: str) -> Any:
        return self.aws.client(service, endpoint_url=self.moto_url)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def deploy_moto_url() -> Iterator[str]:
    """This module's own moto server, with the harness's shims (tests/support/deploy_harness.py)."""
    with pytest.MonkeyPatch.context() as patch:
        harness.patch_moto(patch)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        url = f"http://127.0.0.1:{port}"
        # In-process moto servers share one state: start from none of what earlier tests left there.
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        try:
            yield url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def deployment(
    deploy_moto_url: str, sandbox_server: RoktSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    checkout_state = sorted(p.name for p in (PROJECT_DIR / ".chalice").iterdir())
    workspace = tmp_path_factory.mktemp("deploy")
    started = time.monotonic()
    wheels = harness.wheelhouse(PROJECT_DIR / "requirements.txt", workspace / "wheelhouse")
    project = harness.copy_project(PROJECT_DIR, workspace / "project", STAGE, {"ROKT_API_URL": sandbox_server.url})
    env = harness.loopback_only_environment(deploy_moto_url, wheels, closed_port=free_port())
    session = boto3.session.Session(region_name="us-east-1")
    done = Deployment(project, env, session, deploy_moto_url, sandbox_server.url)
    done.seconds["wheelhouse + copy"] = round(time.monotonic() - started, 2)

    done.run("bootstrap", harness.operator(STAGE, *harness.BOOTSTRAP))
    done.run("chalice deploy", [*harness.DEPLOY, "--stage", STAGE])
    for command in harness.AFTER_DEPLOY:
        done.run(command[-1], harness.operator(STAGE, *command))
    yield done
    print(f"\ndeploy e2e seconds per step: {done.seconds}")
    assert sorted(p.name for p in (PROJECT_DIR / ".chalice").iterdir()) == checkout_state, "the checkout changed"


def _functions(deployment: Deployment) -> dict[str, dict[str, Any]]:
    listed = deployment.client("lambda").list_functions()["Functions"]
    return {f["FunctionName"]: f for f in listed}


def test_the_stages_functions_run_its_handlers_with_its_environment(deployment: Deployment):
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    defined = stage_environment(STAGE)
    functions = _functions(deployment)

    assert set(functions) == set(function_names(STAGE).values())
    for kind, name in function_names(STAGE).items():
        function = functions[name]
        assert function["Handler"] == HANDLERS[kind]
        handler = HANDLERS[kind].removeprefix("app.")
        assert function["Timeout"] == config.get("lambda_functions", {}).get(handler, config)["lambda_timeout"]
        assert function["MemorySize"] == config["lambda_memory_size"]
        assert function["TracingConfig"] == {"Mode": "Active" if config["stages"][STAGE]["xray"] else "PassThrough"}
        assert function["Role"].endswith(f":role/{APP_NAME}-{STAGE}-{ROLES[kind]}")
        # the stage's environment, but for the Rokt URL, which points at the sandbox (loopback only)
        assert function["Environment"]["Variables"] == {**defined, "ROKT_API_URL": deployment.rokt_url}
    dashboards = deployment.client("cloudwatch").list_dashboards()["DashboardEntries"]
    assert [d["DashboardName"] for d in dashboards] == [dashboard.dashboard_name(STAGE)]


def test_every_function_runs_the_one_package_of_the_app_and_its_requirements(deployment: Deployment):
    [package] = (deployment.project / ".chalice" / "deployments").glob("*.zip")  # what chalice uploaded
    names = set(zipfile.ZipFile(package).namelist())

    assert {f["CodeSize"] for f in _functions(deployment).values()} == {package.stat().st_size}
    assert package.stat().st_size <= ZIP_BUDGET_BYTES
    assert {"app.py", "chalicelib/wiring.py", "chalicelib/delivery/data/windows_zones.json"} <= names
    shipped = {name.split("/", 1)[0] for name in names}
    assert {"aws_lambda_powertools", "requests", "urllib3", "charset_normalizer", "idna", "certifi"} <= shipped
    assert not shipped & {"boto3", "botocore", "bridgectl", "localworld", "scripts", "stage", "tests"}


def test_both_queue_consumers_read_their_queue_in_batches_reporting_item_failures(deployment: Deployment):
    queue_stage = stage_environment(STAGE)["BRIDGE_STAGE"]
    functions = function_names(STAGE)
    wanted = {
        functions["delivery"]: (delivery_queue_names(queue_stage)[0], BATCH_SIZE, 0),
        functions["sync"]: (sync_queue_names(queue_stage)[0], SYNC_BATCH_SIZE, SYNC_BATCH_WINDOW_SECONDS),
    }
    lambda_client = deployment.client("lambda")

    for function, (queue, batch_size, window) in wanted.items():
        [mapping] = lambda_client.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        assert mapping["EventSourceArn"].endswith(f":{queue}")
        assert mapping["BatchSize"] == batch_size
        assert mapping.get("MaximumBatchingWindowInSeconds", 0) == window
        assert mapping["State"] == "Enabled"
        # without it a partly failed batch counts as a success and its failed records are lost
        assert mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], function
    delivery = lambda_client.list_event_source_mappings(FunctionName=functions["delivery"])
    assert delivery["EventSourceMappings"][0]["ScalingConfig"] == {"MaximumConcurrency": MAX_CONCURRENCY}


def test_each_role_holds_exactly_the_stages_policy_file(deployment: Deployment):
    policy_file = json.loads((PROJECT_DIR / ".chalice" / f"policy-{STAGE}.json").read_text())
    iam = deployment.client("iam")
    roles = [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(f"{APP_NAME}-{STAGE}")]

    assert sorted(r["RoleName"] for r in roles) == sorted(f"{APP_NAME}-{STAGE}-{r}" for r in ROLES.values())
    for role in roles:
        name = role["RoleName"]
        trust = role["AssumeRolePolicyDocument"]
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        [inline] = iam.list_role_policies(RoleName=name)["PolicyNames"]
        assert iam.get_role_policy(RoleName=name, PolicyName=inline)["PolicyDocument"] == policy_file


def test_the_api_serves_the_apps_routes_through_the_api_function(deployment: Deployment):
    apigateway = deployment.client("apigateway")
    [api] = apigateway.get_rest_apis()["items"]
    api_function = _functions(deployment)[function_names(STAGE)["api"]]["FunctionArn"]
    resources = apigateway.get_resources(restApiId=api["id"])["items"]
    served = {(r["path"], method) for r in resources for method in r.get("resourceMethods", {})}

    assert api["name"] == APP_NAME
    assert served == {(path, method) for path, methods in bridge_app.app.routes.items() for method in methods}
    for resource in resources:
        for method in resource.get("resourceMethods", {}):
            integration = apigateway.get_integration(restApiId=api["id"], resourceId=resource["id"], httpMethod=method)
            assert integration["type"].upper() == "AWS_PROXY"  # moto keeps Chalice's "aws_proxy" as sent
            assert f"/functions/{api_function}/invocations" in integration["uri"]
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    stages = apigateway.get_stages(restApiId=api["id"])["item"]
    assert [s["stageName"] for s in stages] == [config["stages"][STAGE]["api_gateway_stage"]]
    grant = json.loads(deployment.client("lambda").get_policy(FunctionName=api_function)["Policy"])
    [statement] = grant["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":{api['id']}/*")


def test_deploying_again_updates_in_place_and_keeps_partial_batches(deployment: Deployment):
    lambda_client, apigateway = deployment.client("lambda"), deployment.client("apigateway")

    def state() -> dict[str, Any]:
        [api] = apigateway.get_rest_apis()["items"]
        resources = apigateway.get_resources(restApiId=api["id"])["items"]
        return {
            "functions": sorted(f["FunctionArn"] for f in _functions(deployment).values()),
            "event sources": sorted(
                (m["UUID"], m["BatchSize"], tuple(m.get("FunctionResponseTypes", [])))
                for m in lambda_client.list_event_source_mappings()["EventSourceMappings"]
            ),
            "api": api["id"],
            "routes": sorted((r["path"], m) for r in resources for m in r.get("resourceMethods", {})),
        }

    before = state()
    deployment.run("chalice deploy again", [*harness.DEPLOY, "--stage", STAGE])  # PutRestApi this time

    assert state() == before


def test_doctor_is_green_once_the_secrets_are_set(deployment: Deployment):
    client_id, client_secret = next(iter(DEFAULT_CLIENTS.items()))
    deployment.run(
        "secrets rokt", harness.operator(STAGE, *harness.SET_ROKT_CREDENTIALS), f"{client_id}\n{client_secret}\n"
    )
    deployment.run("secrets webhook", harness.operator(STAGE, *harness.ADD_WEBHOOK_SECRET), f"{WEBHOOK_SECRET}\n")
    # moto records the API but cannot run its function, so the dry-run webhook goes to the deployed
    # code served by `chalice local` with the same stage, against the same (emulated) account
    port = free_port()
    api = subprocess.Popen(
        [*harness.CHALICE_LOCAL, "--stage", STAGE, "--port", str(port)],
        cwd=deployment.project,
        env=deployment.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{api_url}/health", timeout=STEP_TIMEOUT_SECONDS, process=api)
        report = deployment.run("doctor", harness.operator(STAGE, *harness.DOCTOR, "--api-url", api_url))
    finally:
        api.terminate()
        api.communicate(timeout=10)

    verdicts = dict(line.strip().split(None, 1)[::-1] for line in report.splitlines() if line.startswith("  "))
    assert report.splitlines()[-1] == "all good", report
    assert set(verdicts.values()) == {"ok"}, report
    checked = {line.split(":", 1)[0] for line in verdicts}
    assert {"Rokt token endpoint", "dry-run webhook", "queue consumer partial batches"} <= checked, report
    assert "the bridge authenticated and validated the seed's sample webhook" in report


def test_chalice_delete_leaves_nothing_the_deploy_created(deployment: Deployment):
    deployment.run("chalice delete", [*harness.DELETE, "--stage", STAGE])

    assert _functions(deployment) == {}
    assert deployment.client("lambda").list_event_source_mappings()["EventSourceMappings"] == []
    roles = deployment.client("iam").list_roles()["Roles"]
    assert [r["RoleName"] for r in roles if r["RoleName"].startswith(APP_NAME)] == []
    assert deployment.client("apigateway").get_rest_apis()["items"] == []
    # what bootstrap made stays (the table holds idempotency records; the CloudFormation path retains it)
    tables = deployment.client("dynamodb").list_tables()["TableNames"]
    assert tables == [stage_environment(STAGE)["IDEMPOTENCY_TABLE"]]
