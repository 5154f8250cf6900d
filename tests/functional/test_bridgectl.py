"""The operator CLI against the emulated AWS: dead letters shown and replayed, secrets rotated."""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any

from bridgectl import cli
from stage.names import StageNames
from stage.project import stage_environment

if TYPE_CHECKING:
    import pytest

    from tests.conftest import Aws


def _parameter(aws: Aws, name: str) -> str:
    return str(aws.ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])


def test_dlq_show_lists_with_the_reason_and_replay_moves_them_back(cli_env, aws: Aws, capsys):
    assert cli.main(["--stage", "local", "stage", "bootstrap"]) == 0
    sqs = aws.sqs()
    queue, dlq = StageNames.of("local").queues("delivery")
    dlq_url, queue_url = (sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in (dlq, queue))
    attributes: dict[str, Any] = {
        "accountCode": {"DataType": "String", "StringValue": "brazetest"},
        "eventId": {"DataType": "String", "StringValue": "Event_1_user42"},
        "deadLetterReason": {"DataType": "String", "StringValue": "Rokt refused"},
    }
    sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"x": 1}), MessageAttributes=attributes)
    capsys.readouterr()

    assert cli.main(["--stage", "local", "dlq", "show"]) == 0
    shown = capsys.readouterr().out
    assert "would replay brazetest/Event_1_user42" in shown

    assert cli.main(["--stage", "local", "dlq", "replay", "--event-id", "Event_1_user42"]) == 0
    assert "1 of 1 dead letter(s) replayed" in capsys.readouterr().out
    moved = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"]).get("Messages", [])
    assert [m["Body"] for m in moved] == [json.dumps({"x": 1})]
    assert "deadLetterReason" not in moved[0].get("MessageAttributes", {})


def test_dlq_replay_leaves_a_delivery_too_old_to_replay_unless_forced(cli_env, aws: Aws, capsys):
    assert cli.main(["--stage", "local", "stage", "bootstrap"]) == 0
    sqs = aws.sqs()
    names = StageNames.of("local")
    queue, dlq = names.queues("delivery")
    dlq_url, queue_url = (sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in (dlq, queue))
    body = json.dumps({"receivedAt": time.time() - names.idempotency_ttl_seconds - 60})
    attributes: dict[str, Any] = {"eventId": {"DataType": "String", "StringValue": "Event_1_user42"}}
    sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attributes)
    capsys.readouterr()

    assert cli.main(["--stage", "local", "dlq", "replay"]) == 0
    said = capsys.readouterr().out
    assert "not replaying Event_1_user42" in said
    assert "1 too old to replay without --force" in said
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages", []) == []

    assert cli.main(["--stage", "local", "dlq", "replay", "--force"]) == 0
    assert "1 of 1 dead letter(s) replayed" in capsys.readouterr().out
    moved = sqs.receive_message(QueueUrl=queue_url).get("Messages", [])
    assert [m["Body"] for m in moved] == [body]


def test_rotate_accepts_a_new_webhook_secret_beside_the_old_and_says_what_next(
    cli_env, aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys
):
    prefix = stage_environment("local")["BRIDGE_SSM_PREFIX"]
    monkeypatch.setattr("sys.stdin", io.StringIO("old-secret-0123456789\n"))
    assert cli.main(["--stage", "local", "secrets", "add", "webhook-secret"]) == 0

    assert cli.main(["--stage", "local", "secrets", "rotate", "webhook-secret"]) == 0

    printed = capsys.readouterr().out
    old, new = _parameter(aws, f"{prefix}/webhook-secrets").split(",")
    assert old == "old-secret-0123456789"
    assert f"Bearer {new}" in printed
    assert "secrets remove webhook-secret" in printed
    monkeypatch.setattr("sys.stdin", io.StringIO(old + "\n"))
    assert cli.main(["--stage", "local", "secrets", "remove", "webhook-secret"]) == 0
    assert _parameter(aws, f"{prefix}/webhook-secrets") == new


def test_an_unknown_secret_kind_is_refused_by_name(capsys):
    assert cli.main(["--stage", "local", "secrets", "add", "rokt-password"]) == 2
    assert "webhook-secret" in capsys.readouterr().err
