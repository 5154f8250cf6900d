"""Bootstrap creates, through the AWS APIs, exactly the table and queues the CloudFormation template
defines: what exists afterwards is read back from the emulator and held against the definition."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from stage.bootstrap import bootstrap
from stage.names import StageNames
from stage.resources import stateful_resources

if TYPE_CHECKING:
    from tests.conftest import Aws


def test_bootstrap_creates_what_the_template_defines(aws: Aws):
    names = StageNames.of("dev")
    sqs, dynamodb = aws.sqs(), aws.dynamodb()

    urls = bootstrap(names, dynamodb, sqs, progress=lambda _: None)
    bootstrap(names, dynamodb, sqs, progress=lambda _: None)  # a second run changes nothing

    assert urls is not None
    defined = stateful_resources(names)
    queues = {k: r["Properties"] for k, r in defined.items() if r["Type"] == "AWS::SQS::Queue"}
    assert set(queues) == {"DeliveryQueue", "DeliveryDeadLetterQueue", "SyncQueue", "SyncDeadLetterQueue"}
    for logical_id, properties in queues.items():
        url = sqs.get_queue_url(QueueName=properties["QueueName"])["QueueUrl"]
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(found["MessageRetentionPeriod"]) == properties["MessageRetentionPeriod"], logical_id
        if "VisibilityTimeout" in properties:
            assert int(found["VisibilityTimeout"]) == properties["VisibilityTimeout"], logical_id
        if "RedrivePolicy" in properties:
            redrive = json.loads(found["RedrivePolicy"])
            [target, _] = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
            assert redrive["deadLetterTargetArn"].endswith(":" + queues[target]["QueueName"]), logical_id
            assert int(redrive["maxReceiveCount"]) == properties["RedrivePolicy"]["maxReceiveCount"], logical_id
    assert urls.sync.endswith("/" + queues["SyncQueue"]["QueueName"])

    table = defined["IdempotencyTable"]["Properties"]
    described = dynamodb.describe_table(TableName=table["TableName"])["Table"]
    assert described["KeySchema"] == table["KeySchema"]
    assert described["AttributeDefinitions"] == table["AttributeDefinitions"]
    assert described["BillingModeSummary"]["BillingMode"] == table["BillingMode"]
    ttl = dynamodb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == table["TimeToLiveSpecification"]["AttributeName"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    backups = dynamodb.describe_continuous_backups(TableName=table["TableName"])["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
