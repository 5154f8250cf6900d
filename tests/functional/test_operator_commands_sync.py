"""The operators' commands for Rokt → Braze: queues, the Braze key, Rokt webhook tokens, doctor, replay."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from bridgectl import cli, dead_letters, doctor
from chalicelib.settings import RETRY_HORIZON_SECONDS
from chalicelib.sqs import DEAD_LETTER_REASON, backoff_seconds
from chalicelib.sync.queue import (
    SYNC_BASE_BACKOFF_SECONDS,
    SYNC_MAX_BACKOFF_SECONDS,
    SYNC_MAX_RECEIVES,
    sync_queue_names,
)
from stage import resources, secrets
from stage.bootstrap import bootstrap
from stage.names import OpsError, StageNames
from stage.project import stage_environment
from tests.conftest import BRAZE_KEY, PREFIX, ROKT_TOKEN, TABLE, Aws, Braze, Sandbox

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef


@pytest.fixture
def names(sandbox: Sandbox, braze: Braze) -> StageNames:
    return StageNames("test", PREFIX, TABLE, sandbox.url, False, braze_rest_endpoint=braze.url)


def parameter(aws: Aws, name: str) -> str:
    return aws.ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def test_bootstrap_creates_the_sync_queue_with_its_dead_letter_queue(aws: Aws, names: StageNames):
    urls = bootstrap(names, aws.dynamodb(), aws.sqs(), progress=lambda _: None)

    assert urls is not None
    sync_name, sync_dlq_name = sync_queue_names("test")
    assert urls.sync.endswith(sync_name)
    assert urls.sync_dlq.endswith(sync_dlq_name)
    policy = json.loads(
        aws.sqs().get_queue_attributes(QueueUrl=urls.sync, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert policy["deadLetterTargetArn"].endswith(sync_dlq_name)
    assert int(policy["maxReceiveCount"]) == SYNC_MAX_RECEIVES


def test_rokt_webhook_tokens_rotate_and_the_cli_prints_the_url_to_paste(
    cli_env, aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    code = cli.main(
        ["--stage", "local", "secrets", "add", "rokt-webhook-token", "--generate", "--api-url", "https://b/api"]
    )

    assert code == 0
    printed = capsys.readouterr().out
    prefix = stage_environment("local")["BRIDGE_SSM_PREFIX"]
    [token] = parameter(aws, f"{prefix}/rokt-webhook-tokens").split(",")
    assert f"https://b/api/rokt/webhooks/{token}" in printed
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert cli.main(["--stage", "local", "secrets", "remove", "rokt-webhook-token"]) == 2  # the last one
    assert "last accepted secret" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["short", "has/slash-0123456789", "has space 0123456789", "ünïcode-0123456789"])
def test_rokt_tokens_must_be_url_safe(aws: Aws, names: StageNames, bad: str):
    with pytest.raises(OpsError, match="letters, digits"):
        secrets.ROKT_TOKEN_LIST.add(names, aws.ssm(), bad, progress=lambda _: None)


def test_braze_key_from_stdin_never_argv(cli_env, aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("braze-rest-key-123\n"))

    assert cli.main(["--stage", "local", "secrets", "set", "braze-key"]) == 0

    prefix = stage_environment("local")["BRIDGE_SSM_PREFIX"]
    assert parameter(aws, f"{prefix}/braze/api-key") == "braze-rest-key-123"
    assert "braze-rest-key-123" not in capsys.readouterr().out


def test_doctor_checks_the_braze_key_without_writing_a_profile(aws: Aws, names: StageNames, braze: Braze):
    checks = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb())}

    assert checks["Braze REST key"].ok, checks["Braze REST key"].detail
    assert checks[f"{PREFIX}/rokt-webhook-tokens"].ok
    assert braze.users() == []
    aws.ssm().put_parameter(Name=f"{PREFIX}/braze/api-key", Value="wrong-key-123", Type="SecureString", Overwrite=True)
    refused = {c.name: c for c in doctor.doctor(names, aws.ssm(), aws.dynamodb())}["Braze REST key"]
    assert not refused.ok
    assert "users.track" in refused.detail
    assert BRAZE_KEY not in refused.detail


def test_doctor_skips_sync_checks_when_the_stage_does_not_sync(aws: Aws, names: StageNames):
    checks = {c.name for c in doctor.doctor(replace(names, braze_rest_endpoint=None), aws.ssm(), aws.dynamodb())}
    assert "Braze REST key" not in checks


def dead_letter(sqs: SQSClient, dlq_url: str, event_id: str, reason: str | None) -> None:
    """A sync webhook's message in the DLQ, as the consumer parks it (with a reason) or SQS moves it (without)."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {"eventId": {"DataType": "String", "StringValue": event_id}}
    if reason is not None:
        attributes[DEAD_LETTER_REASON] = {"DataType": "String", "StringValue": reason}
    sqs.send_message(
        QueueUrl=dlq_url, MessageBody=json.dumps({"webhook": {"eventId": event_id}}), MessageAttributes=attributes
    )


