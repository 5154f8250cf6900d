"""Operator tasks against the AWS the environment points at (real, or the emulator via
AWS_ENDPOINT_URL): bootstrap a stage, manage its secrets, replay dead letters, diagnose."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets as random_secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.braze.client import BrazeClient, BrazeError
from chalicelib.clock import Deadline
from chalicelib.secrets import BRAZE_API_KEY, ROKT_WEBHOOK_TOKENS, WEBHOOK_SECRETS, split_list
from chalicelib.settings import stage_of
from chalicelib.sqs import DEAD_LETTER_REASON
from stage import dashboard, resources
from stage.bootstrap import create, put_secure
from stage.names import StageNames, function_names
from stage.project import PROJECT_DIR, SAMPLE_BODY, stage_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_lambda.client import LambdaClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_ssm.client import SSMClient

    Progress = Callable[[str], None]


URL_SAFE = re.compile(r"[A-Za-z0-9_-]{16,256}")


class OpsError(Exception):
    """A problem the operator must fix, said in plain words."""


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
    made = create(resources.stateful_resources(names), dynamodb, sqs, progress)
    if sqs is None:
        return None
    return QueueUrls(
        made["DeliveryQueue"], made["DeliveryDeadLetterQueue"], made["SyncQueue"], made["SyncDeadLetterQueue"]
    )


def replay_dlq(
    sqs: SQSClient,
    names: StageNames,
    *,
    queue: str = "delivery",
    account_code: str | None = None,
    event_id: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    limit: int = 10_000,
    progress: Progress = print,
    clock: Callable[[], float] = time.time,
) -> int:
    """Move dead letters back to their queue (all, or those matching); return how many matched.

    A delivery received longer ago than the delivery records are kept (IDEMPOTENCY_TTL_SECONDS) stays
    unless ``force``: the record of a newer intent for its event may be gone, and nothing would stop
    this older one from putting Rokt back in an older state."""
    queue_name, dlq_name = names.queues(queue)
    dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    matched = seen = refused = 0
    skipped: list[str] = []
    while seen < limit:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            seen += 1
            attributes: Mapping[str, Any] = message.get("MessageAttributes", {})
            account = _attribute(attributes, "accountCode")
            event = _attribute(attributes, "eventId")
            target = f"{account}/{event}" if account else str(event)
            if (account_code and account != account_code) or (event_id and event != event_id):
                skipped.append(message["ReceiptHandle"])
                continue
            age = _received_ago(message["Body"], clock()) if queue == "delivery" else None
            if age is not None and age > names.idempotency_ttl_seconds and not force:
                refused += 1
                progress(
                    f"not replaying {target} ({message['MessageId']}): received {age / 3600:.1f} h ago, longer "
                    f"than delivery records are kept ({names.idempotency_ttl_seconds / 3600:g} h), so a newer "
                    "intent for this event may have reached Rokt and been forgotten, and this older one would "
                    "undo it; check the event in Rokt, then --force to replay it anyway"
                )
                skipped.append(message["ReceiptHandle"])
                continue
            matched += 1
            because = f" — dead-lettered because: {dead_letter_reason(message)}"
            progress(f"{'would replay' if dry_run else 'replaying'} {target} ({message['MessageId']}){because}")
            if dry_run:
                skipped.append(message["ReceiptHandle"])
                continue
            sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"], MessageAttributes=_copyable(attributes))
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    for handle in skipped:  # make the ones left alone visible again right away
        sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=handle, VisibilityTimeout=0)
    kept = f"; {refused} too old to replay without --force" if refused else ""
    progress(f"{matched} of {seen} dead letter(s) {'would be ' if dry_run else ''}replayed{kept}")
    return matched


def dead_letter_reason(message: Mapping[str, Any]) -> str:
    """Why a message is in a DLQ: the reason the consumer wrote, or — for one SQS's redrive policy moved
    (an invocation that crashed or timed out on it) — what SQS itself recorded about it."""
    reason = _attribute(message.get("MessageAttributes", {}), DEAD_LETTER_REASON)
    if reason:
        return reason
    recorded: Mapping[str, str] = message.get("Attributes", {})
    try:
        receives = int(recorded.get("ApproximateReceiveCount", "0")) - 1  # less this look at the DLQ
    except ValueError:
        receives = 0
    said = "no reason recorded: moved by SQS's redrive policy"
    said += f" after {receives} receives" if receives > 0 else ""
    source = recorded.get("DeadLetterQueueSourceArn")
    said += f" from {source.rsplit(':', 1)[-1]}" if source else ""
    sent = recorded.get("SentTimestamp", "")
    if sent.isdigit() and int(sent) > 0:
        queued = dt.datetime.fromtimestamp(int(sent) / 1000, dt.UTC).isoformat(timespec="seconds")
        said += f", first queued {queued.replace('+00:00', 'Z')}"
    return said + " (the consumer never decided: look for a crash or timeout in its logs)"


def _received_ago(body: str, now: float) -> float | None:
    """How long ago the bridge received the delivery in ``body`` (None if it does not say)."""
    try:
        message = json.loads(body)
        received = message.get("receivedAt", message.get("queuedAt"))
        return None if received is None else now - float(received)
    except (ValueError, TypeError, AttributeError):
        return None


def _attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name) or {}
    found = value.get("StringValue")
    return str(found) if found is not None else None


def _copyable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in attributes.items()
        if "StringValue" in value and name != DEAD_LETTER_REASON
    }


def set_rokt_credentials(
    names: StageNames, ssm: SSMClient, client_id: str, client_secret: str, progress: Progress = print
) -> None:
    if not client_id.strip() or not client_secret.strip():
        raise OpsError("the Rokt client id and secret must not be empty")
    put_secure(ssm, f"{names.prefix}/rokt/client-id", client_id.strip(), progress)
    put_secure(ssm, f"{names.prefix}/rokt/client-secret", client_secret.strip(), progress)


def _secret_list(ssm: SSMClient, name: str) -> list[str]:
    try:
        raw = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"].get("Value", "")
    except ssm.exceptions.ParameterNotFound:
        return []
    return split_list(raw)


@dataclass(frozen=True)
class SecretList:
    """A comma-separated SecureString of accepted secrets, rotated by adding before removing."""

    relative: str
    what: str
    refused_without: str
    url_safe: bool = False  # it travels as a URL path segment

    def add(self, names: StageNames, ssm: SSMClient, secret: str | None, progress: Progress = print) -> str:
        """Add ``secret`` (or a generated one) to the accepted list and return it."""
        value = (secret or random_secrets.token_urlsafe(32)).strip()
        if self.url_safe and not URL_SAFE.fullmatch(value):
            raise OpsError(f"a {self.what} needs at least 16 characters, only letters, digits, '-' and '_'")
        if len(value) < 16 or "," in value:
            raise OpsError(f"a {self.what} needs at least 16 characters and no comma")
        name = f"{names.prefix}/{self.relative}"
        current = _secret_list(ssm, name)
        if value in current:
            progress(f"that {self.what} is already accepted")
            return value
        put_secure(ssm, name, ",".join([*current, value]), progress)
        progress(f"{len(current) + 1} {self.what}(s) now accepted")
        return value

    def remove(
        self, names: StageNames, ssm: SSMClient, secret: str, allow_none_left: bool = False, progress: Progress = print
    ) -> None:
        name = f"{names.prefix}/{self.relative}"
        current = _secret_list(ssm, name)
        if secret.strip() not in current:
            raise OpsError(f"that {self.what} is not in the accepted list; nothing changed")
        remaining = [s for s in current if s != secret.strip()]
        if not remaining and not allow_none_left:
            raise OpsError(
                f"that is the last accepted secret ({self.what}): every {self.refused_without} would be refused "
                "(pass --allow-none-left)"
            )
        if remaining:
            put_secure(ssm, name, ",".join(remaining), progress)
        else:
            ssm.delete_parameter(Name=name)
            progress(f"parameter {name}: deleted")
        progress(f"{len(remaining)} {self.what}(s) still accepted; calls with the removed one now get 401")


WEBHOOK_SECRET_LIST = SecretList(WEBHOOK_SECRETS, "webhook secret", "Braze webhook")
ROKT_TOKEN_LIST = SecretList(ROKT_WEBHOOK_TOKENS, "Rokt webhook token", "Rokt webhook", url_safe=True)


def add_webhook_secret(names: StageNames, ssm: SSMClient, secret: str | None, progress: Progress = print) -> str:
    """Add ``secret`` (or a generated one) to the accepted list; return it so Braze can be configured."""
    return WEBHOOK_SECRET_LIST.add(names, ssm, secret, progress)


def remove_webhook_secret(
    names: StageNames, ssm: SSMClient, secret: str, allow_none_left: bool = False, progress: Progress = print
) -> None:
    WEBHOOK_SECRET_LIST.remove(names, ssm, secret, allow_none_left, progress)


def set_braze_key(names: StageNames, ssm: SSMClient, key: str, progress: Progress = print) -> None:
    """The Braze REST key (``users.track`` permission) the sync flow writes with."""
    if len(key.strip()) < 8 or not key.strip().isascii():
        raise OpsError("that does not look like a Braze REST API key")
    put_secure(ssm, f"{names.prefix}/{BRAZE_API_KEY}", key.strip(), progress)


def rokt_webhook_url(api_url: str, token: str) -> str:
    """What to paste in Rokt's dashboard (Webhooks → Add Webhook, v2)."""
    return f"{api_url.rstrip('/')}/rokt/webhooks/{token}"


