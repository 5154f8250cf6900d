"""The reference handler: the unavoidable remote work of one webhook with raw boto3 and requests and
nothing else — one conditional DynamoDB put, one update, one Rokt POST with a token read once from
SSM. The bridge's CPU and cold start are measured against this."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
import requests
from chalice.app import Chalice

app = Chalice(app_name="reference")
_clients: dict[str, Any] = {}


def _client(name: str) -> Any:
    if name not in _clients:
        _clients[name] = requests.Session() if name == "http" else boto3.client(name)
    return _clients[name]


def _token() -> str:
    if "token" not in _clients:
        raw = _client("ssm").get_parameter(Name=os.environ["REFERENCE_TOKEN_PARAMETER"], WithDecryption=True)
        _clients["token"] = json.loads(raw["Parameter"]["Value"])["access_token"]
    return str(_clients["token"])


@app.route("/v1/subscriptionevent/{account}", methods=["POST"])
def create(account: str) -> dict[str, Any]:
    body = app.current_request.json_body  # type: ignore[union-attr]
    key = f"reference#{account}#{body['event']['eventId']}"
    table = os.environ["IDEMPOTENCY_TABLE"]
    dynamodb = _client("dynamodb")
    dynamodb.put_item(
        TableName=table,
        Item={"id": {"S": key}, "status": {"S": "INPROGRESS"}, "expiration": {"N": str(int(time.time()) + 3600)}},
        ConditionExpression="attribute_not_exists(id)",
    )
    answer = _client("http").post(
        f"{os.environ['ROKT_API_URL']}/v1/subscriptionevent/{account}",
        json=body,
        headers={"Authorization": f"Bearer {_token()}"},
        timeout=(3.05, 8),
    )
    dynamodb.update_item(
        TableName=table,
        Key={"id": {"S": key}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "COMPLETED"}},
    )
    return {"status": "delivered", "upstreamStatus": answer.status_code}