def test_replay_dlq_moves_sync_dead_letters_back_without_their_reason(aws: Aws, names: StageNames):
    urls = bootstrap(names, aws.dynamodb(), aws.sqs(), progress=lambda _: None)
    assert urls is not None
    sqs = aws.sqs()
    dead_letter(sqs, urls.sync_dlq, "w-1", "Braze refused the request with HTTP 400")
    said: list[str] = []

    assert dead_letters.replay_dlq(sqs, names, queue="sync", progress=said.append) == 1

    [moved] = sqs.receive_message(QueueUrl=urls.sync, MessageAttributeNames=["All"])["Messages"]
    assert set(moved["MessageAttributes"]) == {"eventId"}
    assert any("Braze refused the request with HTTP 400" in line for line in said)
    assert sqs.receive_message(QueueUrl=urls.sync_dlq).get("Messages", []) == []
    assert ROKT_TOKEN not in " ".join(said)


def test_replay_dlq_gives_a_reason_for_every_sync_dead_letter_even_one_sqs_moved_itself(aws: Aws, names: StageNames):
    urls = bootstrap(names, aws.dynamodb(), aws.sqs(), progress=lambda _: None)
    assert urls is not None
    sqs = aws.sqs()
    dlq_arn = sqs.get_queue_attributes(QueueUrl=urls.sync_dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # a function that crashed twice on this message: SQS's redrive moves it, with no reason of ours
    sqs.set_queue_attributes(
        QueueUrl=urls.sync,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
    )
    dead_letter(sqs, urls.sync, "w-crashed", None)  # on the sync queue: SQS moves it
    for _ in range(2):
        [received] = sqs.receive_message(QueueUrl=urls.sync, AttributeNames=["All"])["Messages"]
        sqs.change_message_visibility(QueueUrl=urls.sync, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0)
    assert sqs.receive_message(QueueUrl=urls.sync).get("Messages", []) == []  # moved by SQS
    dead_letter(sqs, urls.sync_dlq, "w-parked", "unusable webhook: no subscription id")
    said: list[str] = []

    assert dead_letters.replay_dlq(sqs, names, queue="sync", dry_run=True, progress=said.append) == 2

    lines = [line for line in said if "would replay" in line]
    assert len(lines) == 2
    assert all("dead-lettered because: " in line for line in lines), lines
    [crashed] = [line for line in lines if "w-crashed" in line]
    assert "no reason recorded: moved by SQS's redrive policy after 2 receives" in crashed
    [parked] = [line for line in lines if "w-parked" in line]
    assert "unusable webhook: no subscription id" in parked


def test_the_deployed_sync_queue_lets_the_consumer_decide_every_dead_letter():
    """The age horizon, reached by the consumer's own backoff, comes long before SQS's redrive limit,
    and the queue keeps messages longer than the horizon: SQS's redrive is only the crash backstop."""
    template = resources.merge_template("prod")["Resources"]["SyncQueue"]["Properties"]
    assert template["RedrivePolicy"]["maxReceiveCount"] == SYNC_MAX_RECEIVES
    assert template["MessageRetentionPeriod"] > RETRY_HORIZON_SECONDS
    waited, receives = 0, 0
    while waited <= RETRY_HORIZON_SECONDS:
        receives += 1
        waited += backoff_seconds(receives, None, SYNC_BASE_BACKOFF_SECONDS, SYNC_MAX_BACKOFF_SECONDS)
    assert receives < SYNC_MAX_RECEIVES / 5
