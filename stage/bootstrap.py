"""Create what the bridge needs in an AWS account (real or emulated); safe to run again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

Progress = Callable[[str], None]


def ensure_table(dynamodb: DynamoDBClient, table: str, progress: Progress = print) -> bool:
    """Create the idempotency table (Powertools schema: pk ``id``, TTL ``expiration``). True if created."""
    try:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        progress(f"table {table}: already exists")
        return False
    progress(f"table {table}: creating…")
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    progress(f"table {table}: created, TTL on 'expiration'")
    return True


def put_secure(ssm: SSMClient, name: str, value: str, progress: Progress = print, overwrite: bool = True) -> None:
    """Write a SecureString; the value is never printed."""
    try:
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=overwrite)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ParameterAlreadyExists":
            raise
        progress(f"parameter {name}: already set, left as is")
        return
    progress(f"parameter {name}: set (SecureString)")


def ensure_queues(
    sqs: SQSClient,
    queue_name: str,
    dlq_name: str,
    max_receives: int,
    *,
    visibility_timeout: int = 180,
    retention_seconds: int = 345_600,
    progress: Progress = print,
) -> tuple[str, str]:
    """A queue and its DLQ (redrive after ``max_receives``); returns both URLs. Idempotent: running it
    again brings an existing queue's attributes to these values."""
    dlq_url = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": "1209600"})
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            # At least 6x the consumer's Lambda timeout, as AWS advises for SQS event sources.
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": str(retention_seconds),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        },
    )
    progress(f"queue {queue_name}: ready, dead letters to {dlq_name} after {max_receives} receives")
    return queue_url, dlq_url
