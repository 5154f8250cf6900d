"""The operators' commands against the emulated AWS (moto server) and the Rokt sandbox."""

from __future__ import annotations

import io
import json
import re

import pytest

from bridgectl import cli, deployment, doctor
from stage import resources, secrets
from stage.bootstrap import bootstrap
from stage.braze_templates import braze_templates
from stage.names import OpsError, StageNames, function_names
from stage.project import PROJECT_DIR, stage_environment
from tests.conftest import PREFIX, SECRET, TABLE, Aws, Sandbox


@pytest.fixture
def names(sandbox: Sandbox) -> StageNames:
    return StageNames(stage="test", prefix=PREFIX, table=TABLE, rokt_api_url=sandbox.url, signature_required=False)


def parameter(aws: Aws, name: str) -> str:
    return aws.ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def test_bootstrap_twice_is_harmless(aws: Aws, names: StageNames):
    messages: list[str] = []
    fresh = StageNames("x", "/x", "fresh-table", "http://127.0.0.1:1", False)

    bootstrap(fresh, aws.dynamodb(), progress=messages.append)
    bootstrap(fresh, aws.dynamodb(), progress=messages.append)

    assert any("created" in m for m in messages)
    assert any("already exists" in m for m in messages)
    ttl = aws.dynamodb().describe_time_to_live(TableName="fresh-table")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiration"


def test_webhook_secret_rotation_round_trip(aws: Aws, names: StageNames):
    generated = secrets.add_webhook_secret(names, aws.ssm(), None, progress=lambda _: None)
    secrets.add_webhook_secret(names, aws.ssm(), "third-secret-abcdefgh", progress=lambda _: None)

    assert parameter(aws, f"{PREFIX}/webhook-secrets") == f"{SECRET},{generated},third-secret-abcdefgh"
    secrets.remove_webhook_secret(names, aws.ssm(), SECRET, progress=lambda _: None)
    assert parameter(aws, f"{PREFIX}/webhook-secrets") == f"{generated},third-secret-abcdefgh"
    described = aws.ssm().describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [f"{PREFIX}/webhook-secrets"]}]
    )["Parameters"]
    assert described[0]["Type"] == "SecureString"


def test_removing_the_last_secret_needs_consent(aws: Aws, names: StageNames):
    with pytest.raises(OpsError, match="last accepted secret"):
        secrets.remove_webhook_secret(names, aws.ssm(), SECRET)


@pytest.mark.parametrize("bad", ["short", "has,comma-0123456789"])
def test_weak_or_malformed_secrets_are_refused(aws: Aws, names: StageNames, bad: str):
    with pytest.raises(OpsError):
        secrets.add_webhook_secret(names, aws.ssm(), bad)


def test_cli_reads_secrets_from_stdin_never_argv(cli_env, aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("new-client-id\nnew-client-secret\n"))

    code = cli.main(["--stage", "local", "secrets", "set", "rokt-credentials"])

    assert code == 0
    local_prefix = stage_environment("local")["BRIDGE_SSM_PREFIX"]
    assert parameter(aws, f"{local_prefix}/rokt/client-id") == "new-client-id"
    assert parameter(aws, f"{local_prefix}/rokt/client-secret") == "new-client-secret"
    assert "new-client-secret" not in capsys.readouterr().out


def test_cli_bootstrap_creates_the_stage_table(cli_env, aws: Aws, capsys):
    assert cli.main(["--stage", "local", "stage", "bootstrap"]) == 0
    assert cli.main(["--stage", "local", "stage", "bootstrap"]) == 0

    assert stage_environment("local")["IDEMPOTENCY_TABLE"] in aws.dynamodb().list_tables()["TableNames"]


def test_cli_unknown_stage_is_a_clear_error(capsys):
    assert cli.main(["--stage", "staging", "braze-template", "--api-url", "https://x"]) == 2
    assert "stage 'staging' is not in .chalice/config.json" in capsys.readouterr().err


def strip_liquid(text: str) -> str:
    """Render Liquid the crude way: captures print nothing, tags vanish, every output becomes "x"."""
    without_captures = re.sub(r"\{% capture .*?%\}.*?\{% endcapture %\}", "", text, flags=re.S)
    without_tags = re.sub(r"\{%.*?%\}", "", without_captures, flags=re.S)
    return re.sub(r"\{\{.*?\}\}", "x", without_tags, flags=re.S)


def test_braze_templates_point_at_the_stage_and_hold_json_bodies(capsys):
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/api"

    assert cli.main(["--stage", "prod", "braze-template", "--api-url", url]) == 0

    printed = capsys.readouterr().out
    templates = braze_templates(url)
    assert printed.count(url) == 3
    for name, text in templates.items():
        assert f"{url}/v1/subscriptionevent/{{{{accountCode}}}}" in text
        assert "Authorization: Bearer <webhook secret>" in text
        body = json.loads(strip_liquid(text.split("Request body (Raw text):\n", 1)[1]))
        assert body["event"]["eventId"] == "x"
        assert ("subscriptionIds" in body) == (name == "create")


def test_braze_template_needs_a_url_when_not_deployed(capsys):
    assert cli.main(["--stage", "dev", "braze-template"]) == 2
    assert "--api-url" in capsys.readouterr().err


def test_doctor_reports_a_missing_parameter_clearly(aws: Aws, names: StageNames):
    aws.ssm().delete_parameter(Name=f"{PREFIX}/rokt/client-secret")

    checks = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb())}

    missing = checks[f"{PREFIX}/rokt/client-secret"]
    assert not missing.ok
    assert "missing" in missing.detail
    assert "Rokt token endpoint" not in checks


