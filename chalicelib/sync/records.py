"""What the sync flow remembers in the idempotency table.

- **Claims**: one Powertools idempotency record per Rokt ``eventId`` (own key prefix), so a webhook
  Rokt redelivers is written to Braze once. The consumer batches Braze writes across the records of
  a batch, so it drives the persistence layer's own steps (in progress → completed, or deleted on
  failure) instead of wrapping one function per record.
- **Ledger**: per subscription, the identity and the attribute values Braze may hold (a superset of
  what it was last told), so a later change or an unsubscribe can remove exactly what was written,
  even values Rokt no longer reports — and every former identity that may still hold them (the
  subscriber id changed and the removal from the old profile is not known to have landed).
- **Lease**: on the ledger item, one consumer at a time per subscription (a conditional write with an
  expiry). A consumer reads Rokt, writes Braze and updates the ledger only while it holds the lease,
  so writes to one subscription happen one after another, each from a Rokt read made after the
  previous write: Braze ends in Rokt's state whatever order consumers run in. Before Braze is told
  new values the ledger already lists them (written ahead), so a failed ledger write afterwards
  leaves a superset, never a stale subset.
"""

from __future__ import annotations

import contextlib
import json
import math
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

from chalicelib.errors import DependencyUnavailable, SubscriptionBusy
from chalicelib.settings import APP_NAME
from chalicelib.sync.ledger_index import LEDGER_KEY_PREFIX, SHARD_ATTRIBUTE, shard_of

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from mypy_boto3_dynamodb.client import DynamoDBClient

SYNC_KEY_PREFIX = f"{APP_NAME}.sync"
LEDGER_TTL_SECONDS = 400 * 86_400  # refreshed on every write; forgets subscriptions untouched for > a year
# new: ours to write; done: written before; busy: another consumer has it; sent: its custom event may
# have reached Braze (the answer was lost or the ledger not updated) — write the state, never the event.
Claim = Literal["new", "done", "busy", "sent"]
EVENT_SENT = {"status": "event_sent"}
MAX_BUSY_WAIT_SECONDS = 900
_AWS_ERRORS = (BotoCoreError, ClientError)
_CONDITION_FAILED = "ConditionalCheckFailedException"
# Every write of an entry puts the item in the ledger's index (its shard) and refreshes its expiry.
_SET_ENTRY = (
    "SET #identity = :identity, #values = :values, #former = :former, expiration = :expiration, #shard = :shard"
)


class LeaseLost(DependencyUnavailable):
    """The consumer no longer holds the subscription's lease (it expired and another took it)."""


class EventClaims:
    """Exactly once per Rokt ``eventId``: claim before writing, complete after, release on failure."""

    def __init__(self, persistence: BasePersistenceLayer, ttl_seconds: int) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="eventId", raise_on_no_idempotency_key=True, expires_after_seconds=ttl_seconds
        )
        persistence.configure(self._config, key_prefix=SYNC_KEY_PREFIX)
        self._persistence = persistence

    def claim(self, event_id: str, remaining_ms: int | None) -> Claim:
        """``new`` (ours to write), ``done`` (written before), ``busy`` (another consumer has it) or
        ``sent`` (its custom event may be in Braze already: write the state only)."""
        data = {"eventId": event_id}
        try:
            self._persistence.save_inprogress(data=data, remaining_time_in_millis=remaining_ms)
        except IdempotencyItemAlreadyExistsError as exc:
            record = exc.old_data_record or self._existing(data)
            if record is not None and record.status == STATUS_CONSTANTS["COMPLETED"]:
                with contextlib.suppress(ValueError, TypeError):
                    if record.response_json_as_dict() == EVENT_SENT:
                        return "sent"
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
    """What Braze may hold for one subscription: ``values`` on ``identity``, and on each ``former``
    identity until a write that removed them from it is known to have landed."""

    identity: dict[str, str]
    values: dict[str, list[str]] = field(default_factory=dict)
    former: tuple[dict[str, str], ...] = ()
    # False: written ahead of a Braze call whose commit never came — Braze may hold less than it says
    settled: bool = field(default=True, compare=False)

    def holders(self) -> tuple[dict[str, str], ...]:
        """Every identity that may hold the values, the current one first."""
        return (self.identity, *(f for f in self.former if f != self.identity))


