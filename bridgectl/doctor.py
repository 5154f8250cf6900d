"""``bridgectl stage doctor``: every thing a working stage needs — its parameters, table, Rokt token,
Braze key, queue consumers and API — each checked against the AWS the environment points at (real, or
the emulator via AWS_ENDPOINT_URL) with a plain-words verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests
from botocore.exceptions import BotoCoreError, ClientError

from bridgectl.deployment import consumer_functions
from chalicelib.braze.client import BrazeClient, BrazeError
from chalicelib.clock import Deadline
from chalicelib.secrets import BRAZE_API_KEY, ROKT_WEBHOOK_TOKENS
from stage.project import SAMPLE_BODY
from stage.secrets import secret_list

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_ssm.client import SSMClient

    from stage.names import StageNames


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def doctor(
    names: StageNames,
    ssm: SSMClient,
    dynamodb: DynamoDBClient,
    *,
    api_url: str | None = None,
    session: requests.Session | None = None,
    lambda_client: LambdaClient | None = None,
) -> list[Check]:
    """Every thing a working stage needs, each with a plain-words verdict."""
    session = session or requests.Session()
    checks = [_parameter_check(ssm, f"{names.prefix}/{suffix}") for suffix in _required_parameters(names)]
    checks.append(_table_check(dynamodb, names.table))
    values = {c.name: c for c in checks}
    client_id = f"{names.prefix}/rokt/client-id"
    if values[client_id].ok and values[f"{names.prefix}/rokt/client-secret"].ok:
        checks.append(_token_check(ssm, names, session))
    if api_url and values[f"{names.prefix}/webhook-secrets"].ok:
        checks.append(_dry_run_check(ssm, names, api_url, session))
    elif not api_url:
        checks.append(Check("dry-run webhook", True, "skipped: no API URL (deploy first or pass --api-url)"))
    if names.braze_rest_endpoint:
        sync = [_parameter_check(ssm, f"{names.prefix}/{name}") for name in (BRAZE_API_KEY, ROKT_WEBHOOK_TOKENS)]
        checks += sync
        if sync[0].ok:
            checks.append(_braze_key_check(ssm, names, names.braze_rest_endpoint, session))
    if lambda_client is not None:
        checks.append(_partial_batch_check(lambda_client, names.stage))
    return checks


def _braze_key_check(ssm: SSMClient, names: StageNames, endpoint: str, session: requests.Session) -> Check:
    """Ask Braze with an empty batch: it checks the key and writes no profile."""
    name = "Braze REST key"
    key = str(ssm.get_parameter(Name=f"{names.prefix}/{BRAZE_API_KEY}", WithDecryption=True)["Parameter"]["Value"])
    client = BrazeClient(endpoint, lambda _: key, session, connect_timeout=3.05, read_timeout=10)
    try:
        status = client.check_key(Deadline(15))
    except BrazeError as exc:
        return Check(name, False, f"{endpoint} unreachable ({exc})")
    if status in (401, 403):
        return Check(name, False, f"Braze refused the key (HTTP {status}): it needs the users.track permission")
    if status >= 500 or status == 429:
        return Check(name, False, f"Braze answered HTTP {status}; try again later")
    return Check(name, True, f"Braze accepted the key (HTTP {status}); no profile was written")


def _partial_batch_check(lambda_client: LambdaClient, stage: str) -> Check:
    name = "queue consumer partial batches"
    try:
        found = {
            function: lambda_client.list_event_source_mappings(FunctionName=function).get("EventSourceMappings", [])
            for function in consumer_functions(stage)
        }
    except (ClientError, BotoCoreError) as exc:
        return Check(name, True, f"skipped: Lambda could not be asked ({type(exc).__name__})")
    if not any(found.values()):
        return Check(name, True, "skipped: the SQS handlers are not deployed")
    off = [
        function
        for function, mappings in found.items()
        if not all("ReportBatchItemFailures" in m.get("FunctionResponseTypes", []) for m in mappings)
    ]
    if off:
        return Check(
            name,
            False,
            f"ReportBatchItemFailures is off for {', '.join(off)}: "
            "run `bridgectl --stage <stage> stage enable-partial-batch`",
        )
    return Check(name, True, "ReportBatchItemFailures is set on both consumers")


def _required_parameters(names: StageNames) -> list[str]:
    required = ["rokt/client-id", "rokt/client-secret", "webhook-secrets"]
    return [*required, "webhook-signing-keys"] if names.signature_required else required


def _parameter_check(ssm: SSMClient, name: str) -> Check:
    try:
        found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
    except (ClientError, BotoCoreError) as exc:
        return Check(name, False, f"SSM could not be asked ({type(exc).__name__}); check credentials and region")
    if not found:
        return Check(name, False, "missing: create it with `bridgectl --stage <stage> secrets ...`")
    if found[0].get("Type") != "SecureString":
        return Check(name, False, f"is a {found[0].get('Type')}, must be a SecureString: delete and set it again")
    return Check(name, True, "present, SecureString")


def _table_check(dynamodb: DynamoDBClient, table: str) -> Check:
    try:
        status = dynamodb.describe_table(TableName=table)["Table"].get("TableStatus")
        ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return Check(f"table {table}", False, "missing: run `bridgectl --stage <stage> stage bootstrap`")
    except (ClientError, BotoCoreError) as exc:
        return Check(f"table {table}", False, f"DynamoDB could not be asked ({type(exc).__name__})")
    if ttl.get("AttributeName") != "expiration" or ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        return Check(f"table {table}", False, f"{status}, but TTL is not enabled on 'expiration'")
    return Check(f"table {table}", True, f"{status}, TTL on 'expiration'")


def _token_check(ssm: SSMClient, names: StageNames, session: requests.Session) -> Check:
    def value(suffix: str) -> str:
        return str(ssm.get_parameter(Name=f"{names.prefix}/{suffix}", WithDecryption=True)["Parameter"]["Value"])

    url = f"{names.rokt_api_url}/oauth2/token"
    try:
        response = session.post(
            url,
            data={"grant_type": "client_credentials"},
            auth=(value("rokt/client-id"), value("rokt/client-secret")),
            timeout=10,
        )
    except requests.RequestException as exc:
        return Check("Rokt token endpoint", False, f"{url} unreachable ({type(exc).__name__})")
    if response.status_code in (400, 401, 403):
        return Check("Rokt token endpoint", False, f"refused the client credentials (HTTP {response.status_code})")
    if response.status_code != 200 or "access_token" not in response.text:
        return Check("Rokt token endpoint", False, f"answered HTTP {response.status_code} without a token")
    return Check("Rokt token endpoint", True, f"issued a token (lives {response.json().get('expires_in')} s)")


def _dry_run_check(ssm: SSMClient, names: StageNames, api_url: str, session: requests.Session) -> Check:
    secret = secret_list(ssm, f"{names.prefix}/webhook-secrets")[0]
    url = f"{api_url.rstrip('/')}/v1/subscriptionevent/doctor?dryRun=true"
    try:
        response = session.post(url, json=SAMPLE_BODY, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    except requests.RequestException as exc:
        return Check("dry-run webhook", False, f"{api_url} unreachable ({type(exc).__name__})")
    if response.status_code != 200:
        return Check("dry-run webhook", False, f"answered HTTP {response.status_code}: {response.text[:200]}")
    return Check("dry-run webhook", True, "the bridge authenticated and validated the seed's sample webhook")
