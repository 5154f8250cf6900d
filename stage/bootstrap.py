"""Create what the bridge needs in an AWS account (real or emulated) from the CloudFormation resources
``stage.resources`` defines — the same definition the merge template deploys — through the AWS APIs, for
the `chalice deploy` path; safe to run again (an existing queue's attributes are brought to the definition)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stage.resources import queue_pair, stateful_resources, table_resource

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

    from stage.names import StageNames

Progress = Callable[[str], None]


@dataclass(frozen=True)
class QueueUrls:
    delivery: str
    delivery_dlq: str
    sync: str
    sync_dlq: str


def bootstrap(
    names: StageNames, dynamodb: DynamoDBClient, sqs: SQSClient | None = None, *, progress: Progress = print
) -> QueueUrls | None:
    """Create the stage's table (and, given SQS, its queues and DLQs) from the stage's resource definition;
    running it again changes nothing."""
    made = create(stateful_resources(names), dynamodb, sqs, progress)
    if sqs is None:
        return None
    return QueueUrls(
        made["DeliveryQueue"], made["DeliveryDeadLetterQueue"], made["SyncQueue"], made["SyncDeadLetterQueue"]
    )


def create(
    resources: Mapping[str, Any],
    dynamodb: DynamoDBClient | None,
    sqs: SQSClient | None,
    progress: Progress = print,
) -> dict[str, str]:
    """Each table and queue of ``resources`` (a client left out skips its kind); returns every logical
    id created with its physical id (the table's name, the queue's URL)."""
    made: dict[str, str] = {}
    arns: dict[str, str] = {}
    # dead-letter queues before the queues that redrive to them
    ordered = sorted(resources.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}))
    for logical_id, resource in ordered:
        kind, properties = resource["Type"], resource["Properties"]
        if kind == "AWS::DynamoDB::Table":
            if dynamodb is not None:
                _table(dynamodb, properties, progress)
                made[logical_id] = properties["TableName"]
        elif kind == "AWS::SQS::Queue":
            if sqs is not None:
                made[logical_id], arns[logical_id] = _queue(sqs, properties, arns, progress)
        else:
            raise ValueError(f"bootstrap does not create {kind} ({logical_id}); deploy it with the template")
    return made


def _table(dynamodb: DynamoDBClient, properties: Mapping[str, Any], progress: Progress) -> bool:
    table = properties["TableName"]
    try:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            GlobalSecondaryIndexes=properties["GlobalSecondaryIndexes"],
            BillingMode=properties["BillingMode"],
            SSESpecification={"Enabled": properties["SSESpecification"]["SSEEnabled"]},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        progress(f"table {table}: already exists")
        _indexes(dynamodb, properties, progress)
        return False
    progress(f"table {table}: creating…")
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl = properties["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": ttl["Enabled"], "AttributeName": ttl["AttributeName"]}
    )
    dynamodb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification=properties["PointInTimeRecoverySpecification"]
    )
    progress(f"table {table}: created, TTL on {ttl['AttributeName']!r}, point-in-time recovery on")
    return True


def _indexes(dynamodb: DynamoDBClient, properties: Mapping[str, Any], progress: Progress) -> None:
    """Add the indexes an existing table lacks (a table made before the sync ledger's index)."""
    table = properties["TableName"]
    found = dynamodb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    have = {index["IndexName"] for index in found}
    for index in properties["GlobalSecondaryIndexes"]:
        if index["IndexName"] in have:
            continue
        dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=properties["AttributeDefinitions"],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        progress(
            f"table {table}: index {index['IndexName']} added (it lists each ledger item from its next write; "
            "see docs/rokt-to-braze.md, Reconciliation)"
        )


def _queue(
    sqs: SQSClient, properties: Mapping[str, Any], arns: Mapping[str, str], progress: Progress
) -> tuple[str, str]:
    name = properties["QueueName"]
    attributes: dict[Any, str] = {"MessageRetentionPeriod": str(properties["MessageRetentionPeriod"])}
    if "VisibilityTimeout" in properties:
        attributes["VisibilityTimeout"] = str(properties["VisibilityTimeout"])
    redrive = properties.get("RedrivePolicy")
    if redrive:
        [target, _] = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": arns[target], "maxReceiveCount": str(redrive["maxReceiveCount"])}
        )
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if redrive:
        progress(f"queue {name}: ready, dead letters after {redrive['maxReceiveCount']} receives")
    return url, arn


def ensure_table(dynamodb: DynamoDBClient, table: str, progress: Progress = print) -> bool:
    """Create the idempotency table as the stage defines it. True if created."""
    return _table(dynamodb, table_resource(table)["Properties"], progress)


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
    sqs: SQSClient, queue_name: str, dlq_name: str, max_receives: int, *, progress: Progress = print
) -> tuple[str, str]:
    """A queue and its DLQ as the stage defines them (redrive after ``max_receives``); both URLs."""
    made = create(queue_pair("Q", (queue_name, dlq_name), max_receives), None, sqs, progress)
    return made["QQueue"], made["QDeadLetterQueue"]
