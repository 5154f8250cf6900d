"""The IAM proof's own parts: what a call is authorized as, who made it, how a recorded resource becomes
a deployed stage's, and that the verdict fails — naming it — on a grant taken away, a call outside the
policy and a grant nothing uses. (The proof itself runs at the end of every pytest session: plugin.py.)"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice.app import Chalice

from stage.names import StageNames
from stage.project import PROJECT_DIR
from tests.iam.calls import UNKNOWN_RESOURCE, IamCall, iam_calls
from tests.iam.plugin import _test_stages
from tests.iam.proof import Call, Policy, function_policy, judge, renamer, unused_grants
from tests.iam.recorder import API_HANDLER, OPERATOR, OUTSIDE, Recorder, install, lambda_functions

REGION = "us-east-1"
LOCAL_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/rokt-calendar-bridge-local-idempotency"
FUNCTIONS = [API_HANDLER, "deliver_queued", "sync_subscribers"]


def test_an_operation_is_authorized_per_item_and_on_the_resources_it_names():
    transact = {
        "TransactItems": [
            {"ConditionCheck": {"TableName": "t", "Key": {}, "ConditionExpression": "x"}},
            {"Update": {"TableName": "t", "Key": {}, "UpdateExpression": "SET a = :a"}},
        ]
    }
    assert iam_calls("dynamodb", "TransactWriteItems", transact, REGION) == [
        IamCall("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t"),
        IamCall("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t"),
    ]
    assert iam_calls("dynamodb", "Query", {"TableName": "t", "IndexName": "i"}, REGION) == [
        IamCall("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i")
    ]
    url = "http://127.0.0.1:5050/000000000000/q-dlq"
    assert iam_calls("sqs", "SendMessageBatch", {"QueueUrl": url}, REGION) == [
        IamCall("sqs:SendMessage", "arn:aws:sqs:us-east-1:000000000000:q-dlq")
    ]
    got = iam_calls("ssm", "GetParameters", {"Names": ["/p/a", "/p/b"], "WithDecryption": True}, REGION)
    via = (("kms:ViaService", "ssm.us-east-1.amazonaws.com"),)
    assert got == [
        IamCall("ssm:GetParameters", "arn:aws:ssm:us-east-1:123456789012:parameter/p/a"),
        IamCall("ssm:GetParameters", "arn:aws:ssm:us-east-1:123456789012:parameter/p/b"),
        IamCall("kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/aws-ssm-managed-key", via),
    ]
    assert iam_calls("s3", "GetObject", {"Bucket": "b"}, REGION) == [IamCall("s3:GetObject", UNKNOWN_RESOURCE)]
    assert iam_calls("sts", "GetCallerIdentity", {}, REGION) == []


def _recording_app() -> Chalice:
    app = Chalice("iam-recorder-test")

    @app.route("/")
    def index() -> dict[str, Any]:
        _call_ssm()
        return {}

    @app.on_sqs_message(queue="q")
    def consume(event: Any) -> None:
        _call_ssm()

    return app


_CLIENTS: list[Any] = []


def _call_ssm() -> None:
    client = _CLIENTS[0]
    client.get_parameter(Name="/p/x")


def test_each_entry_point_records_as_its_function_and_a_test_own_calls_are_not_recorded():
    app = _recording_app()
    recorder = Recorder()
    uninstall = install(recorder, app)
    try:
        client = boto3.session.Session(region_name=REGION).client("ssm")  # created after install: hooked
        _CLIENTS[:] = [client]
        with Stubber(client) as stub:
            for _ in range(3):
                stub.add_response("get_parameter", {"Parameter": {"Name": "/p/x", "Value": "v"}})
            client.get_parameter(Name="/p/x")  # the test's own call: not the bridge's, not recorded
            app.handler_map["consume"]({"Records": []}, None)
            from chalice.test import Client

            with Client(app) as http:
                http.http.get("/")
    finally:
        uninstall()
        _CLIENTS.clear()
    who = {key[0] for key in recorder.calls}
    assert lambda_functions(app) == [API_HANDLER, "consume"]
    # this module is neither chalicelib nor bridgectl: only the entry points' calls count
    assert who == {API_HANDLER, "consume"}
    assert {key[1:3] for key in recorder.calls} == {
        ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/p/x")
    }


def test_a_recorded_resource_becomes_the_same_resource_of_each_deployed_stage():
    names = renamer(_test_stages())
    dev_token = "arn:aws:ssm:us-east-1:123456789012:parameter/rokt-calendar-bridge/dev/rokt/access-token"
    assert (
        names.rename("arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-test-deliveries-dlq", "prod")
        == "arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-prod-deliveries-dlq"
    )
    assert (
        names.rename("arn:aws:ssm:eu-west-1:000000000000:parameter/rokt-calendar-bridge/test/rokt/access-token", "dev")
        == dev_token
    )
    assert (
        names.rename(f"{LOCAL_TABLE}/index/by", "dev")
        == "arn:aws:dynamodb:us-east-1:123456789012:table/rokt-calendar-bridge-dev-idempotency/index/by"
    )
    isolated = "arn:aws:ssm:us-east-1:123456789012:parameter/pkglambda-bb32d940/bridge/rokt/access-token"
    assert names.rename(isolated, "dev") == dev_token
    assert names.rename("arn:aws:sqs:us-east-1:123456789012:someone-elses-queue", "dev") is None


def test_each_function_runs_with_the_policy_chalice_gives_it():
    for stage in ("dev", "prod"):
        for function in FUNCTIONS:
            assert function_policy(stage, function).path == PROJECT_DIR / ".chalice" / f"policy-{stage}.json"
    assert function_policy("prod", OPERATOR).path == PROJECT_DIR / "docs" / "operator-policy.json"


# --- planted defects ----------------------------------------------------------------------------------
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/rokt-calendar-bridge-test-idempotency"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-test-deliveries"


def _policy(*statements: dict[str, Any]) -> Policy:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return Policy(PROJECT_DIR / ".chalice" / "policy-planted.json", document)


GRANTS = (
    {"Sid": "Table", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "arn:aws:dynamodb:*:*:table/*"},
    {"Sid": "Queue", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "arn:aws:sqs:*:*:*-deliveries"},
)
CALLS = [
    Call(API_HANDLER, "dynamodb:GetItem", TABLE, test="t1"),
    Call("deliver_queued", "sqs:SendMessage", QUEUE, test="t2"),
    Call(OPERATOR, "dynamodb:GetItem", TABLE, test="t3"),
]


def _judge(calls: list[Call], policy: Policy, *, complete: bool = True) -> Any:
    return judge(calls, FUNCTIONS[:2], _test_stages(), complete=complete, stages=["prod"], policy_of=lambda *_: policy)


def test_the_proof_passes_when_each_call_is_granted_and_each_grant_used():
    verdict = _judge(CALLS, _policy(*GRANTS))
    assert verdict.problems == [], verdict.report()


def test_a_grant_taken_away_fails_naming_the_function_action_and_resource():
    verdict = _judge(CALLS, _policy(GRANTS[0]))
    assert verdict.refused == [
        "prod  deliver_queued  sqs:SendMessage  "
        "arn:aws:sqs:us-east-1:123456789012:rokt-calendar-bridge-prod-deliveries  — .chalice/policy-planted.json; "
        "first in t2"
    ]


def test_a_call_outside_the_policy_fails_even_in_a_partial_run():
    scan = Call(API_HANDLER, "dynamodb:Scan", TABLE, test="t4")
    verdict = _judge([*CALLS, scan], _policy(*GRANTS), complete=False)
    assert [line.split("  ")[1:4] for line in verdict.refused] == [
        [API_HANDLER, "dynamodb:Scan", TABLE.replace("-test-", "-prod-")]
    ]


def test_a_grant_no_call_uses_fails_and_so_does_a_silent_function():
    extra = {"Sid": "Extra", "Effect": "Allow", "Action": ["sqs:PurgeQueue"], "Resource": "*"}
    verdict = _judge(CALLS[1:], _policy(*GRANTS, extra))
    assert verdict.unused == [
        "prod  .chalice/policy-planted.json [Extra]  sqs:PurgeQueue on *  "
        "— callers: api_handler, deliver_queued, operator"
    ]
    assert verdict.silent == [f"{API_HANDLER}: its code never ran through its entry point with AWS calls"]
    assert not _judge(CALLS[1:], _policy(*GRANTS, extra), complete=False).unused  # a partial run says nothing


def test_a_resource_of_no_stage_and_calls_outside_any_handler_are_reported():
    stray = Call("deliver_queued", "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:stray", test="t5")
    direct = Call(OUTSIDE, "dynamodb:Query", TABLE, test="t6")
    verdict = _judge([*CALLS, stray, direct], _policy(*GRANTS))
    assert verdict.unmapped == [f"prod  deliver_queued  sqs:SendMessage  {stray.resource}  (in t5)"]
    assert any("dynamodb:Query" in line for line in verdict.notes)


def test_an_unused_grant_is_found_per_action_and_resource():
    actions = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    statement = {"Sid": "S", "Effect": "Allow", "Action": actions, "Resource": [QUEUE, "*"]}
    used = [("sqs:SendMessage", QUEUE, ())]
    # a wider grant than a call needs counts as used: it is the statement's resource, not a stray grant
    assert unused_grants({"Statement": [statement]}, used) == [
        ("S", "sqs:GetQueueUrl", QUEUE),
        ("S", "sqs:GetQueueUrl", "*"),
    ]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_policies_parse_as_iam_documents(stage: str):
    document = json.loads((PROJECT_DIR / ".chalice" / f"policy-{stage}.json").read_text())
    assert document["Version"] == "2012-10-17"
    assert StageNames.of(stage).table in json.dumps(document)