QUEUE_CONSUMERS = ("delivery", "sync")  # both return batchItemFailures (Powertools BatchProcessor)


def consumer_functions(stage: str) -> list[str]:
    """Both queue consumers' Lambdas as `chalice deploy` names them."""
    names = function_names(stage)
    return [names[kind] for kind in QUEUE_CONSUMERS]


def enable_partial_batch(lambda_client: LambdaClient, stage: str, progress: Progress = print) -> int:
    """Set ReportBatchItemFailures on both queue consumers' SQS event sources (`chalice deploy` cannot).

    Without it a batch in which only some records failed is counted a success and those records are
    lost. Idempotent; returns how many mappings were changed.
    """
    found = {
        function: lambda_client.list_event_source_mappings(FunctionName=function).get("EventSourceMappings", [])
        for function in consumer_functions(stage)
    }
    missing = [function for function, mappings in found.items() if not mappings]
    if missing:
        raise OpsError(f"{', '.join(missing)} has no SQS event source: deploy the stage first")
    changed = 0
    for mapping in (mapping for mappings in found.values() for mapping in mappings):
        if "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []):
            progress(f"event source {mapping['UUID']}: already reports partial batch failures")
            continue
        lambda_client.update_event_source_mapping(
            UUID=mapping["UUID"], FunctionResponseTypes=["ReportBatchItemFailures"]
        )
        progress(f"event source {mapping['UUID']}: now reports partial batch failures")
        changed += 1
    return changed


