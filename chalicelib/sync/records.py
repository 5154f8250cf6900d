"""What the sync flow remembers in the idempotency table.

- **Claims**: one Powertools idempotency record per Rokt ``eventId`` (own key prefix), so a webhook
  Rokt redelivers is written to Braze once. The consumer batches Braze writes across the records of
  a batch, so it drives the persistence layer's own steps (in progress → completed, or deleted on
  failure) instead of wrapping one function per record.
- **Ledger**: per subscription, the identity and attribute values last written to Braze, so a later
  change or an unsubscribe can remove exactly what was written, even values Rokt no longer reports.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from mypy_boto3_dynamodb.client import DynamoDBClient

SYNC_KEY_PREFIX = "rokt-calendar-bridge.sync"
LEDGER_KEY_PREFIX = "rokt-calendar-bridge.sync-ledger#"
LEDGER_TTL_SECONDS = 400 * 86_400  # refreshed on every write; forgets subscriptions untouched for > a year
Claim = Literal["new", "done", "busy"]
_AWS_ERRORS = (BotoCoreError, ClientError)


class EventClaims:
    """Exactly once per Rokt ``eventId``: claim before writing, complete after, release on failure."""

    def __init__(self, persistence: BasePersistenceLayer, ttl_seconds: int) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="eventId", raise_on_no_idempotency_key=True, expires_after_seconds=ttl_seconds
        )
        persistence.configure(self._config, key_prefix=SYNC_KEY_PREFIX)
        self._persistence = persistence

    def claim(self, event_id: str, remaining_ms: int | None) -> Claim:
        """``new`` (ours to write), ``done`` (written before) or ``busy`` (another consumer has it)."""
        data = {"eventId": event_id}
        try:
            self._persistence.save_inprogress(data=data, remaining_time_in_millis=remaining_ms)
        except IdempotencyItemAlreadyExistsError as exc:
            record = exc.old_data_record or self._existing(data)
            if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
                return "done"
            return "busy"
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc
        return "new"

    def complete(self, event_id: str, result: dict[str, Any]) -> None:
        try:
            self._persistence.save_success(data={"eventId": event_id}, result=result)
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the idempotency store (DynamoDB) is unavailable") from exc

    def release(self, event_id: str, reason: Exception) -> None:
        """Forget the claim so a retry can write (best effort: an in-progress claim also expires)."""
        with contextlib.suppress(*_AWS_ERRORS):
            self._persistence.delete_record(data={"eventId": event_id}, exception=reason)

    def _existing(self, data: dict[str, Any]) -> Any:
        try:
            return self._persistence.get_record(data=data)
        except (IdempotencyItemNotFoundError, IdempotencyValidationError, *_AWS_ERRORS):
            return None


@dataclass(frozen=True)
class LedgerEntry:
    identity: dict[str, str]
    values: dict[str, list[str]] = field(default_factory=dict)


class SyncLedger:
    """Per-subscription memory of what Braze holds, in the idempotency table (pk ``id``)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, clock: Any = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._clock = clock

    def get(self, subscription_id: str) -> LedgerEntry | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._table, Key={"id": {"S": LEDGER_KEY_PREFIX + subscription_id}}, ConsistentRead=True
            ).get("Item")
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc
        if not item:
            return None
        try:
            return LedgerEntry(json.loads(item["identity"]["S"]), json.loads(item["values"]["S"]))
        except (KeyError, ValueError):
            return None

    def put(self, subscription_id: str, entry: LedgerEntry | None) -> None:
        """Remember ``entry`` (or forget the subscription when None)."""
        key = {"id": {"S": LEDGER_KEY_PREFIX + subscription_id}}
        try:
            if entry is None:
                self._dynamodb.delete_item(TableName=self._table, Key=key)
                return
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    **key,
                    "identity": {"S": json.dumps(entry.identity, sort_keys=True)},
                    "values": {"S": json.dumps(entry.values, sort_keys=True)},
                    "expiration": {"N": str(int(self._clock() + LEDGER_TTL_SECONDS))},
                },
            )
        except _AWS_ERRORS as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc
