"""What IAM authorizes for one botocore API call: the action(s) and the resource ARN(s) it touches.

An operation is usually one action of the same name (``dynamodb:UpdateItem``); batch and transaction
operations are authorized per item (``TransactWriteItems``' ConditionCheck is
``dynamodb:ConditionCheckItem`` on that item's table), and an SSM SecureString read or write is also a
KMS call SSM makes with the caller's permissions. An operation this module cannot place on a resource is
recorded on ``UNKNOWN_RESOURCE``, which no policy grants: the proof then fails and names it, rather
than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

UNKNOWN_RESOURCE = "unknown-resource:add-it-to-tests/iam/calls.py"
DEFAULT_ACCOUNT = "123456789012"  # moto's, and the account every recorded ARN is normalised to
SSM_KMS_KEY = "key/aws-ssm-managed-key"  # stands for whichever key encrypts the stage's SecureStrings


@dataclass(frozen=True, order=True)
class IamCall:
    """One authorization AWS makes: ``action`` on ``resource``, with the condition keys it carries."""

    action: str
    resource: str
    conditions: tuple[tuple[str, str], ...] = ()


# Operations whose IAM action has another name than the operation.
_ACTIONS = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
# Operations IAM does not authorize against any resource but "*".
_NO_RESOURCE = {
    ("dynamodb", "ListTables"),
    ("sqs", "ListQueues"),
    ("ssm", "DescribeParameters"),
    ("lambda", "ListFunctions"),
    ("lambda", "ListEventSourceMappings"),
    ("lambda", "GetEventSourceMapping"),
    ("logs", "GetQueryResults"),
    ("logs", "DescribeLogGroups"),
    ("logs", "DescribeQueries"),
    ("logs", "StopQuery"),
    ("cloudwatch", "ListDashboards"),
    ("cloudwatch", "PutMetricData"),
    ("xray", "PutTraceSegments"),
    ("xray", "PutTelemetryRecords"),
}
_TRANSACT = {"ConditionCheck": "ConditionCheckItem", "Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
_UNAUTHORIZED = {("sts", "GetCallerIdentity")}  # needs no permission at all


def iam_calls(service: str, operation: str, params: dict[str, Any], region: str) -> list[IamCall]:
    """The authorizations one call of ``service``'s ``operation`` with ``params`` needs, in ``region``."""
    if (service, operation) in _UNAUTHORIZED:
        return []
    action = _ACTIONS.get((service, operation), f"{service}:{operation}")
    if (service, operation) in _NO_RESOURCE:
        return [IamCall(action, "*")]
    derive = _DERIVE.get(service)
    if derive is None:
        return [IamCall(action, UNKNOWN_RESOURCE)]
    return derive(operation, action, params, region)


def _arn(service: str, region: str, resource: str, account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def _dynamodb(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    def table(name: str, index: str | None = None) -> str:
        if name.startswith("arn:"):
            return name
        return _arn("dynamodb", region, f"table/{name}" + (f"/index/{index}" if index else ""))

    if operation == "TransactWriteItems":
        return [
            IamCall(f"dynamodb:{_TRANSACT[kind]}", table(body["TableName"]))
            for item in params.get("TransactItems", [])
            for kind, body in item.items()
        ]
    if operation == "TransactGetItems":
        items = params.get("TransactItems", [])
        return [IamCall("dynamodb:GetItem", table(item["Get"]["TableName"])) for item in items]
    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return [IamCall(action, table(name)) for name in params.get("RequestItems", {})]
    if "TableName" in params:
        return [IamCall(action, table(params["TableName"], params.get("IndexName")))]
    if "ResourceArn" in params:
        return [IamCall(action, str(params["ResourceArn"]))]
    return [IamCall(action, UNKNOWN_RESOURCE)]


def _sqs(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    if "QueueUrl" in params:
        return [IamCall(action, queue_arn(params["QueueUrl"], region))]
    if "QueueName" in params:  # GetQueueUrl, CreateQueue
        account = params.get("QueueOwnerAWSAccountId") or DEFAULT_ACCOUNT
        return [IamCall(action, _arn("sqs", region, params["QueueName"], account))]
    if "SourceArn" in params:  # StartMessageMoveTask, ListMessageMoveTasks
        return [IamCall(action, str(params["SourceArn"]))]
    return [IamCall(action, UNKNOWN_RESOURCE)]


def queue_arn(url: str, region: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` (or an emulator's URL) → the queue's ARN."""
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) != 2:
        return UNKNOWN_RESOURCE
    account, name = parts
    return _arn("sqs", region, name, account)


def _ssm(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    def parameter(name: str) -> str:
        if name.startswith("arn:"):
            return name
        return _arn("ssm", region, "parameter" + (name if name.startswith("/") else "/" + name))

    if "Names" in params:
        names = list(params["Names"])
    elif "Name" in params:
        names = [params["Name"]]
    elif "Path" in params:
        names = [params["Path"]]
    else:
        return [IamCall(action, UNKNOWN_RESOURCE)]
    calls = [IamCall(action, parameter(name)) for name in names]
    # A SecureString is encrypted and decrypted by KMS, called by SSM with the caller's permissions.
    via_ssm = (("kms:ViaService", f"ssm.{region}.amazonaws.com"),)
    key = _arn("kms", region, SSM_KMS_KEY)
    if params.get("WithDecryption"):
        calls.append(IamCall("kms:Decrypt", key, via_ssm))
    if operation == "PutParameter" and params.get("Type") == "SecureString":
        calls.append(IamCall("kms:Encrypt", key, via_ssm))
    return calls


def _lambda(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    if "UUID" in params:
        return [IamCall(action, _arn("lambda", region, f"event-source-mapping:{params['UUID']}"))]
    if "FunctionName" in params:
        name = str(params["FunctionName"])
        return [IamCall(action, name if name.startswith("arn:") else _arn("lambda", region, f"function:{name}"))]
    return [IamCall(action, UNKNOWN_RESOURCE)]


def _logs(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    groups = list(params.get("logGroupNames") or []) + ([params["logGroupName"]] if "logGroupName" in params else [])
    if not groups:
        return [IamCall(action, UNKNOWN_RESOURCE)]
    return [IamCall(action, _arn("logs", region, f"log-group:{group}:*")) for group in groups]


def _cloudwatch(operation: str, action: str, params: dict[str, Any], region: str) -> list[IamCall]:
    names = list(params.get("DashboardNames") or []) + ([params["DashboardName"]] if "DashboardName" in params else [])
    if names:  # dashboards are global: no region in their ARN
        return [IamCall(action, f"arn:aws:cloudwatch::{DEFAULT_ACCOUNT}:dashboard/{name}") for name in names]
    if "AlarmName" in params or "AlarmNames" in params:
        alarms = list(params.get("AlarmNames") or [params.get("AlarmName")])
        return [IamCall(action, _arn("cloudwatch", region, f"alarm:{alarm}")) for alarm in alarms]
    return [IamCall(action, UNKNOWN_RESOURCE)]


_DERIVE = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "ssm": _ssm,
    "lambda": _lambda,
    "logs": _logs,
    "cloudwatch": _cloudwatch,
}