def test_doctor_passes_on_a_complete_stage(aws: Aws, names: StageNames, sandbox: Sandbox):
    checks = doctor.doctor(names, aws.ssm(), aws.dynamodb())

    assert all(c.ok for c in checks), checks
    assert any(c.name == "Rokt token endpoint" and "issued a token" in c.detail for c in checks)


def test_doctor_names_refused_rokt_credentials(aws: Aws, names: StageNames, sandbox: Sandbox):
    sandbox.configure(clients={"another": "client"})

    checks = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb())}

    assert "refused the client credentials" in checks["Rokt token endpoint"].detail


def test_policies_in_the_repo_are_the_generated_ones():
    for stage in resources.DEPLOYED_STAGES:
        checked_in = json.loads((PROJECT_DIR / ".chalice" / f"policy-{stage}.json").read_text())
        assert checked_in == resources.iam_policy(stage)


@pytest.mark.parametrize("stage", resources.DEPLOYED_STAGES)
def test_policies_name_only_the_stage_resources(stage: str):
    env = stage_environment(stage)
    policy = resources.iam_policy(stage)

    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadOwnParameters"]["Resource"].endswith(f"parameter{env['BRIDGE_SSM_PREFIX']}/*")
    assert by_sid["WriteSharedTokenOnly"]["Resource"].endswith(f"{env['BRIDGE_SSM_PREFIX']}/rokt/access-token")
    assert by_sid["IdempotencyRecords"]["Resource"].endswith(f"table/{env['IDEMPOTENCY_TABLE']}")
    wildcard = {sid for sid, s in by_sid.items() if s["Resource"] == "*"}
    assert wildcard == {"SecureStringsViaSsmOnly", "Tracing"}
    assert by_sid["SecureStringsViaSsmOnly"]["Condition"]
    assert all("*" not in a for s in policy["Statement"] for a in s["Action"])


@pytest.fixture
def deployed_consumers(aws: Aws) -> list[str]:
    """What `chalice deploy --stage test` leaves behind: both SQS handlers, each with its event source."""
    session = aws.session
    iam = session.client("iam", endpoint_url=aws.url)
    role = iam.create_role(RoleName="consumer-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lambda_client = session.client("lambda", endpoint_url=aws.url)
    sqs = aws.sqs()
    functions = [function_names("test")[kind] for kind in ("delivery", "sync")]
    for function in functions:
        handler = function.rsplit("-", 1)[-1]
        lambda_client.create_function(
            FunctionName=function,
            Runtime="python3.11",
            Role=role,
            Handler=f"app.{handler}",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )
        url = sqs.create_queue(QueueName=f"consumer-test-{handler}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=function)
    return functions


def test_enable_partial_batch_sets_report_batch_item_failures_on_both_consumers_once(
    aws: Aws, names: StageNames, deployed_consumers
):
    lambda_client = aws.session.client("lambda", endpoint_url=aws.url)
    before = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb(), lambda_client=lambda_client)}

    first = deployment.enable_partial_batch(lambda_client, "test", progress=lambda _: None)
    second = deployment.enable_partial_batch(lambda_client, "test", progress=lambda _: None)

    assert (first, second) == (2, 0)
    for function in deployed_consumers:
        [mapping] = lambda_client.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"], function
    assert not before["queue consumer partial batches"].ok
    after = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb(), lambda_client=lambda_client)}
    assert after["queue consumer partial batches"].ok


def test_doctor_fails_while_the_sync_consumer_drops_partly_failed_batches(
    aws: Aws, names: StageNames, deployed_consumers
):
    lambda_client = aws.session.client("lambda", endpoint_url=aws.url)
    [delivery] = lambda_client.list_event_source_mappings(FunctionName=deployed_consumers[0])["EventSourceMappings"]
    lambda_client.update_event_source_mapping(UUID=delivery["UUID"], FunctionResponseTypes=["ReportBatchItemFailures"])

    checks = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb(), lambda_client=lambda_client)}

    check = checks["queue consumer partial batches"]
    assert not check.ok
    assert deployed_consumers[1] in check.detail


def test_enable_partial_batch_before_deploy_is_a_clear_error(aws: Aws):
    lambda_client = aws.session.client("lambda", endpoint_url=aws.url)

    with pytest.raises(OpsError, match="deploy the stage first"):
        deployment.enable_partial_batch(lambda_client, "test")


def test_put_dashboard_puts_the_templates_dashboard_with_the_deployed_names(aws: Aws):
    cloudwatch = aws.session.client("cloudwatch", endpoint_url=aws.url)
    said: list[str] = []

    name = deployment.put_dashboard(cloudwatch, "prod", "us-east-1", progress=said.append)
    deployment.put_dashboard(cloudwatch, "prod", "us-east-1", progress=said.append)  # again: same dashboard

    body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    assert name == "rokt-calendar-bridge-prod"
    assert "${" not in json.dumps(body)
    lambdas = {line[3] for w in body["widgets"] for line in w["properties"]["metrics"] if line[0] == "AWS/Lambda"}
    assert lambdas == {"rokt-calendar-bridge-prod", "rokt-calendar-bridge-prod-deliver_queued",
                       "rokt-calendar-bridge-prod-sync_subscribers",
                       "rokt-calendar-bridge-prod-reconcile_subscriptions"}  # fmt: skip
    assert said.count(f"dashboard {name}: put in us-east-1 (CloudWatch → Dashboards)") == 2
