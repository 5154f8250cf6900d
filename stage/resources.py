"""What a stage needs in AWS, derived from `.chalice/config.json` so names never drift:
the least-privilege IAM policy and the CloudFormation resources merged by ``chalice package``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chalicelib.delivery.queue import MAX_RECEIVES, RETENTION_SECONDS
from chalicelib.settings import APP_NAME, RETRY_HORIZON_SECONDS
from chalicelib.sync.ledger_index import LEDGER_INDEX, SHARD_ATTRIBUTE
from chalicelib.sync.queue import SYNC_MAX_RECEIVES
from stage import dashboard
from stage.names import NAMESPACE, SERVICE, StageNames, resource_name
from stage.project import PROJECT_DIR

if TYPE_CHECKING:
    from pathlib import Path

DEPLOYED_STAGES = ("dev", "prod")
ALARMED_ROUTES = ("create", "update", "delete", "queue")
OLDEST_MESSAGE_ALARM_SECONDS = 3600
# At least 6x the consumers' Lambda timeout (30 s), as AWS advises for SQS event sources.
VISIBILITY_TIMEOUT_SECONDS = 180
DLQ_RETENTION_SECONDS = 1_209_600  # SQS's longest: 14 days to look at a dead letter


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:*:*:{resource}"


def iam_policy(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """Only what the bridge calls: its own parameters, its table, its logs, X-Ray."""
    names = StageNames.of(stage, project_dir)
    prefix, table = names.prefix, names.table
    (delivery, delivery_dlq), (sync, sync_dlq) = names.queues("delivery"), names.queues("sync")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOwnParameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter"],
                "Resource": _arn("ssm", f"parameter{prefix}/*"),
            },
            {
                "Sid": "WriteSharedTokenOnly",
                "Effect": "Allow",
                "Action": ["ssm:PutParameter"],
                "Resource": _arn("ssm", f"parameter{prefix}/rokt/access-token"),
            },
            {
                # SecureStrings use the account's aws/ssm key, whose ARN differs per account; the
                # condition limits decrypt/encrypt to calls made through SSM.
                "Sid": "SecureStringsViaSsmOnly",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:Encrypt"],
                "Resource": "*",
                "Condition": {"StringLike": {"kms:ViaService": "ssm.*.amazonaws.com"}},
            },
            {
                "Sid": "IdempotencyRecords",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                "Resource": _arn("dynamodb", f"table/{table}"),
            },
            {
                # the reconciliation enumerates the sync ledger through its sparse index, never a Scan
                "Sid": "SyncLedgerIndex",
                "Effect": "Allow",
                "Action": ["dynamodb:Query"],
                "Resource": _arn("dynamodb", f"table/{table}/index/{LEDGER_INDEX}"),
            },
            {
                "Sid": "DeliveryQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:SendMessage",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                "Resource": [_arn("sqs", delivery), _arn("sqs", sync)],
            },
            {
                # both consumers dead-letter what can never succeed themselves, with the reason
                "Sid": "DeadLetterWithReason",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                "Resource": [_arn("sqs", delivery_dlq), _arn("sqs", sync_dlq)],
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": _arn("logs", f"log-group:/aws/lambda/{resource_name(stage, '')}*"),
            },
            {
                # X-Ray has no resource-level permissions.
                "Sid": "Tracing",
                "Effect": "Allow",
                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                "Resource": "*",
            },
        ],
    }


def _outcome_alarm(
    stage: str,
    metric: str,
    threshold: int,
    description: str,
    *,
    periods: tuple[int, int] = (5, 3),
    routes: tuple[str, ...] = ALARMED_ROUTES,
) -> dict[str, Any]:
    """Sum of an EMF outcome metric over ``routes`` (EMF dimensions: service, route): by default the webhook
    routes and the delivery queue's consumer, so queued-mode refusals and failures raise the same alarms."""
    queries: list[dict[str, Any]] = [
        {
            "Id": f"m{index}",
            "ReturnData": False,
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": metric,
                    "Dimensions": [{"Name": "service", "Value": SERVICE}, {"Name": "route", "Value": route}],
                },
                "Period": 60,
                "Stat": "Sum",
            },
        }
        for index, route in enumerate(routes)
    ]
    total = " + ".join(f"m{index}" for index in range(len(routes)))
    queries.append({"Id": "total", "Expression": total, "Label": metric, "ReturnData": True})
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": resource_name(stage, metric),
            "AlarmDescription": description,
            "Metrics": queries,
            "EvaluationPeriods": periods[0],
            "DatapointsToAlarm": periods[1],
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
        },
    }