class SyncLedger:
    """Per-subscription lease and memory of what Braze may hold, in the idempotency table (pk ``id``)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, clock: Any = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._clock = clock

    def acquire(self, subscription_id: str, owner: str, hold_seconds: float) -> LedgerEntry | None:
        """Take the subscription's lease for ``hold_seconds`` (or until released) and return what the
        ledger says Braze may hold; SubscriptionBusy while another consumer holds it. The item joins the
        ledger's index at once, entry or not: a subscription with nobody to write to yet (no subscriber id)
        is still re-read by the reconciliation, which writes it once Rokt names its subscriber."""
        now = self._clock()
        try:
            item = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(subscription_id),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until, #shard = :shard, "
                "expiration = if_not_exists(expiration, :expiration)",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner",
                ExpressionAttributeNames={"#shard": SHARD_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": f"{now + hold_seconds:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                    ":expiration": {"N": str(int(now + LEDGER_TTL_SECONDS))},
                    ":shard": {"S": shard_of(subscription_id)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ).get("Attributes", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc
            answer: dict[str, Any] = dict(exc.response)
            held: dict[str, Any] = answer.get("Item") or {}
            until = float(held.get("lease_until", {}).get("N", now + 1))
            wait = min(max(math.ceil(until - now) + 1, 1), MAX_BUSY_WAIT_SECONDS)
            raise SubscriptionBusy("another consumer is writing this subscription", retry_after=wait) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc
        return _entry(item)

    def put(self, subscription_id: str, entry: LedgerEntry, owner: str) -> None:
        """Record ``entry`` and keep the lease (the write ahead of Braze, unsettled until the commit);
        LeaseLost if it is gone."""
        self._update(subscription_id, owner, f"{_SET_ENTRY}, unsettled = :true", entry)

    def commit(self, subscription_id: str, entry: LedgerEntry | None, owner: str) -> None:
        """Record what Braze now holds (or forget the subscription when None) and give the lease back."""
        if entry is not None:
            self._update(
                subscription_id,
                owner,
                f"{_SET_ENTRY} REMOVE lease_owner, lease_until, unsettled",
                entry,
            )
            return
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=self._key(subscription_id),
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            raise _ledger_error(exc) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc

    def release(self, subscription_id: str, owner: str) -> None:
        """Give the lease back without changing the ledger (best effort: a lease also expires)."""
        with contextlib.suppress(*_AWS_ERRORS):
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(subscription_id),
                UpdateExpression="REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            )

    def touch(self, subscription_id: str, owner: str) -> None:
        """Give the lease back and keep the entry another ``LEDGER_TTL_SECONDS`` (a reconciliation found
        the subscription active and the ledger right); LeaseLost if the lease is gone."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(subscription_id),
                UpdateExpression="SET expiration = :expiration, #shard = :shard REMOVE lease_owner, lease_until",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeNames={"#shard": SHARD_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expiration": {"N": str(int(self._clock() + LEDGER_TTL_SECONDS))},
                    ":shard": {"S": shard_of(subscription_id)},
                },
            )
        except ClientError as exc:
            raise _ledger_error(exc) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc

    def _update(self, subscription_id: str, owner: str, expression: str, entry: LedgerEntry) -> None:
        values: dict[str, Any] = {
            ":owner": {"S": owner},
            ":identity": {"S": json.dumps(entry.identity, sort_keys=True)},
            ":values": {"S": json.dumps(entry.values, sort_keys=True)},
            ":former": {"S": json.dumps(list(entry.former), sort_keys=True)},
            ":expiration": {"N": str(int(self._clock() + LEDGER_TTL_SECONDS))},
            ":shard": {"S": shard_of(subscription_id)},
        }
        if ":true" in expression:
            values[":true"] = {"BOOL": True}
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(subscription_id),
                UpdateExpression=expression,
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeNames={
                    "#identity": "identity",
                    "#values": "values",
                    "#former": "former",
                    "#shard": SHARD_ATTRIBUTE,
                },
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            raise _ledger_error(exc) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailable("the sync ledger (DynamoDB) is unavailable") from exc

    @staticmethod
    def _key(subscription_id: str) -> dict[str, Any]:
        return {"id": {"S": LEDGER_KEY_PREFIX + subscription_id}}


def _entry(item: dict[str, Any]) -> LedgerEntry | None:
    if "identity" not in item:
        return None
    try:
        former = json.loads(item.get("former", {}).get("S", "[]"))
        settled = not item.get("unsettled", {}).get("BOOL", False)
        return LedgerEntry(
            json.loads(item["identity"]["S"]), json.loads(item["values"]["S"]), tuple(former), settled=settled
        )
    except (KeyError, ValueError, TypeError):
        return None


def _ledger_error(exc: ClientError) -> DependencyUnavailable:
    if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
        return LeaseLost("the subscription's lease expired and another consumer took it")
    return DependencyUnavailable("the sync ledger (DynamoDB) is unavailable")
