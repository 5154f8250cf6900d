"""`chalice package` + our merge template + the bytecode step (`make package`'s path) gives a valid
CloudFormation template and a small zip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts.bytecode import ship_bytecode
from stage import resources as stage_resources
from stage.project import PROJECT_DIR, stage_environment
from tests.e2e.lambda_runtime import runtime_dir

pytestmark = pytest.mark.e2e

ZIP_BUDGET_BYTES = 3 * 1024 * 1024
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("stage", stage_resources.DEPLOYED_STAGES)
def test_chalice_package_merges_and_passes_cfn_lint(stage: str, tmp_path: Path):
    merge = tmp_path / "merge.json"
    merge.write_text(json.dumps(stage_resources.merge_template(stage)))
    out = tmp_path / "out"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}

    subprocess.run(
        [str(BIN / "chalice"), "--project-dir", str(PROJECT_DIR), "package", "--stage", stage,
         "--merge-template", str(merge), str(out)],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), str(out / "sam.json")], check=False, capture_output=True, text=True, timeout=300
    )

    assert lint.returncode == 0, lint.stdout + lint.stderr
    template = json.loads((out / "sam.json").read_text())
    resources = template["Resources"]
    table = resources["IdempotencyTable"]["Properties"]
    assert table["TableName"] == stage_environment(stage)["IDEMPOTENCY_TABLE"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert resources["APIHandler"]["Properties"]["Timeout"] == 30
    assert resources["APIHandler"]["Properties"]["Tracing"] == "Active"
    assert {"Api5xxAlarm", "RoktFailureAlarm", "RoktRejectionAlarm", "DeliveryDeadLetterAlarm"} <= set(resources)
    assert {"SyncQueue", "SyncDeadLetterQueue", "SyncDeadLetterAlarm"} <= set(resources)
    sync_source = resources["SyncSubscribers"]["Properties"]["Events"]["SyncSubscribersSqsEventSource"]
    assert sync_source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    consumer = resources["DeliverQueued"]["Properties"]["Events"]["DeliverQueuedSqsEventSource"]["Properties"]
    assert consumer["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert consumer["ScalingConfig"] == {"MaximumConcurrency": 5}
    delivery_queue = resources["DeliveryQueue"]["Properties"]
    assert delivery_queue["RedrivePolicy"]["maxReceiveCount"] == 1000  # the age horizon decides, not receives
    assert delivery_queue["MessageRetentionPeriod"] >= 86_400 * 2
    assert {"DeliveryQueueAgeAlarm", "SyncQueueAgeAlarm", "BreakerAlarm"} <= set(resources)
    # API Gateway's own answers are ours too: an unknown route is a JSON 404 naming the routes
    missing = resources["MissingRouteResponse"]["Properties"]
    assert missing["RestApiId"] == {"Ref": "RestAPI"}
    assert missing["StatusCode"] == "404"
    assert json.loads(missing["ResponseTemplates"]["application/json"].replace("$context.", "ctx."))["error"] == (
        "not_found"
    )
    for kind in ("Default4xxResponse", "Default5xxResponse"):
        template = resources[kind]["Properties"]["ResponseTemplates"]["application/json"]
        rendered = template.replace("$context.error.messageString", '"Missing Authentication Token"')
        assert set(json.loads(rendered)) == {"error", "message"}
    # the dashboard is there, its functions resolved by CloudFormation
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert "${APIHandler}" in body
    assert {"APIHandler", "DeliverQueued", "SyncSubscribers"} <= set(resources)
    # each stage binds its own queues (dev and prod can share an account and region)
    queue_names = {resources[q]["Properties"]["QueueName"] for q in ("DeliveryQueue", "SyncQueue")}
    assert queue_names == {f"rokt-calendar-bridge-{stage}-deliveries", f"rokt-calendar-bridge-{stage}-sync"}
    sources = [consumer["Queue"], sync_source["Properties"]["Queue"]]
    assert all(f"rokt-calendar-bridge-{stage}-" in json.dumps(s) for s in sources), sources
    zipped = out / "deployment.zip"
    shipped = ship_bytecode(zipped, runtime_dir())  # as `make package` does after cfn-lint
    assert zipped.stat().st_size == shipped.bytes_after <= ZIP_BUDGET_BYTES, shipped
    names = zipfile.ZipFile(zipped).namelist()
    assert {"__pycache__/app.cpython-311.pyc", "chalicelib/__pycache__/wiring.cpython-311.pyc"} <= set(names)
    assert not any(
        n.startswith(("boto3/", "botocore/", "bridgectl/", "localworld/", "scripts/", "stage/", "tests/"))
        for n in names
    )
    assert "chalicelib/delivery/data/windows_zones.json" in names