def _gateway_responses() -> dict[str, Any]:
    """API Gateway's own answers (no such route or method, throttled, timed out, …) in the bridge's
    ``{"error", "message"}`` shape; chalice's RestAPI is the API they belong to."""

    def response(kind: str, template: str, status: str | None = None) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "RestApiId": {"Ref": "RestAPI"},
            "ResponseType": kind,
            "ResponseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
            "ResponseTemplates": {"application/json": template},
        }
        if status:
            properties["StatusCode"] = status
        return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": properties}

    generic = '{"error": "$context.error.responseType", "message": $context.error.messageString}'
    return {
        "MissingRouteResponse": response(
            "MISSING_AUTHENTICATION_TOKEN",
            '{"error": "not_found", "message": "no route for $context.httpMethod $context.path: the bridge takes '
            'POST /v1/subscriptionevent/{accountCode}[/update|/delete], POST /rokt/webhooks/{token}, GET /health"}',
            "404",
        ),
        "Default4xxResponse": response("DEFAULT_4XX", generic),
        "Default5xxResponse": response("DEFAULT_5XX", generic),
    }


def _queue_resources(
    stage: str, prefix: str, *, names: tuple[str, str], max_receives: int, handler: str, what: str
) -> dict[str, Any]:
    """A queue + DLQ that one of Chalice's SQS handlers reads, ReportBatchItemFailures on its event
    source (which `chalice deploy` cannot set: without it a partly failed batch is lost), an alarm on
    dead letters and one on the age of the oldest message (work waiting on a sick dependency)."""
    queue_name, dlq_name = names
    return {
        f"{prefix}QueueAgeAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": resource_name(stage, f"{prefix.lower()}-oldest-message"),
                "AlarmDescription": f"{what} have waited over an hour: is Rokt (or Braze) down? They retry "
                f"for {RETRY_HORIZON_SECONDS / 3600:g} h, then go to the DLQ",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": OLDEST_MESSAGE_ALARM_SECONDS,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlarmTopic"}],
            },
        },
        handler: {
            "DependsOn": [f"{prefix}Queue"],
            "Properties": {
                "Events": {
                    f"{handler}SqsEventSource": {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}}
                }
            },
        },
        f"{prefix}DeadLetterAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": resource_name(stage, f"{prefix.lower()}-dead-letters"),
                "AlarmDescription": f"{what} gave up or can never succeed: see `bridgectl dlq show`, then `dlq replay`",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": dlq_name}],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlarmTopic"}],
            },
        },
    }


def queue_pair(prefix: str, names: tuple[str, str], max_receives: int) -> dict[str, Any]:
    """A queue and its dead-letter queue (SQS redrives after ``max_receives``)."""
    queue_name, dlq_name = names
    return {
        f"{prefix}DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": dlq_name, "MessageRetentionPeriod": DLQ_RETENTION_SECONDS},
        },
        f"{prefix}Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": queue_name,
                "VisibilityTimeout": VISIBILITY_TIMEOUT_SECONDS,
                "MessageRetentionPeriod": RETENTION_SECONDS,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [f"{prefix}DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": max_receives,
                },
            },
        },
    }


