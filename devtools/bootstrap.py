"""Create what the bridge needs in an AWS account (real or emulated); safe to run again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
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