def put_dashboard(cloudwatch: Any, stage: str, region: str, progress: Progress = print) -> str:
    """Put the stage's dashboard (the one the CloudFormation path embeds), naming the functions
    `chalice deploy` creates. Idempotent; returns the dashboard's name."""
    name = dashboard.dashboard_name(stage)
    body = dashboard.dashboard_body(stage_of(stage_environment(stage)))
    body = dashboard.filled(body, region, function_names(stage))
    answer = cloudwatch.put_dashboard(DashboardName=name, DashboardBody=body)
    for problem in answer.get("DashboardValidationMessages", []):
        progress(f"dashboard {name}: {problem.get('Message')}")
    progress(f"dashboard {name}: put in {region} (CloudWatch → Dashboards)")
    return name


def deployed_api_url(stage: str, project_dir: Path = PROJECT_DIR) -> str | None:
    """The API URL `chalice deploy` recorded for ``stage``, if it was deployed from this checkout."""
    record = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    if not record.exists():
        return None
    for resource in json.loads(record.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api" and resource.get("rest_api_url"):
            return str(resource["rest_api_url"]).rstrip("/")
    return None


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
    secret = _secret_list(ssm, f"{names.prefix}/webhook-secrets")[0]
    url = f"{api_url.rstrip('/')}/v1/subscriptionevent/doctor?dryRun=true"
    try:
        response = session.post(url, json=SAMPLE_BODY, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    except requests.RequestException as exc:
        return Check("dry-run webhook", False, f"{api_url} unreachable ({type(exc).__name__})")
    if response.status_code != 200:
        return Check("dry-run webhook", False, f"answered HTTP {response.status_code}: {response.text[:200]}")
    return Check("dry-run webhook", True, "the bridge authenticated and validated the seed's sample webhook")