def table_resource(table: str) -> dict[str, Any]:
    """The idempotency table: Powertools' schema (partition key ``id``), TTL on ``expiration``; and the
    sync ledger's sparse index (only ledger items carry its key: ``chalicelib.sync.ledger_index``), which
    the reconciliation queries instead of scanning the table."""
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "TableName": table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": SHARD_ATTRIBUTE, "AttributeType": "S"},
            ],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": LEDGER_INDEX,
                    "KeySchema": [
                        {"AttributeName": SHARD_ATTRIBUTE, "KeyType": "HASH"},
                        {"AttributeName": "id", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    }


def stateful_resources(names: StageNames) -> dict[str, Any]:
    """What holds the stage's data — the idempotency table, the two queues and their DLQs — as
    CloudFormation resources: the merge template deploys them, and ``bootstrap`` creates the very same
    ones through the AWS APIs (``stage.bootstrap.create``) for the `chalice deploy` path."""
    return {
        "IdempotencyTable": table_resource(names.table),
        **queue_pair("Delivery", names.queues("delivery"), MAX_RECEIVES),
        **queue_pair("Sync", names.queues("sync"), SYNC_MAX_RECEIVES),
    }


def _untraced_token_route(stage: str, project_dir: Path) -> dict[str, Any]:
    """With ``"xray": true``, API Gateway's trace segments record each request's URL, and the Rokt
    webhook token is a path segment of ``/rokt/webhooks/{token}`` (a fixed route, docs/rokt-to-braze.md). This
    X-Ray sampling rule, evaluated before the default one, samples none of that route's requests:
    API Gateway records no segment for them, and Lambda follows its (not sampled) decision."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stage_config = config["stages"][stage]
    if not stage_config.get("xray", config.get("xray", False)):
        return {}
    api_stage = stage_config.get("api_gateway_stage", config.get("api_gateway_stage", "api"))
    return {
        "UntracedRoktWebhooks": {
            "Type": "AWS::XRay::SamplingRule",
            "Properties": {
                "SamplingRule": {
                    "RuleName": f"rcb-{stage}-no-rokt-webhooks"[:32],
                    "Priority": 1,
                    "FixedRate": 0,
                    "ReservoirSize": 0,
                    "ServiceName": f"{APP_NAME}/{api_stage}",
                    "ServiceType": "AWS::ApiGateway::Stage",
                    "Host": "*",
                    "HTTPMethod": "*",
                    "URLPath": "*/rokt/webhooks/*",
                    "ResourceARN": "*",
                    "Version": 1,
                }
            },
        }
    }


def merge_template(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """Resources `chalice deploy` cannot express, for ``chalice package --merge-template``."""
    names = StageNames.of(stage, project_dir)
    queue_stage = names.queue_stage
    return {
        "Resources": {
            **_untraced_token_route(stage, project_dir),
            **stateful_resources(names),
            "AlarmTopic": {
                "Type": "AWS::SNS::Topic",
                "Properties": {"TopicName": resource_name(stage, "alarms")},
            },
            "Api5xxAlarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmName": resource_name(stage, "api-5xx"),
                    "AlarmDescription": "API Gateway answers 5xx to Braze (bridge errors, timeouts)",
                    "Namespace": "AWS/ApiGateway",
                    "MetricName": "5XXError",
                    "Dimensions": [{"Name": "ApiName", "Value": APP_NAME}],
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 5,
                    "DatapointsToAlarm": 3,
                    "Threshold": 50,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                    "AlarmActions": [{"Ref": "AlarmTopic"}],
                },
            },
            "RoktFailureAlarm": _outcome_alarm(
                stage, "RetryableFailures", 100, "Rokt, SSM or DynamoDB failing: Braze is retrying webhooks"
            ),
            "BreakerAlarm": _outcome_alarm(
                stage,
                "BreakerOpened",
                0,
                "The route stopped calling Rokt after repeated failures: webhooks are spilled to the delivery "
                "queue and delivered when Rokt recovers",
                periods=(1, 1),
            ),
            "RoktRejectionAlarm": _outcome_alarm(
                stage, "RejectedByRokt", 50, "Rokt refuses events for good: check the Braze template"
            ),
            "BrazeKeyRefusedAlarm": _outcome_alarm(
                stage,
                "BrazeKeyRefused",
                0,
                "Braze refuses the REST key (revoked, or mid-rotation): Rokt webhooks wait on the sync queue until "
                "`bridgectl secrets set braze-key` stores one with users.track",
                periods=(1, 1),
                routes=("sync_queue",),
            ),
            **_gateway_responses(),
            "Dashboard": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {
                    "DashboardName": dashboard.dashboard_name(stage),
                    "DashboardBody": {"Fn::Sub": dashboard.dashboard_body(queue_stage)},
                },
            },
            **_queue_resources(
                stage,
                "Delivery",
                names=names.queues("delivery"),
                max_receives=MAX_RECEIVES,
                handler="DeliverQueued",
                what="Deliveries",
            ),
            **_queue_resources(
                stage,
                "Sync",
                names=names.queues("sync"),
                max_receives=SYNC_MAX_RECEIVES,
                handler="SyncSubscribers",
                what="Rokt webhooks",
            ),
        },
        "Outputs": {
            "DeliveryQueueUrl": {"Value": {"Ref": "DeliveryQueue"}},
            "DeliveryDeadLetterQueueUrl": {"Value": {"Ref": "DeliveryDeadLetterQueue"}},
            "SyncQueueUrl": {"Value": {"Ref": "SyncQueue"}},
            "SyncDeadLetterQueueUrl": {"Value": {"Ref": "SyncDeadLetterQueue"}},
            "IdempotencyTableName": {"Value": {"Ref": "IdempotencyTable"}},
            "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
        },
    }


def write_policies(project_dir: Path = PROJECT_DIR) -> list[Path]:
    written = []
    for stage in DEPLOYED_STAGES:
        path = project_dir / ".chalice" / f"policy-{stage}.json"
        path.write_text(json.dumps(iam_policy(stage, project_dir), indent=2) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_policies():
        print(f"wrote {path}")
